"""Counts the writer maintains, so that figures over millions of messages cost what a handful of
rows cost: messages and events per hour and per day of their latest activity, by provider,
status, error code, network and country (`agg_hour`, `agg_day`), and how long delivered ones
took, as a histogram per the same keys (`agg_latency_hour`, `agg_latency_day`), and what the
priced ones cost per hour of latest activity and day sent (`agg_cost_hour`, schema 6).

Each message is counted in exactly one row of each table: the writer, in the transaction that
changes a message, takes it out of its old row and puts it in its new one (`deltas`). So a
count over any time range is exact: whole days from the day table, whole hours from the hour
table, and the minutes at the edges from the messages themselves (stats.py does that).

Times to deliver go into buckets a factor of BUCKET_BASE apart: a percentile read from them is
within 5 % of the exact one (the bucket's middle is reported).
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from typing import Iterable

from smsmon.lifecycle import MessageState, Outcome, Status, outcome_of

BUCKET_BASE = 1.1
BUCKET_FLOOR = 0.01  # seconds; anything faster is bucket 0
DIMS = ("provider", "raw_status", "error_code", "network", "country_code")
DIMS_SQL = ("provider, coalesce(raw_status, ''), coalesce(error_code, ''), coalesce(network, ''),"
            " coalesce(country_code, '')")  # the same of a messages row ('' for none, as the tables hold it)
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
    a = state.attrs.get
    return (state.provider, state.raw_status or "", state.error_code or "", a("network") or "", a("country_code") or "")


# The message counts per value kept in `facet_counts` (the unfiltered figures). A value of None
# is not counted: the fail_* dimensions count only messages not delivered.
FACETS = ("status", "outcome", "provider", "error_code", "network", "country_code", "fail_code", "fail_network",
          "fail_status", "latency")  # latency: delivered ones by time-to-deliver bucket (unfiltered percentiles)
PlaceKey = tuple[str, Status, "str | None", tuple[str, str, str, str, str], "int | None", str]
MICROS = 1_000_000  # costs are kept in millionths, as integers: sums of +/- floats would drift
# A price or cost of a message is added up only below this (in the provider's currency): what a
# provider (or a stranger at the listener) sends beyond is taken for an error, not a price. It
# keeps the sums in 64-bit integers: 10^10 millionths a message, 9 x 10^8 messages an hour and key.
COST_LIMIT = 10_000
PRICED_SQL = f"abs(cost) < {COST_LIMIT}"  # the same test in SQL (NaN and NULL fail it)


def micros(cost: object) -> int | None:
    """A cost in millionths, rounded half away from zero as the migrations' SQL does; None for no
    cost, one that is not a number, and one of COST_LIMIT or more (not a price)."""
    if not isinstance(cost, (int, float)) or isinstance(cost, bool) or not -COST_LIMIT < cost < COST_LIMIT:
        return None
    x = cost * MICROS
    return int(x + 0.5) if x >= 0 else int(x - 0.5)


class Place:
    """Where one message is counted. Every maintained count of a message follows from its `key`
    (the hour of its latest activity, status, raw status, dimensions, latency bucket, day sent),
    its events and its cost: the writer makes two places per message per batch and moves between
    keys, and only the few distinct keys of a batch are turned into rows."""

    __slots__ = ("events", "cost", "key")

    def __init__(self, state: MessageState) -> None:
        self.events = state.events_count
        self.cost = micros(state.attrs.get("cost"))
        seconds = state.deliver_seconds
        self.key: PlaceKey = (
            (state.last_event_at or "")[:13], state.status, state.raw_status, dims(state),
            bucket(seconds) if seconds is not None else None,
            (state.sent_at or state.first_event_at or "")[:10],  # the day insights' costs are shown by
        )

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Place) and self.key == other.key and self.events == other.events
                and self.cost == other.cost)


@functools.lru_cache(maxsize=4096)  # a batch's messages share a few dozen of these
def facet_values(status: Status, raw_status: str | None, d: tuple[str, str, str, str, str],
                 b: int | None) -> tuple[str | None, ...]:
    """A message's value of each of FACETS, from its Place's key (without the hour)."""
    provider, _, error, network, country = d
    outcome = outcome_of(provider, status)
    latency = str(b) if b is not None else None
    if outcome is Outcome.NOT_DELIVERED:
        return (status.value, outcome.value, provider, error, network, country, f"{provider}:{error}", network,
                f"{provider}:{raw_status}", latency)
    return (status.value, outcome.value, provider, error, network, country, None, None, None, latency)


class Deltas:
    """The changes of one batch (or one prune) to the maintained counts, added up per Place key
    before they are turned into rows: the aggregate tables' (`rows`) and facet_counts' (`facets`)."""

    def __init__(self) -> None:
        # Per key: [messages, events, priced messages, their cost in millionths]. One dict of
        # lists: a key (a tuple, whose hash Python does not keep) is hashed once per move, not four times.
        self.acc: dict[PlaceKey, list[int]] = {}

    def move(self, before: Place | None, after: Place | None) -> None:
        """One message out of the counts of `before` (None: it is new) into those of `after` (None: it goes)."""
        acc = self.acc
        if before is not None:
            if after is not None and before.key == after.key and before.events == after.events and before.cost == after.cost:
                return
            a = acc.get(before.key)
            if a is None:
                a = acc[before.key] = [0, 0, 0, 0]
            a[0] -= 1
            a[1] -= before.events
            if before.cost is not None:
                a[2] -= 1
                a[3] -= before.cost
        if after is not None:
            a = acc.get(after.key)
            if a is None:
                a = acc[after.key] = [0, 0, 0, 0]
            a[0] += 1
            a[1] += after.events
            if after.cost is not None:
                a[2] += 1
                a[3] += after.cost

    def rows(self) -> Iterable[tuple[str, list[tuple]]]:
        """(table, [key..., counts...]) rows to upsert, changes that cancel out left out."""
        tables: dict[str, defaultdict] = {t: defaultdict(int) for t in UPSERT if t != "agg_cost_hour"}
        hour_events: defaultdict = defaultdict(int)
        day_events: defaultdict = defaultdict(int)
        priced: defaultdict = defaultdict(int)
        cost: defaultdict = defaultdict(int)
        for key, (n, events, p_n, p_cost) in self.acc.items():
            hour, _, _, d, b, sent_day = key
            if n or events:
                day = hour[:10]
                hk, dk = (hour, *d), (day, *d)
                tables["agg_hour"][hk] += n
                tables["agg_day"][dk] += n
                hour_events[hk] += events
                day_events[dk] += events
                if b is not None and n:
                    p, _, code, net, country = d
                    tables["agg_latency_hour"][(hour, p, code, net, country, b)] += n
                    tables["agg_latency_day"][(day, p, code, net, country, b)] += n
            if p_n or p_cost:
                ck = (hour, sent_day, *d)
                priced[ck] += p_n
                cost[ck] += p_cost
        for table, events_of in (("agg_hour", hour_events), ("agg_day", day_events)):
            yield table, [(*k, n, events_of[k]) for k, n in tables[table].items() if n or events_of[k]]
        for table in ("agg_latency_hour", "agg_latency_day"):
            yield table, [(*k, n) for k, n in tables[table].items() if n]
        yield "agg_cost_hour", [(*k, n, cost[k]) for k, n in priced.items() if n or cost[k]]

    def facets(self) -> defaultdict[tuple[str, str], int]:
        """(dimension, value) -> the change of its count in facet_counts."""
        out: defaultdict[tuple[str, str], int] = defaultdict(int)
        for (_, status, raw_status, d, b, _), (n, *_) in self.acc.items():
            if n:
                for dim, value in zip(FACETS, facet_values(status, raw_status, d, b)):
                    if value is not None:
                        out[(dim, value)] += n
        return out


UPSERT = {
    "agg_hour": "INSERT INTO agg_hour (span, provider, raw_status, error_code, network, country_code, n, events)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n, events = events + excluded.events",
    "agg_day": "INSERT INTO agg_day (span, provider, raw_status, error_code, network, country_code, n, events)"
               " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n, events = events + excluded.events",
    "agg_latency_hour": "INSERT INTO agg_latency_hour (span, provider, error_code, network, country_code, bucket, n)"
                        " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "agg_latency_day": "INSERT INTO agg_latency_day (span, provider, error_code, network, country_code, bucket, n)"
                       " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
    "agg_cost_hour": "INSERT INTO agg_cost_hour (span, sent_day, provider, raw_status, error_code, network, country_code,"
                     " priced, cost_micros) VALUES (?,?,?,?,?,?,?,?,?)"
                     " ON CONFLICT DO UPDATE SET priced = priced + excluded.priced, cost_micros = cost_micros + excluded.cost_micros",
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


# Schema 6: the priced messages per hour of latest activity (span) and UTC day sent (the send
# time, else the first event's), with the same dimensions as agg_hour: how many, and their cost in
# millionths. What the insights screen's costs read (whole hours; the minutes at the edges of a
# period from the messages themselves).
COST_SCHEMA = (
    "CREATE TABLE agg_cost_hour (span TEXT NOT NULL, sent_day TEXT NOT NULL, provider TEXT NOT NULL,"
    " raw_status TEXT NOT NULL, error_code TEXT NOT NULL, network TEXT NOT NULL, country_code TEXT NOT NULL,"
    " priced INTEGER NOT NULL, cost_micros INTEGER NOT NULL,"
    " PRIMARY KEY (span, sent_day, provider, raw_status, error_code, network, country_code)) WITHOUT ROWID"
)
# The same from the messages (the migrations, and tests' reference): `micros` in SQL.
REBUILD_COSTS = (
    "INSERT INTO agg_cost_hour SELECT substr(last_event_at, 1, 13), substr(coalesce(sent_at, first_event_at, ''), 1, 10),"
    f" {DIMS_SQL}, count(*), sum({{micros}}) FROM messages{{where}} GROUP BY 1, 2, 3, 4, 5, 6, 7"
)
_HALF_AWAY = "cost * 1000000 + (CASE WHEN cost < 0 THEN -0.5 ELSE 0.5 END)"  # then truncated toward zero
_SQLITE_REBUILD_COSTS = REBUILD_COSTS.format(
    micros=f"CAST({_HALF_AWAY} AS INTEGER)",
    where=" INDEXED BY ix_messages_time WHERE last_event_at >= ? AND last_event_at < ?"
          f" AND typeof(cost) IN ('integer', 'real') AND {PRICED_SQL}")
PG_REBUILD_COSTS = REBUILD_COSTS.format(micros=f"trunc({_HALF_AWAY})::bigint", where=f" WHERE {PRICED_SQL}")


def rebuild_costs(conn) -> None:  # type: ignore[no-untyped-def]
    """agg_cost_hour from the messages (SQLite), a day of latest activity at a time: one GROUP BY
    over all of them sorted 3.4M rows in 780 MB of memory at 10M events (10.6 s); a day at a time
    takes 170 MB (8.8 s)."""
    conn.execute("DELETE FROM agg_cost_hour")
    days = [r[0] for r in conn.execute("SELECT DISTINCT span FROM agg_day ORDER BY 1")]
    bounds = ["", *days[1:], "\uffff"]  # every time falls in one [lo, hi): the first and last are open
    for lo, hi in zip(bounds, bounds[1:]):
        conn.execute(_SQLITE_REBUILD_COSTS, (lo, hi))


def rebuild(conn) -> None:  # type: ignore[no-untyped-def]
    """All four tables from the messages (a migration)."""
    for t in ("agg_hour", "agg_day", "agg_latency_hour", "agg_latency_day"):
        conn.execute(f"DELETE FROM {t}")
    for table, span in (("agg_hour", 13), ("agg_day", 10)):
        conn.execute(f"INSERT INTO {table} SELECT substr(last_event_at, 1, {span}), {DIMS_SQL}, count(*),"
                     " sum(events_count) FROM messages GROUP BY 1, 2, 3, 4, 5, 6")
    latency: Counter = Counter()
    for last, p, code, net, country, seconds in conn.execute(
            "SELECT last_event_at, provider, coalesce(error_code, ''), coalesce(network, ''), coalesce(country_code, ''),"
            " deliver_seconds FROM messages WHERE deliver_seconds IS NOT NULL"):
        b = bucket(seconds)
        latency[("agg_latency_hour", last[:13], p, code, net, country, b)] += 1
        latency[("agg_latency_day", last[:10], p, code, net, country, b)] += 1
    for table in ("agg_latency_hour", "agg_latency_day"):
        conn.executemany(UPSERT[table], [(*k[1:], n) for k, n in latency.items() if k[0] == table])
