"""Zeckta: delivery callbacks (push) and the Message Status API (pull). Parse + normalize, no I/O.

Callback (providers/zeckta-delivery-callbacks.txt):
    {"eventId": "...", "eventType": "MESSAGE_DELIVERED", "timestamp": "2026-06-09T13:04:57.487133482Z",
     "message": {"uuid": "...", "src": ..., "dest": ..., "status": ..., "segments": ..., "units": ...,
                 "attempts": ..., "cost": ...}}
Status API: {"success": true, "data": {"messageId": "...", "status": "delivered"}}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from smsmon.errors import ParseError, ProviderAPIError
from smsmon.lifecycle import SEND_STEPS, SKEW, STATUS_API_KEY_PREFIX, Event, Flag, derived_key, fingerprint, make_event, normalize
from smsmon import normalize as n
from smsmon.providers import _coerce as c
from smsmon.timeutil import fmt, parse_iso

PROVIDER = "zeckta"


class _Message(msgspec.Struct):
    uuid: str | int
    src: Any = None
    dest: Any = None
    status: Any = None
    segments: Any = None
    units: Any = None
    attempts: Any = None
    cost: Any = None


class _Callback(msgspec.Struct):
    eventId: str | int
    eventType: str
    timestamp: str
    message: _Message


class _StatusData(msgspec.Struct):
    messageId: str | int
    status: str


class _StatusAnswer(msgspec.Struct):
    success: bool
    data: _StatusData | None = None
    message: Any = None


_callback_decoder = msgspec.json.Decoder(_Callback)
_status_decoder = msgspec.json.Decoder(_StatusAnswer)


def parse_callback(body: bytes, *, received_at: datetime, source: str = "callback", region: str | None = None) -> Event:
    """A callback body as received -> one Event. Raises ParseError naming the problem. `region`
    reads a destination in local format (setting default_region)."""
    cb = c.decode(_callback_decoder, body)
    return _callback_event(cb, raw=body.decode("utf-8", "replace"), received_at=received_at, source=source, region=region)


def callback_from_object(obj: Any, *, received_at: datetime, source: str = "import", region: str | None = None) -> Event:
    """An already-decoded callback (an import line) -> one Event."""
    cb = c.convert(obj, _Callback)
    return _callback_event(cb, raw=c.encode(obj), received_at=received_at, source=source, region=region)


def _callback_event(cb: _Callback, *, raw: str, received_at: datetime, source: str, region: str | None) -> Event:
    event_id = c.required_id(cb.eventId, "eventId")
    uuid = c.required_id(cb.message.uuid, "message.uuid")
    event_type = cb.eventType.strip()
    if not event_type:
        raise ParseError("`eventType` is empty")
    try:
        when = parse_iso(cb.timestamp)
    except ValueError as exc:
        raise ParseError(f"`timestamp`: {exc}") from None
    flags = set()
    if when > received_at + SKEW:
        flags.add(Flag.CLOCK_SKEW)
    if event_type.upper().startswith("MESSAGE_"):
        raw_status = event_type[len("MESSAGE_") :]
    else:
        raw_status = n.text(cb.message.status) or event_type
    m = cb.message
    dest = n.e164(m.dest, region)  # E.164 where it is a number; the raw payload keeps what was sent
    return make_event(
        provider=PROVIDER,
        provider_message_id=uuid,
        event_key=event_id,
        source=source,
        event_type=event_type[:64],
        raw_status=raw_status[:64],
        event_time=(event_time := fmt(when)),
        received_at=fmt(received_at),
        attrs={
            "src": n.text(m.src),
            "dest": dest,
            "country_code": n.calling_code(dest),  # Zeckta gives no country: derived from the number
            "segments": n.integer(m.segments),
            "units": n.number(m.units),
            "attempts": n.integer(m.attempts),
            "cost": n.number(m.cost),
        },
        flags=flags,
        raw=raw,
        # A send step's own time is a send time. (Not the Status API's: its time is when smsmon asked.)
        sent_at=event_time if normalize(PROVIDER, raw_status) in SEND_STEPS else None,
    )


def parse_status_answer(body: bytes) -> tuple[str, str]:
    """A Message Status API answer -> (message id, raw status). ProviderAPIError when
    `success` is false, ParseError when the body is not the documented shape."""
    answer = c.decode(_status_decoder, body)
    if not answer.success:
        raise ProviderAPIError(PROVIDER, "success=false", n.text(answer.message) or "no message given")
    if answer.data is None:
        raise ParseError("missing required field `data`")
    return c.required_id(answer.data.messageId, "data.messageId"), answer.data.status.strip()


def status_event(message_id: str, raw_status: str, *, received_at: datetime, raw: str) -> Event:
    """A Status API answer as an event. The API gives no event time, so the time is when we
    asked; the key depends only on message and status, so asking again is idempotent."""
    key = derived_key(STATUS_API_KEY_PREFIX, fingerprint(PROVIDER, message_id, raw_status, None, ""))
    return make_event(
        provider=PROVIDER,
        provider_message_id=message_id,
        event_key=key,
        source="status_api",
        raw_status=raw_status,
        event_time=fmt(received_at),
        received_at=fmt(received_at),
        raw=raw,
    )
