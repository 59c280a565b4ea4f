"""Counts the writer maintains, so that figures over millions of messages cost what a handful of
rows cost: messages and events per hour and per day of their latest activity, by provider,
status, error code, network and country (`agg_hour`, `agg_day`), and how long delivered ones
took, as a histogram per the same keys (`agg_latency_hour`, `agg_latency_day`).

Each message is counted in exactly one row of each table: the writer, in the transaction that
changes a message, takes it out of its old row and puts it in its new one (`deltas`). So a
count over any time range is exact: whole days from the day table, whole hours from the hour
table, and the minutes at the edges from the messages themselves (stats.py does that).

Times to deliver go into buckets a factor of BUCKET_BASE apart: a percentile read from them is
within 5 % of the exact one (the bucket's middle is reported).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

from smsmon.lifecycle import MessageState

BUCKET_BASE = 1.1
BUCKET_FLOOR = 0.01  # seconds; anything faster is bucket 0
DIMS = ("provider", "raw_status", "error_code", "network", "country_code")
# (span, provider, raw_status, error_code, network, country_code) for agg_*: the raw status, of
# which the normalized one follows (and which tells Eazita's NOT_ALLOWED from its REJECTED);
# for agg_latency_* the same without it (only delivered messages have a time to deliver) and
# with the bucket.
Key = tuple[str, str, str, str, str, str]
LatencyKey = tuple[str, str, str, str, str, int]


def bucket(seconds: float) -> int:
    return 0 if seconds < BUCKET_FLOOR else int(math.log(seconds / BUCKET_FLOOR) / math.log(BUCKET_BASE))


def bucket_value(b: int) -> float:
    """The middle of a bucket, in seconds (geometric)."""
    return BUCKET_FLOOR * BUCKET_BASE ** (b + 0.5)


def dims(state: MessageState) -> tuple[str, str, str, str, str]:
    a = state.attrs
    return (state.provider, state.raw_status or "", state.error_code or "", a.get("network") or "", a.get("country_code") or "")


class Place:
    """Where one message is counted: its hour, its day, its dimensions, its events, its latency bucket."""

    __slots__ = ("hour", "day", "dims", "events", "bucket")

    def __init__(self, state: MessageState) -> None:
        t = state.last_event_at or ""
        self.hour, self.day = t[:13], t[:10]
        self.dims = dims(state)
        self.events = state.events_count
        seconds = state.deliver_seconds
        self.bucket = bucket(seconds) if seconds is not None else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Place) and (self.hour, self.dims, self.events, self.bucket) == (
            other.hour, other.dims, other.events, other.bucket)


class Deltas:
    """The changes of one batch to the four tables, added up before they are written."""

    def __init__(self) -> None:
        self.hour: Counter = Counter()
        self.day: Counter = Counter()
        self.hour_events: Counter = Counter()
        self.day_events: Counter = Counter()
        self.latency_hour: Counter = Counter()
        self.latency_day: Counter = Counter()

    def move(self, before: Place | None, after: Place) -> None:
        if before == after:
            return
        for place, sign in ((before, -1), (after, 1)):
            if place is None:
                continue
            hk, dk = (place.hour, *place.dims), (place.day, *place.dims)
            self.hour[hk] += sign
            self.day[dk] += sign
            self.hour_events[hk] += sign * place.events
            self.day_events[dk] += sign * place.events
            if place.bucket is not None:
                p, _, code, net, country = place.dims
                self.latency_hour[(place.hour, p, code, net, country, place.bucket)] += sign
                self.latency_day[(place.day, p, code, net, country, place.bucket)] += sign

    def rows(self) -> Iterable[tuple[str, list[tuple]]]:
        """(table, [key..., n, events]) rows to upsert, changes that cancel out left out."""
        for table, counts, events in (("agg_hour", self.hour, self.hour_events), ("agg_day", self.day, self.day_events)):
            yield table, [(*k, n, events[k]) for k, n in counts.items() if n or events[k]]
        for table, counts in (("agg_latency_hour", self.latency_hour), ("agg_latency_day", self.latency_day)):
            yield table, [(*k, n) for k, n in counts.items() if n]


UPSERT = {
    "agg_hour": "INSERT INTO agg_hour (span, provider, raw_status, error_code, network, country_code, n, events)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n, events = events + excluded.events",
    "agg_day": "INSERT INTO agg_day (span, provider, raw_status, error_code, network, country_code, n, events)"
               " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n, events = events + excluded.events",
    "agg_latency_hour": "INSERT INTO agg_latency_hour (span, provider, error_code, network, country_code, bucket, n)"
                        " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "agg_latency_day": "INSERT INTO agg_latency_day (span, provider, error_code, network, country_code, bucket, n)"
                       " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
}

SCHEMA = [
    *(f"CREATE TABLE {t} (span TEXT NOT NULL, provider TEXT NOT NULL, raw_status TEXT NOT NULL, error_code TEXT NOT NULL,"
      " network TEXT NOT NULL, country_code TEXT NOT NULL, n INTEGER NOT NULL, events INTEGER NOT NULL,"
      " PRIMARY KEY (span, provider, raw_status, error_code, network, country_code)) WITHOUT ROWID"
      for t in ("agg_hour", "agg_day")),
    *(f"CREATE TABLE {t} (span TEXT NOT NULL, provider TEXT NOT NULL, error_code TEXT NOT NULL, network TEXT NOT NULL,"
      " country_code TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,"
      " PRIMARY KEY (span, provider, error_code, network, country_code, bucket)) WITHOUT ROWID"
      for t in ("agg_latency_hour", "agg_latency_day")),
]


def rebuild(conn) -> None:  # type: ignore[no-untyped-def]
    """All four tables from the messages (a migration)."""
    for t in ("agg_hour", "agg_day", "agg_latency_hour", "agg_latency_day"):
        conn.execute(f"DELETE FROM {t}")
    for table, span in (("agg_hour", 13), ("agg_day", 10)):
        conn.execute(f"INSERT INTO {table} SELECT substr(last_event_at, 1, {span}), provider, coalesce(raw_status, ''),"
                     " coalesce(error_code, ''),"
                     " coalesce(network, ''), coalesce(country_code, ''), count(*), sum(events_count) FROM messages"
                     " GROUP BY 1, 2, 3, 4, 5, 6")
    latency: Counter = Counter()
    for last, p, code, net, country, seconds in conn.execute(
            "SELECT last_event_at, provider, coalesce(error_code, ''), coalesce(network, ''), coalesce(country_code, ''),"
            " deliver_seconds FROM messages WHERE deliver_seconds IS NOT NULL"):
        b = bucket(seconds)
        latency[("agg_latency_hour", last[:13], p, code, net, country, b)] += 1
        latency[("agg_latency_day", last[:10], p, code, net, country, b)] += 1
    for table in ("agg_latency_hour", "agg_latency_day"):
        conn.executemany(UPSERT[table], [(*k[1:], n) for k, n in latency.items() if k[0] == table])
