"""Normalized statuses, outcomes, ranks, the per-provider mapping and the merge rule (SPEC §3).

Pure: no I/O. The store's writer calls `apply()` for every new event of a message; the
result is the same for any arrival order of the same events, because the current status
is the greatest event under one total order (`order_key`):

- class first: hard-final > soft-final > pending (UNKNOWN never competes);
- among finals of one class: later event time, then higher rank, then greater event key;
- among pending: higher rank, then later event time, then greater event key.

Attributes (src, dest, segments, ...) take the latest non-null value by (event time, event key).
What arrival order *did* produce is recorded as flags on the event and the message.

Times (SPEC §11): a message's send time is the earliest send time of its events (a Zeckta
SUBMITTED/BUFFERED/SENT event's own time, an Eazita row's `sent_date`); its time to deliver runs
from there to the DELIVERED event's time, and is unknown (None) without a send time. Its latest
activity (`last_event_at`, which orders pages and answers since/until) counts an event dated in
the future past the allowed skew at its arrival time instead, so one bad clock cannot pin it.
All three are minima and maxima, so arrival order cannot change them.

Duplicates (same event key, or same fingerprint of provider, message, raw status, error code
and event time) change nothing (rule 1). So a fingerprint twin that carries other attributes
than the first copy is ignored with them, and the first copy's event key is the one that
breaks ties: the one case where arrival order shows.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

try:  # hashlib's own blake2b, without hashlib's import of OpenSSL's hashes (2 ms of every launch)
    from _blake2 import blake2b
except ImportError:  # a Python built without it
    from hashlib import blake2b

from smsmon.defaults import WATCH_WINDOW
from smsmon.timeutil import fmt, parse_iso

PROVIDERS = ("zeckta", "eazita")
SKEW = timedelta(minutes=10)  # an event time further than this ahead of its arrival is a clock problem
# Prefixes of the event keys smsmon derives for events that carry no id of their own (pulled
# data): the key is the prefix and the 64-bit fingerprint in hex.
KEY_PREFIX = {"zeckta": "ze", "eazita": "ez"}
STATUS_API_KEY_PREFIX = "zs"
_U64 = (1 << 64) - 1


class Status(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    SUBMITTED = "SUBMITTED"
    BUFFERED = "BUFFERED"
    SENT = "SENT"
    UNCONFIRMED = "UNCONFIRMED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    UNDELIVERABLE = "UNDELIVERABLE"
    FAILED = "FAILED"
    DELIVERED = "DELIVERED"
    UNKNOWN = "UNKNOWN"


class StatusClass(enum.IntEnum):
    NONE = 0  # UNKNOWN: never competes
    PENDING = 1
    SOFT_FINAL = 2
    HARD_FINAL = 3


class Outcome(enum.StrEnum):
    IN_FLIGHT = "IN_FLIGHT"
    UNKNOWN = "UNKNOWN"
    NOT_DELIVERED = "NOT_DELIVERED"
    DELIVERED = "DELIVERED"


class Flag(enum.StrEnum):
    UNMAPPED = "unmapped"  # raw status not in the mapping: stored, never moves the status
    REGRESSION_IGNORED = "regression_ignored"  # an earlier pending step arrived after a later one
    LATE_DLR = "late_dlr"  # a hard-final arrived after a soft-final (e.g. DELIVERED after Eazita EXPIRED)
    LATE_EVENT = "late_event"  # an event arrived after the message was final and did not change it
    TERMINAL_CONFLICT = "terminal_conflict"  # two different hard-final statuses for one message
    CLOCK_SKEW = "clock_skew"  # event time far in the future, or done before sent
    STALE = "stale"  # derived at read time: not final, no event within the watch window


RANK: dict[Status, int] = {
    Status.SCHEDULED: 10,
    Status.QUEUED: 20,
    Status.PROCESSING: 30,
    Status.SUBMITTED: 40,
    Status.BUFFERED: 50,
    Status.SENT: 60,
    Status.UNCONFIRMED: 70,
    Status.EXPIRED: 80,
    Status.REJECTED: 90,
    Status.UNDELIVERABLE: 90,
    Status.FAILED: 90,
    Status.DELIVERED: 100,
    Status.UNKNOWN: 0,
}

_DELIVERED = Status.DELIVERED  # a module global: read for every message written (see `apply`)
_PENDING = {Status.SCHEDULED, Status.QUEUED, Status.PROCESSING, Status.SUBMITTED, Status.BUFFERED, Status.SENT}
_HARD = {Status.REJECTED, Status.UNDELIVERABLE, Status.FAILED, Status.DELIVERED, Status.EXPIRED}

MAPPING: dict[str, dict[str, Status]] = {
    "zeckta": {s.value: s for s in _PENDING | _HARD},
    "eazita": {
        "SUBMIT": Status.QUEUED,
        "PENDING": Status.SENT,
        "SENT": Status.UNCONFIRMED,
        "EXPIRED": Status.EXPIRED,
        "DELIVERED": Status.DELIVERED,
        "REJECTED": Status.REJECTED,
        "NOT_ALLOWED": Status.REJECTED,
        "NOT_DELIVERED": Status.UNDELIVERABLE,
        "FAILED": Status.FAILED,
    },
}

ATTRIBUTES = ("src", "dest", "segments", "units", "attempts", "cost", "network", "country_code", "reference")
# Statuses whose event time is a time the message was sent (Zeckta's own lifecycle: accepted for
# delivery, buffered, handed to the carrier). QUEUED, SCHEDULED and PROCESSING come before a send.
SEND_STEPS = frozenset({Status.SUBMITTED, Status.BUFFERED, Status.SENT})


def raw_key(provider: str, raw: str | None) -> str:
    """The lookup form of a raw status: trimmed, upper case, Zeckta's `MESSAGE_` prefix removed."""
    key = (raw or "").strip().upper()
    if provider == "zeckta" and key.startswith("MESSAGE_"):
        key = key[len("MESSAGE_") :]
    return key


