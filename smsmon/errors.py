"""smsmon's own exceptions. Every one carries a message fit to show a user as one line, and
the kind of a failure is its class, or a `Failure` member for the ones the catalogue explains.

    SmsmonError
     ├── ConfigError           a setting that cannot be used; names the setting and where it came from
     ├── ParseError            a provider payload that is not what the provider documents (.kind)
     ├── ProviderAPIError      a provider API answered with an error envelope (Eazita code != 1, Zeckta success false)
     ├── FilterError           a filter expression that cannot be understood
     ├── LookupFailed          `show ID` found nothing, or more than one message
     │    └── Ambiguous        ... more than one: carries the candidates
     ├── ListenerError         the callback listener cannot start as configured
     ├── PollFailure           one poll failed, classified (.kind) and with every credential masked
     └── StoreError            the database cannot be used
          ├── StoreUnavailable locked past the busy timeout, disk full, I/O error: try again later
          │    └── DatabaseGone  the file at the path was removed, replaced or truncated under a writer
          ├── SchemaTooNew     the database was written by a newer smsmon
          ├── SchemaTooOld     ... by an older one, and cannot be upgraded here
          └── NotSmsmonDatabase the file is not an smsmon database, or is damaged
"""

from __future__ import annotations

import enum
from typing import Any


class Failure(enum.StrEnum):
    """Failures of the listener, the pollers and the forwarder. Each value is the code of its catalogue entry
    (`smsmon explain poll_timeout`), in `dead_letters.reason` and `poll_runs.error_code`."""

    INVALID_JSON = "invalid_json"
    INVALID_PAYLOAD = "invalid_payload"
    BODY_TOO_LARGE = "body_too_large"
    BAD_TOKEN = "bad_token"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    FORBIDDEN_ADDRESS = "forbidden_address"
    STORE_UNAVAILABLE = "store_unavailable"
    BODY_TIMEOUT = "body_timeout"
    BAD_TRANSFER = "bad_transfer"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    OVERLOADED = "overloaded"
    INTERNAL_ERROR = "internal_error"
    POLL_TIMEOUT = "poll_timeout"
    POLL_CONNECT_ERROR = "poll_connect_error"
    POLL_AUTH = "poll_auth"
    POLL_NOT_FOUND = "poll_not_found"
    POLL_HTTP_ERROR = "poll_http_error"
    POLL_RATE_LIMITED = "poll_rate_limited"
    POLL_SERVER_ERROR = "poll_server_error"
    POLL_HTML_BODY = "poll_html_body"
    POLL_INVALID_JSON = "poll_invalid_json"
    POLL_BAD_SHAPE = "poll_bad_shape"
    POLL_API_ERROR = "poll_api_error"
    STORE_GONE = "store_gone"
    STORE_DAMAGED = "store_damaged"
    POLL_REDIRECT = "poll_redirect"
    POLL_UNDECODABLE = "poll_undecodable"
    POLL_TOO_LARGE = "poll_too_large"
    POLL_INTERNAL = "poll_internal"
    NOT_FOUND = "not_found"
    FORWARD_CONNECT_ERROR = "forward_connect_error"
    FORWARD_TIMEOUT = "forward_timeout"
    FORWARD_REDIRECT = "forward_redirect"
    FORWARD_REJECTED = "forward_rejected"
    FORWARD_SERVER_ERROR = "forward_server_error"
    FORWARD_INTERNAL = "forward_internal"
    ALERT_WEBHOOK_FAILED = "alert_webhook_failed"
    ALERT_COMMAND_FAILED = "alert_command_failed"


class SmsmonError(Exception):
    """Base class: str(error) is a one-line message for a user."""


class ConfigError(SmsmonError):
    """A setting is unknown or its value cannot be used."""


class ParseError(SmsmonError):
    """A payload failed validation. `reason` names the problem (and the field, where there is
    one); `kind` says whether the bytes were not JSON at all or JSON of the wrong shape."""

    def __init__(self, reason: str, kind: Failure = Failure.INVALID_PAYLOAD) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


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


class ListenerError(SmsmonError):
    """The listener cannot start as configured (an address in use, an unsafe bind, a bad certificate)."""


class PollFailure(SmsmonError):
    """A failed poll request, classified; the message is already free of credentials."""

    def __init__(self, kind: Failure, message: str, *, http_status: int | None = None, api_code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status, self.api_code, self.retry_after = http_status, api_code, retry_after


class StoreError(SmsmonError):
    """The database cannot be opened or used."""


class StoreUnavailable(StoreError):
    """A transient store failure (locked, disk I/O): the caller may retry later; nothing was committed."""


class DatabaseGone(StoreUnavailable):
    """The database file this writer opened is no longer the file at its path (removed,
    replaced or truncated): nothing more may be acknowledged until smsmon is restarted."""

    def __init__(self, message: str, how: str) -> None:
        super().__init__(message)
        self.how = how  # "removed", "replaced" or "truncated"


class SchemaTooNew(StoreError):
    """The database was written by a newer smsmon."""


def upgraded_under(where: object, version: int, known: int) -> SchemaTooNew:
    """What a writer says when a newer smsmon upgraded its database while it was writing: what
    it wrote from then on would miss what the new schema keeps (the costs of schema 6, for one)."""
    return SchemaTooNew(f"{where} was upgraded to schema version {version} by a newer smsmon while this one"
                        f" (schema version {known}) was writing it: this one writes nothing more; stop it and use"
                        " the newer smsmon")


class SchemaTooOld(StoreError):
    """The database was written by an older smsmon and must be upgraded before it is read."""


class NotSmsmonDatabase(StoreError):
    """The file is not an smsmon database, or SQLite cannot read it as a database at all."""


class BatchRaced(StoreError):
    """PostgreSQL: another writer created a message this batch took for new; the writer does the
    batch again (it now finds the message). Never leaves the writer (smsmon.store.pg.writer)."""


class LocalNumber(ValueError):
    """A number in a country's local format (a leading 0) with no region to read it in
    (smsmon.normalize.e164_strict); the store turns it into a FilterError or a lookup failure."""


class ReadStopped(Exception):
    """A read given up because whoever asked for it no longer wants it (Reader.stoppable): not a
    failure, nothing to show."""
