"""Eazita: delivery reports (pull). Parse + normalize, no I/O.

`GET /sms/delivery?api=KEY&pass=PASSWORD[&messageid=...][&contents=...]` answers HTTP 200 with
    {"code": 1, "data": [{"message_id": 569399, "status": "SENT", "price": "0.003", "network": "Zong",
      "country_code": "92", "done_date": "2018/03/25 19:10:27", "sent_date": "2018/03/25 19:10:24",
      "error_code": "0", "reference": "my-msg-reference"}, ...]}
or, on error, still HTTP 200, with {"code": -2, "error": "..."}.

Quirks survived here (PROVIDER-NOTES.md): numbers as strings, `reference: null`, `country_code`
"9292" (prefix doubled), unknown `error_code` values, naive dates in the provider's zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from smsmon.errors import Failure, ParseError, ProviderAPIError
from smsmon.lifecycle import KEY_PREFIX, SKEW, Event, Flag, derived_key, fingerprint, is_final, make_event, normalize
from smsmon import normalize as n
from smsmon.defaults import EAZITA_TIMEZONE
from smsmon.providers import _coerce as c
from smsmon.timeutil import fmt, parse_local

PROVIDER = "eazita"
DEFAULT_TIMEZONE = EAZITA_TIMEZONE


class _Row(msgspec.Struct):
    message_id: int | str
    status: str
    price: Any = None
    network: Any = None
    country_code: Any = None
    done_date: Any = None
    sent_date: Any = None
    error_code: Any = None
    reference: Any = None
    gsm: Any = None  # with contents=gsm: the recipient's number (inferred from the parameter name)
    source: Any = None  # with contents=source: the sender


class _Envelope(msgspec.Struct):
    code: int | str
    data: msgspec.Raw = msgspec.Raw(b"null")  # read row by row (`response_rows`), never all at once
    error: Any = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_rows_decoder = msgspec.json.Decoder(list[msgspec.Raw] | None)
_row_decoder = msgspec.json.Decoder()


@dataclass
class Report:
    """A parsed delivery-report response: the events, and the rows that could not be read."""

    events: list[Event] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (row index, reason)
    rows: int = 0


def _check_code(code_value: Any, error: Any) -> None:
    code = n.code(code_value)
    if code != "1":
        # The error text whole: it may repeat the credentials, which the poller masks before
        # anything cuts it short (a cut first could leave a prefix of one).
        text = str(error).strip() if isinstance(error, (str, int, float)) and not isinstance(error, bool) else ""
        raise ProviderAPIError(PROVIDER, code or "missing", text or "no error text given")


def rows_from_envelope(env: dict[str, Any]) -> list[Any]:
    """The `data` rows of a decoded envelope. ProviderAPIError for code != 1."""
    _check_code(env.get("code"), env.get("error"))
    data = env.get("data")
    if data is None:
        return []
    if not isinstance(data, list):
        raise ParseError("`data` is not a list")
    return data


def response_rows(body: bytes | bytearray) -> list[msgspec.Raw]:
    """A whole response body -> its rows, each still JSON text (`decode_row` reads one), so a
    large answer costs little more than its bytes. ParseError when the body is not JSON or
    `data` not a list; ProviderAPIError for `code != 1`."""
    try:
        env = c.decode(_envelope_decoder, body)
    except UnicodeDecodeError:  # msgspec raises it for invalid UTF-8 in the envelope's strings
        raise ParseError("invalid JSON: not UTF-8", Failure.INVALID_JSON) from None
    _check_code(env.code, env.error)
    try:
        rows = _rows_decoder.decode(env.data)
    except msgspec.MsgspecError:
        raise ParseError("`data` is not a list") from None
    return rows or []


def decode_row(raw: msgspec.Raw) -> Any:
    """One row of `response_rows` as a decoded object. ParseError when it cannot be read."""
    try:
        return _row_decoder.decode(raw)
    except UnicodeDecodeError:
        raise ParseError("not UTF-8") from None
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise ParseError(f"invalid JSON: {exc}") from None


def parse_response(body: bytes, *, tz: ZoneInfo, received_at: datetime, source: str = "poll",
                   region: str | None = None) -> Report:
    """A whole response body -> Report. The envelope being wrong raises (ParseError, or
    ProviderAPIError for `code != 1`); a bad row is reported in `errors` and the rest kept."""
    report = Report()
    rows = response_rows(body)
    report.rows = len(rows)
    for i, raw in enumerate(rows):
        try:
            report.events.append(row_event(decode_row(raw), tz=tz, received_at=received_at, source=source, region=region))
        except ParseError as exc:
            report.errors.append((i, exc.reason))
    return report


def report_from_rows(rows: list[Any], *, tz: ZoneInfo, received_at: datetime, source: str,
                     region: str | None = None) -> Report:
    report = Report(rows=len(rows))
    for i, row in enumerate(rows):
        try:
            report.events.append(row_event(row, tz=tz, received_at=received_at, source=source, region=region))
        except ParseError as exc:
            report.errors.append((i, exc.reason))
    return report


def _date(value: Any, name: str, tz: ZoneInfo) -> tuple[datetime | None, str]:
    raw = n.text(value)
    if raw is None or raw.startswith("0000"):
        return None, ""
    try:
        return parse_local(raw, tz), raw
    except ValueError as exc:
        raise ParseError(f"`{name}`: {exc}") from None


def _country(value: Any) -> str | None:
    t = n.text(value)
    if t and t.isdigit() and len(t) % 2 == 0 and len(t) <= 6 and t[: len(t) // 2] == t[len(t) // 2 :]:
        return t[: len(t) // 2]  # "9292" -> "92": the prefix doubled, as in Eazita's own sample
    return t


def row_event(row: Any, *, tz: ZoneInfo, received_at: datetime, source: str = "poll", region: str | None = None) -> Event:
    """One report row (decoded JSON) -> Event. Raises ParseError."""
    r = c.convert(row, _Row)
    message_id = c.required_id(r.message_id, "message_id")
    raw_status = r.status.strip()
    if not raw_status:
        raise ParseError("`status` is empty")
    done, done_raw = _date(r.done_date, "done_date", tz)
    sent, sent_raw = _date(r.sent_date, "sent_date", tz)
    final = is_final(PROVIDER, normalize(PROVIDER, raw_status))
    when, when_raw = (done, done_raw) if final and done else (sent, sent_raw) if sent else (done, done_raw)
    flags = set()
    if when is not None and when > received_at + SKEW:
        flags.add(Flag.CLOCK_SKEW)
    if done is not None and sent is not None and done < sent:
        flags.add(Flag.CLOCK_SKEW)
    error_code = n.code(r.error_code)
    # The key comes from the provider's own date text, so a row without dates polled again
    # is still the same event.
    key = derived_key(KEY_PREFIX[PROVIDER], fingerprint(PROVIDER, message_id, raw_status, error_code, when_raw))
    return make_event(
        provider=PROVIDER,
        provider_message_id=message_id,
        event_key=key,
        source=source,
        event_type=None,
        raw_status=raw_status[:64],
        error_code=error_code,
        event_time=fmt(when if when is not None else received_at),
        received_at=fmt(received_at),
        attrs={
            "src": n.text(r.source),
            "dest": n.e164(r.gsm, region),
            "cost": n.number(r.price),
            "network": n.text(r.network),
            "country_code": _country(r.country_code),
            "reference": n.text(r.reference),
        },
        flags=flags,
        raw=c.encode(row),
        sent_at=fmt(sent) if sent is not None else None,  # a row is two facts: sent then, and its status at done_date
    )