def normalize(provider: str, raw: str | None) -> Status:
    """Map a provider's raw status (or Zeckta event type) to a normalized status."""
    return MAPPING.get(provider, {}).get(raw_key(provider, raw), Status.UNKNOWN)


# A few dozen (provider, status) pairs, asked for several times per event written. Typed: a
# Status equals its plain string, which these functions do not take for it (they compare with `is`).
@functools.lru_cache(maxsize=None, typed=True)
def status_class(provider: str, status: Status) -> StatusClass:
    if status is Status.UNKNOWN:
        return StatusClass.NONE
    if status in _PENDING:
        return StatusClass.PENDING
    if status is Status.UNCONFIRMED or (status is Status.EXPIRED and provider == "eazita"):
        return StatusClass.SOFT_FINAL
    return StatusClass.HARD_FINAL


def is_final(provider: str, status: Status) -> bool:
    return status_class(provider, status) >= StatusClass.SOFT_FINAL


@functools.lru_cache(maxsize=None, typed=True)  # the same few dozen pairs, the same way
def outcome_of(provider: str, status: Status) -> Outcome:
    if status is Status.DELIVERED:
        return Outcome.DELIVERED
    if status in _PENDING:
        return Outcome.IN_FLIGHT
    if status is Status.UNKNOWN or status is Status.UNCONFIRMED:
        return Outcome.UNKNOWN
    if status is Status.EXPIRED and provider == "eazita":
        return Outcome.UNKNOWN
    return Outcome.NOT_DELIVERED


def order_key(provider: str, status: Status, event_time: str, event_key: str) -> tuple[Any, ...]:
    """The total order of SPEC §3. Position 1 and 2 differ in type between classes, but are
    only compared when the classes (position 0) are equal."""
    cls, rank, final = _order_head(provider, status)
    return (cls, event_time, rank, event_key) if final else (cls, rank, event_time, event_key)


@functools.lru_cache(maxsize=None, typed=True)  # the same few dozen pairs again, twice per event merged
def _order_head(provider: str, status: Status) -> tuple[int, int, bool]:
    """A status's class (as an int), its rank, and whether it orders by time first (a final one)."""
    cls = status_class(provider, status)
    return int(cls), RANK[status], cls >= StatusClass.SOFT_FINAL


def fingerprint(provider: str, message_id: str, raw_status: str | None, error_code: str | None, event_time: str) -> int:
    """A signed 64-bit fingerprint of what makes two events the same event (SPEC §3 rule 1)."""
    text = "\x1f".join((provider, message_id, raw_key(provider, raw_status), error_code or "", event_time))
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def derived_key(prefix: str, fp: int) -> str:
    """An event key made from a fingerprint: `ez:0f3c...` (16 hex digits, the fingerprint as unsigned)."""
    return f"{prefix}:{fp & _U64:016x}"


