"""Deterministic, realistic traffic for both providers, as raw provider payloads.

`traffic()` yields what providers would send, in arrival order: Zeckta callback objects and
Eazita report rows, each with its arrival time. `events()` turns them into Events through the
real parsers, so generated databases exercise the same code as live data. The mix covers
every status, known and unknown error codes, several networks and countries, out-of-order
arrival, duplicates and the Eazita sample's quirks (numbers as strings, null references,
error_code "8", country_code "9292").
"""

from __future__ import annotations

import heapq
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

from smsmon.errors import ParseError
from smsmon.lifecycle import Event
from smsmon.providers import eazita, zeckta
from smsmon.store.origin import SIMULATED
from smsmon.timeutil import UTC, zone

EAZITA_TZ = zone(eazita.DEFAULT_TIMEZONE)
GH_PREFIXES = ("+23324", "+23354", "+23355", "+23320", "+23350", "+23326")
PK_NETWORKS = (("Zong", "+92310"), ("Jazz", "+92300"), ("Telenor", "+92345"), ("Ufone", "+92333"))
SENDERS = ("ACME", "OTP", "BANKCO", "ShopGH")


@dataclass(frozen=True, order=True)
class Arrival:
    at: datetime
    seq: int
    provider: str
    payload: Any  # a callback dict (zeckta) or a report row dict (eazita)


def pick(rng: random.Random, table: list[tuple[float, str]]) -> str:
    """A name from a table of (share, name), by share."""
    x = rng.random()
    for share, name in table:
        x -= share
        if x < 0:
            return name
    return table[-1][1]


ZECKTA_FATES = [(0.80, "delivered"), (0.05, "failed"), (0.04, "undeliverable"), (0.03, "expired"), (0.02, "rejected"),
                (0.045, "stuck"), (0.01, "unknown"), (0.005, "conflict")]
EAZITA_FATES = [(0.74, "DELIVERED"), (0.06, "FAILED"), (0.04, "NOT_DELIVERED"), (0.03, "REJECTED"), (0.02, "NOT_ALLOWED"),
                (0.05, "SENT"), (0.03, "EXPIRED"), (0.01, "late_dlr"), (0.02, "PENDING")]
EAZITA_ERRORS = {"FAILED": ["103", "105", "500", "8", "8", "34"], "NOT_DELIVERED": ["101", "102", "27"],
                 "REJECTED": ["101", "104"], "NOT_ALLOWED": ["0"]}


def _eazita_date(t: datetime) -> str:
    return t.astimezone(EAZITA_TZ).strftime("%Y/%m/%d %H:%M:%S")


def _zeckta(rng: random.Random, t0: datetime) -> list[tuple[datetime, dict[str, Any]]]:
    mid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    dest = rng.choice(GH_PREFIXES) + f"{rng.randrange(10**7):07d}"
    segments = rng.choice((1, 1, 1, 2, 3))
    msg = {"uuid": mid, "src": rng.choice(SENDERS), "dest": dest, "segments": segments, "units": segments, "attempts": 1}
    fate = pick(rng, ZECKTA_FATES)
    steps: list[tuple[float, str]] = [(0.3, "SUBMITTED"), (1.5 + rng.random() * 3, "SENT")]
    deliver_delay = rng.lognormvariate(2.5, 1.2)  # seconds: median ~12 s, long tail
    if fate == "delivered":
        steps.append((5 + deliver_delay, "DELIVERED"))
    elif fate in ("failed", "undeliverable"):
        steps.append((5 + deliver_delay, fate.upper()))
    elif fate == "expired":
        steps.append((86400 + rng.random() * 86400, "EXPIRED"))
    elif fate == "rejected":
        steps = [(0.3, "SUBMITTED"), (0.8, "REJECTED")]
    elif fate == "unknown":
        steps += [(5 + deliver_delay, "DELIVERED"), (60 + deliver_delay, rng.choice(("READ", "CLICKED")))]
    elif fate == "conflict":
        steps += [(5 + deliver_delay, "DELIVERED"), (9 + deliver_delay, "FAILED")]
    out = []
    for delay, status in steps:
        when = t0 + timedelta(seconds=delay)
        final = status not in ("SUBMITTED", "SENT")
        body = {
            "eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "eventType": f"MESSAGE_{status}",
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{rng.randrange(1000):03d}Z",
            "message": dict(msg, status=status, cost=round(0.012 * segments, 4) if final else None),
        }
        arrive = when + timedelta(seconds=rng.random() * 0.5)
        if rng.random() < 0.03:  # out of order: this callback is held up on the way
            arrive += timedelta(seconds=10 + rng.random() * 60)
        out.append((arrive, body))
        if rng.random() < 0.03:  # the provider sends it again
            out.append((arrive + timedelta(seconds=1 + rng.random() * 30), body))
    return out


