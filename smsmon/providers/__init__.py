"""Provider parsers, one module each; and a registry that recognizes what a stored JSON object is.

Each recognizer is tried in turn (like toolong's format parsers): a Zeckta callback has
`eventId`, an Eazita report row has `message_id`, a whole Eazita response has `code`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from smsmon.errors import ParseError
from smsmon.lifecycle import Event
from smsmon.providers import eazita, zeckta

Recognizer = tuple[str, Callable[[dict[str, Any]], bool], Callable[..., list[Event]]]


def _zeckta_callback(obj: dict[str, Any], *, tz: ZoneInfo, received_at: datetime, source: str,
                     region: str | None) -> list[Event]:
    return [zeckta.callback_from_object(obj, received_at=received_at, source=source, region=region)]


def _eazita_row(obj: dict[str, Any], *, tz: ZoneInfo, received_at: datetime, source: str, region: str | None) -> list[Event]:
    return [eazita.row_event(obj, tz=tz, received_at=received_at, source=source, region=region)]


def _eazita_response(obj: dict[str, Any], *, tz: ZoneInfo, received_at: datetime, source: str,
                     region: str | None) -> list[Event]:
    report = eazita.report_from_rows(eazita.rows_from_envelope(obj), tz=tz, received_at=received_at, source=source,
                                     region=region)
    if report.errors:
        index, reason = report.errors[0]
        more = f" (and {len(report.errors) - 1} more rows)" if len(report.errors) > 1 else ""
        raise ParseError(f"data[{index}]: {reason}{more}")
    return report.events


RECOGNIZERS: tuple[Recognizer, ...] = (
    ("zeckta callback", lambda o: "eventId" in o, _zeckta_callback),
    ("eazita report row", lambda o: "message_id" in o, _eazita_row),
    ("eazita response", lambda o: "code" in o, _eazita_response),
)


def events_from_object(obj: Any, *, tz: ZoneInfo, received_at: datetime, source: str = "import",
                       region: str | None = None) -> list[Event]:
    """Recognize a decoded JSON object and turn it into events. Raises ParseError (or
    ProviderAPIError for an Eazita error envelope)."""
    if not isinstance(obj, dict):
        raise ParseError(f"expected a JSON object, got {type(obj).__name__}")
    for _name, matches, convert in RECOGNIZERS:
        if matches(obj):
            return convert(obj, tz=tz, received_at=received_at, source=source, region=region)
    raise ParseError("not a Zeckta callback (eventId), an Eazita report row (message_id) or an Eazita response (code)")