@dataclass(frozen=True, slots=True)
class Event:
    """One normalized event, as the providers' parsers produce it and the writer stores it."""

    provider: str
    provider_message_id: str
    event_key: str
    source: str
    event_type: str | None
    raw_status: str
    status: Status
    error_code: str | None
    event_time: str
    received_at: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    raw: str = "{}"
    fingerprint: int = 0
    sent_at: str | None = None  # when the message was sent, as this event tells (see `send_time`)

    @property
    def message_id(self) -> str:
        return f"{self.provider}:{self.provider_message_id}"

    @property
    def order(self) -> tuple[Any, ...]:
        return order_key(self.provider, self.status, self.event_time, self.event_key)

    @property
    def trusted_time(self) -> str:
        """The event time, or the arrival time when the event time is further ahead of it than
        SKEW allows (a bad clock): what orders messages and answers since/until."""
        return self.received_at if is_ahead(self.event_time, self.received_at) else self.event_time


def is_ahead(event_time: str, received_at: str) -> bool:
    """An event time further in the future than SKEW allows, seen from its arrival (canonical strings)."""
    return event_time > received_at and event_time > fmt(parse_iso(received_at) + SKEW)


def make_event(
    *,
    provider: str,
    provider_message_id: str,
    source: str,
    raw_status: str,
    event_time: str,
    received_at: str,
    event_key: str | None = None,
    event_type: str | None = None,
    error_code: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    flags: Iterable[str] = (),
    raw: str = "{}",
    sent_at: str | None = None,
) -> Event:
    """Build an Event, normalizing the status and computing the fingerprint. When no event
    key is given (pulled data has none), the fingerprint is the key, so a repeated poll is a duplicate.
    `sent_at` is when the message was sent as this event tells it, where it tells one (the
    provider's parser decides: a Zeckta send step's own time, an Eazita row's sent_date)."""
    status = normalize(provider, raw_status)
    fp = fingerprint(provider, provider_message_id, raw_status, error_code, event_time)
    flags = set(flags)
    if status is Status.UNKNOWN:
        flags.add(Flag.UNMAPPED)
    return Event(
        provider=provider,
        provider_message_id=provider_message_id,
        event_key=event_key if event_key is not None else derived_key(KEY_PREFIX[provider], fp),
        source=source,
        event_type=event_type,
        raw_status=raw_status,
        status=status,
        error_code=error_code,
        event_time=event_time,
        received_at=received_at,
        attrs={k: v for k, v in (attrs or {}).items() if v is not None and k in ATTRIBUTES},
        flags=frozenset(str(f) for f in flags),
        raw=raw,
        fingerprint=fp,
        sent_at=sent_at,
    )


@dataclass(slots=True)
class MessageState:
    """The merged state of one message: what the `messages` row holds."""

    provider: str
    provider_message_id: str
    status: Status = Status.UNKNOWN
    raw_status: str | None = None
    error_code: str | None = None
    status_at: str | None = None  # event time of the winning event
    status_key: str | None = None  # event key of the winning event
    attrs: dict[str, Any] = field(default_factory=dict)
    attr_at: dict[str, list[str]] = field(default_factory=dict)  # attr -> [event_time, event_key]
    first_event_at: str | None = None
    last_event_at: str | None = None  # the latest trusted time (Event.trusted_time)
    sent_at: str | None = None  # the earliest send time of its events
    events_count: int = 0
    duplicates_count: int = 0
    flags: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return f"{self.provider}:{self.provider_message_id}"

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.provider, self.status)

    @property
    def is_final(self) -> bool:
        return is_final(self.provider, self.status)

    @property
    def final_at(self) -> str | None:
        return self.status_at if self.is_final else None

    @property
    def deliver_seconds(self) -> float | None:
        """From the first known send time to delivery; None when not delivered, when no send time
        is known, or when the delivery is dated before the send (a clock problem), never 0 for unknown."""
        if self.status is not _DELIVERED or self.sent_at is None or self.status_at is None:
            return None
        return _deliver_seconds(self.sent_at, self.status_at)

    @property
    def order(self) -> tuple[Any, ...] | None:
        status = self.status
        if status is _UNKNOWN or self.status_at is None or self.status_key is None:
            return None
        return order_key(self.provider, status, self.status_at, self.status_key)