def _eazita(rng: random.Random, t0: datetime, message_id: int) -> list[tuple[datetime, dict[str, Any]]]:
    network, prefix = rng.choice(PK_NETWORKS)
    fate = pick(rng, EAZITA_FATES)
    base = {
        "message_id": message_id, "price": rng.choice(("0.003", "0.004")), "network": network,
        "country_code": "9292" if rng.random() < 0.02 else "92",
        "reference": f"ref-{rng.randrange(10**6):06d}" if rng.random() < 0.5 else None,
        "gsm": prefix + f"{rng.randrange(10**7):07d}",
    }
    sent = t0 + timedelta(seconds=2 + rng.random() * 3)
    rows = [(t0, dict(base, status="SUBMIT", sent_date=None, done_date=None, error_code="0")),
            (sent, dict(base, status="PENDING", sent_date=_eazita_date(sent), done_date=None, error_code="0"))]
    done = sent + timedelta(seconds=rng.lognormvariate(3.0, 1.3))
    final = fate
    if fate == "late_dlr":
        final = "EXPIRED"
    if final in ("EXPIRED", "SENT"):
        done = sent + timedelta(hours=rng.choice((4, 8, 24)))
    if final != "PENDING":
        code = rng.choice(EAZITA_ERRORS.get(final, ["0"]))
        rows.append((done, dict(base, status=final, sent_date=_eazita_date(sent), done_date=_eazita_date(done), error_code=code)))
    if fate == "late_dlr":
        late = done + timedelta(hours=2)
        rows.append((late, dict(base, status="DELIVERED", sent_date=_eazita_date(sent), done_date=_eazita_date(late), error_code="0")))
    out = []
    for when, row in rows:
        if row["status"] == "SUBMIT":  # only a poll before the send can see it queued
            arrive = when + (sent - when) * rng.random()
        else:
            arrive = when + timedelta(seconds=rng.random() * 30)  # the next poll picks it up
        out.append((arrive, row))
        if rng.random() < 0.10:  # the same row seen again by a later poll
            out.append((arrive + timedelta(seconds=30), row))
    return out


def traffic(messages: int, *, seed: int = 1, now: datetime | None = None, days: float = 7.0) -> Iterator[Arrival]:
    """`messages` message lifecycles starting over `days` before `now`, as arrivals in time
    order. What would arrive after `now` has not happened yet (those messages are in flight)."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    step = timedelta(days=days) / max(messages, 1)
    pending: list[Arrival] = []
    seq = 0
    for i in range(messages):
        t0 = start + step * i + timedelta(seconds=rng.random() * step.total_seconds())
        if rng.random() < 0.55:
            provider, items = "zeckta", _zeckta(rng, t0)
        else:
            provider, items = "eazita", _eazita(rng, t0, 570_000 + (seed % 1000) * 10_000_000 + i)
        for at, payload in items:
            if at <= now:
                heapq.heappush(pending, Arrival(at, seq, provider, payload))
                seq += 1
        while pending and pending[0].at <= t0:
            yield heapq.heappop(pending)
    while pending:
        yield heapq.heappop(pending)


def to_event(arrival: Arrival) -> Event:
    """An arrival through the real parser for its provider; its source says it is simulated."""
    if arrival.provider == "zeckta":
        return zeckta.callback_from_object(arrival.payload, received_at=arrival.at, source=SIMULATED + "callback")
    return eazita.row_event(arrival.payload, tz=EAZITA_TZ, received_at=arrival.at, source=SIMULATED + "poll")


def generate_events(messages: int, *, seed: int = 1, now: datetime | None = None, days: float = 7.0) -> Iterator[Event]:
    for arrival in traffic(messages, seed=seed, now=now, days=days):
        try:
            yield to_event(arrival)
        except ParseError as exc:  # pragma: no cover - generated payloads are valid
            raise AssertionError(f"generator made an invalid payload: {exc}") from exc


@dataclass
class FillResult:
    new: int
    duplicates: int
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return (self.new + self.duplicates) / self.seconds if self.seconds else 0.0


EVENTS_PER_MESSAGE = 2.967  # stored (non-duplicate) events per generated message, measured over 30,000 messages


def fill(db: Path | str, *, messages: int | None = None, events: int | None = None, seed: int = 1, days: float = 7.0,
         now: datetime | None = None, batch: int = 500, progress: Callable[[int], None] | None = None) -> FillResult:
    """Generate traffic into a database through the real writer. `events` asks for about that
    many stored events (the message count is derived from it; the traffic always runs up to now).
    A database that held nothing is marked as a demo one (smsmon.store.origin); whether to write
    into one that holds data is the caller's decision."""
    import math
    import time

    from smsmon.store import origin
    from smsmon.store.backend import inspect_origin, open_writer

    if messages is None:
        messages = math.ceil(events / EVENTS_PER_MESSAGE) if events else 1000
    new = dups = 0
    touched: set[str] = set()
    started = time.perf_counter()
    pending: list[Event] = []
    fresh = inspect_origin(db).kind == "new"
    with open_writer(db) as writer:
        if fresh:
            writer.run(origin.mark_demo)
        def flush() -> None:
            nonlocal new, dups
            for a in writer.apply(pending):
                if a.duplicate:
                    dups += 1
                else:
                    new += 1
                    touched.add(a.message_id)
            pending.clear()
            if progress:
                progress(new)

        for ev in generate_events(messages, seed=seed, now=now, days=days):
            pending.append(ev)
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    return FillResult(new, dups, len(touched), time.perf_counter() - started)
