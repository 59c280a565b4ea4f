"""smsmon's own exceptions. Every one carries a message fit to show a user as one line.

    SmsmonError
     ├── ParseError            a provider payload that is not what the provider documents
     ├── ProviderAPIError      a provider API answered with an error envelope (Eazita code != 1, Zeckta success false)
     ├── FilterError           a filter expression that cannot be understood
     ├── LookupFailed          `show ID` found nothing, or more than one message
     │    └── Ambiguous        ... more than one: carries the candidates
     └── StoreError            the database cannot be used
          ├── StoreUnavailable locked past the busy timeout, disk full, I/O error: try again later
          └── SchemaTooNew     the database was written by a newer smsmon
"""

from __future__ import annotations

from typing import Any


class SmsmonError(Exception):
    """Base class: str(error) is a one-line message for a user."""


class ParseError(SmsmonError):
    """A payload failed validation. `reason` names the problem (and the field, where there is one)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderAPIError(SmsmonError):
    """A provider API said no in its own envelope (HTTP 200 with an error body, for Eazita)."""

    def __init__(self, provider: str, code: str, message: str) -> None:
        super().__init__(f"{provider} API error {code}: {message}")
        self.provider = provider
        self.code = code
        self.message = message


class FilterError(SmsmonError):
    """A filter expression could not be parsed."""


class LookupFailed(SmsmonError):
    """No message matched an id."""


class Ambiguous(LookupFailed):
    def __init__(self, query: str, candidates: list[dict[str, Any]]) -> None:
        super().__init__(f"{query!r} matches {len(candidates)} messages; give one of the ids below")
        self.query = query
        self.candidates = candidates


class StoreError(SmsmonError):
    """The database cannot be opened or used."""


class StoreUnavailable(StoreError):
    """A transient store failure (locked, disk I/O): the caller may retry later; nothing was committed."""


class SchemaTooNew(StoreError):
    pass