@functools.lru_cache(maxsize=4096)  # the writer asks for the same message's several times a batch
def _deliver_seconds(sent_at: str, delivered_at: str) -> float | None:
    seconds = (parse_iso(delivered_at) - parse_iso(sent_at)).total_seconds()
    return seconds if seconds >= 0 else None


# Read in `apply` for every event: an enum member read through its class costs ten times a
# module global (79 against 8 ns, measured), and apply read several per event.
_UNKNOWN = Status.UNKNOWN
_PENDING_CLASS, _SOFT_FINAL, _HARD_FINAL = int(StatusClass.PENDING), int(StatusClass.SOFT_FINAL), int(StatusClass.HARD_FINAL)
_UNMAPPED, _LATE_DLR, _TERMINAL_CONFLICT = Flag.UNMAPPED, Flag.LATE_DLR, Flag.TERMINAL_CONFLICT
_REGRESSION_IGNORED, _LATE_EVENT = Flag.REGRESSION_IGNORED, Flag.LATE_EVENT


def apply(state: MessageState, event: Event) -> frozenset[str]:
    """Merge one new (non-duplicate) event into `state` in place; return the event's flags.

    Rules 2-7 of SPEC §3. Duplicates (rule 1) are the caller's to detect, since the
    caller knows which event keys and fingerprints are stored. The writer runs this for every
    event it stores: it reads each field once."""
    flags = set(event.flags)
    state.events_count += 1
    event_time, received, key = event.event_time, event.received_at, event.event_key
    first = state.first_event_at
    if first is None or event_time < first:
        state.first_event_at = event_time
    trusted = received if event_time > received and is_ahead(event_time, received) else event_time  # Event.trusted_time
    last = state.last_event_at
    if last is None or trusted > last:
        state.last_event_at = trusted
    sent = event.sent_at
    if sent is not None and (state.sent_at is None or sent < state.sent_at):
        state.sent_at = sent

    status = event.status
    if status is _UNKNOWN:
        flags.add(_UNMAPPED)
    else:
        current = state.order
        new = order_key(event.provider, status, event_time, key)
        new_cls = new[0]
        if current is None or new > current:
            if current is not None:
                cur_cls = current[0]
                if cur_cls == _SOFT_FINAL and new_cls == _HARD_FINAL:
                    flags.add(_LATE_DLR)
                if cur_cls == _HARD_FINAL and status is not state.status:
                    flags.add(_TERMINAL_CONFLICT)
            state.status = status
            state.raw_status = event.raw_status
            state.error_code = event.error_code
            state.status_at = event_time
            state.status_key = key
        elif new < current:
            cur_cls = current[0]
            if cur_cls == _PENDING_CLASS:
                if status is not state.status:
                    flags.add(_REGRESSION_IGNORED)
            else:
                flags.add(_LATE_EVENT)
                if cur_cls == _HARD_FINAL and new_cls == _HARD_FINAL and status is not state.status:
                    # The disagreement is the same whichever final came first.
                    flags.add(_TERMINAL_CONFLICT)

    attrs = event.attrs
    if attrs:
        stamp = [event_time, key]
        values, stamps = state.attrs, state.attr_at
        for name, value in attrs.items():
            if value is None:
                continue
            seen = stamps.get(name)
            if seen is None or stamp > seen:
                values[name] = value
                stamps[name] = stamp

    if flags:
        state.flags |= flags
        return frozenset(flags)
    return _NO_FLAGS


_NO_FLAGS: frozenset[str] = frozenset()


def fold(events: Iterable[Event]) -> MessageState:
    """Merge events of one message in the given order, skipping duplicates (rule 1): the
    reference the writer is tested against."""
    state: MessageState | None = None
    keys: set[str] = set()
    fps: set[int] = set()
    for ev in events:
        if state is None:
            state = MessageState(ev.provider, ev.provider_message_id)
        if ev.event_key in keys or ev.fingerprint in fps:
            state.duplicates_count += 1
            continue
        keys.add(ev.event_key)
        fps.add(ev.fingerprint)
        apply(state, ev)
    if state is None:
        raise ValueError("fold() needs at least one event")
    return state


def is_stale(final: bool, last_event_at: str | None, now: datetime, window: timedelta) -> bool:
    """SPEC §3 rule 8: a non-final message with no event for longer than the watch window."""
    return (not final) and last_event_at is not None and last_event_at < fmt(now - window)
