"""Figures over the messages: delivery rate, time to deliver, outcomes, stale messages, failures
by status, code and network (`stats`), counts per value of one column (`facets`), the hourly
series (`hourly`).

Where they come from, cheapest first:
- nothing filtered: the counts the writer maintains (`facet_counts`);
- a filter of provider, status (and outcome, open, final, stale), error code, network and time:
  the aggregates (aggregates.py), whole days from `agg_day`, whole hours from `agg_hour`, and only
  the minutes at the edges of since/until from the messages themselves: a few hundred rows
  whatever the size of the database;
- a filter the aggregates cannot answer (free text, a number, a flag): the matching messages,
  read on the filter's plan, at most RAW_LIMIT of them (the figures then say they are partial).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Iterator

from smsmon.filters import NONE, Filter
from smsmon.lifecycle import WATCH_WINDOW, Outcome, is_final, normalize, outcome_of
from smsmon.store import aggregates
from smsmon.store.queries import TOP, _plan
from smsmon.store.totals import stored_events
from smsmon.timeutil import fmt, now_utc

FACET_DIMS = ("status", "outcome", "provider", "error_code", "network", "country_code")
# Below these, percentiles come from the times themselves (read in a few ms), not the histogram.
EXACT_LATENCY, EXACT_SCOPE = 2_000, 10_000  # (20,000 cost 250 ms of random reads at 10M events)
RAW_LIMIT = 100_000  # messages read for a filter the aggregates cannot answer (0.7 s at 10M events, warm)
# The app's first look at such a filter's figures, shown while it counts on to RAW_LIMIT: a few
# tens of milliseconds at 10M events (the same count over 100,000 messages takes 0.7 s).
RAW_FIRST = 10_000
Dims = tuple[str, str, str, str, str]  # provider, raw_status, error_code, network, country_code ('' for none)


# The histogram bucket of a time to deliver (aggregates.bucket), computed by SQLite.
BUCKET_SQL = (f"CASE WHEN deliver_seconds IS NULL THEN NULL WHEN deliver_seconds < {aggregates.BUCKET_FLOOR} THEN 0"
               f" ELSE CAST(ln(deliver_seconds / {aggregates.BUCKET_FLOOR}) / ln({aggregates.BUCKET_BASE}) AS INTEGER) END")


@dataclass
class Stats:
    messages: int
    events: int
    outcomes: dict[str, int]
    delivery_rate: float | None  # delivered / (delivered + not delivered)
    median_seconds: float | None  # first known send time to DELIVERED
    p90_seconds: float | None
    stale: int
    failures_by_code: list[tuple[str, str | None, int]]  # provider, error code, count
    failures_by_network: list[tuple[str | None, int]]
    failures_by_status: list[tuple[str, str, int]]  # provider, raw status, count
    partial: bool = False  # counted over the first `limit` matching messages only
    limit: int = 0  # the most messages read, for a filter whose figures come from the messages themselves

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "events": self.events, "outcomes": self.outcomes,
            "delivery_rate": self.delivery_rate, "median_seconds_to_deliver": self.median_seconds,
            "p90_seconds_to_deliver": self.p90_seconds, "stale": self.stale,
            "failures_by_code": [{"provider": p, "error_code": c, "count": n} for p, c, n in self.failures_by_code],
            "failures_by_network": [{"network": net, "count": n} for net, n in self.failures_by_network],
            "failures_by_status": [{"provider": p, "raw_status": r, "count": n} for p, r, n in self.failures_by_status],
            "partial": self.partial, "limit": self.limit or None,
        }


@dataclass
class Tally:
    """Messages counted by their dimensions; delivered ones' times to deliver by bucket."""

    n: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    latency: Counter = field(default_factory=Counter)
    partial: bool = False

    def add(self, dims: Dims, n: int, events: int) -> None:
        self.n[dims] += n
        self.events[dims] += events


# ── which messages a filter keeps, by their dimensions ──────────────────────────
def aggregable(f: Filter) -> bool:
    """A filter the aggregates answer exactly: no free text, number or stored flag."""
    return not (f.text or f.dests or any(flag != "stale" for flag in f.flags))


def _keeps(f: Filter, provider: str, raw: str, code: str, net: str, country: str, *, open_only: bool = False) -> bool:
    status = normalize(provider, raw)
    if f.providers and provider not in f.providers:
        return False
    if f.statuses and status.value not in f.statuses:
        return False
    if f.outcomes and outcome_of(provider, status).value not in f.outcomes:
        return False
    final = is_final(provider, status)
    if ("open" in f.special or "stale" in f.special or "stale" in f.flags or open_only) and final:
        return False
    if "final" in f.special and not final:
        return False
    for values, value in ((f.errors, code), (f.networks, net), (f.countries, country)):
        if values and value not in values and not (value == "" and NONE in values):  # '' is stored for none
            return False
    return True


def _prefilter(f: Filter) -> tuple[str, list[Any]]:
    """SQL terms on the columns both the aggregates and the messages have, to read fewer rows."""
    conds, params = [], []
    for column, values in (("provider", f.providers), ("error_code", f.errors), ("network", f.networks),
                           ("country_code", f.countries)):
        if values:
            values = tuple("" if v == NONE else v for v in values)  # none: stored as '' here
            conds.append(f"coalesce({column}, '') IN ({','.join('?' * len(values))})")
            params.extend(values)
    return " AND ".join(conds) or "1", params


# ── time ranges: whole days, whole hours, the minutes at the edges ──────────────
def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _ceil(t: datetime, floor: Any, step: timedelta) -> datetime:
    f = floor(t)
    return f if f == t else f + step


def _floor_day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def pieces(lo: datetime | None, hi: datetime | None) -> tuple[list[tuple[str | None, str | None]],
                                                                 list[tuple[str, str]], list[tuple[str, str]]]:
    """[lo, hi) (None: unbounded) as day spans, hour spans and raw ranges, each [from, to) in the
    keys of its table (`2026-11-23`, `2026-11-23T10`, a canonical time)."""
    days: list[tuple[str | None, str | None]] = []
    hours: list[tuple[str, str]] = []
    raw: list[tuple[str, str]] = []
    lo_h = _ceil(lo, _floor_hour, HOUR) if lo else None
    hi_h = _floor_hour(hi) if hi else None
    if lo and hi and (lo_h >= hi_h):  # type: ignore[operator]
        return days, hours, [(fmt(lo), fmt(hi))] if lo < hi else []
    if lo and lo < lo_h:  # type: ignore[operator]
        raw.append((fmt(lo), fmt(lo_h)))  # type: ignore[arg-type]
    if hi and hi_h < hi:  # type: ignore[operator]
        raw.append((fmt(hi_h), fmt(hi)))  # type: ignore[arg-type]
    lo_d = _ceil(lo_h, _floor_day, DAY) if lo_h else None
    hi_d = _floor_day(hi_h) if hi_h else None
    if lo_d and hi_d and lo_d >= hi_d:
        hours.append((fmt(lo_h)[:13], fmt(hi_h)[:13]))  # type: ignore[arg-type]
        return days, hours, raw
    if lo_h and lo_h < lo_d:  # type: ignore[operator]
        hours.append((fmt(lo_h)[:13], fmt(lo_d)[:13]))  # type: ignore[arg-type]
    if hi_d and hi_d < hi_h:  # type: ignore[operator]
        hours.append((fmt(hi_d)[:13], fmt(hi_h)[:13]))  # type: ignore[arg-type]
    days.append((fmt(lo_d)[:10] if lo_d else None, fmt(hi_d)[:10] if hi_d else None))
    return days, hours, raw


def _span_sql(lo: str | None, hi: str | None) -> tuple[str, list[str]]:
    conds, params = [], []
    if lo is not None:
        conds.append("span >= ?")
        params.append(lo)
    if hi is not None:
        conds.append("span < ?")
        params.append(hi)
    return " AND ".join(conds) or "1", params


def collect(conn: sqlite3.Connection, f: Filter, lo: datetime | None, hi: datetime | None, *,
            open_only: bool = False) -> Tally:
    """The messages of an aggregable filter whose latest activity is in [lo, hi)."""
    tally = Tally()
    pre, pre_params = _prefilter(f)
    days, hours, raw = pieces(lo, hi)
    wants_latency = not open_only and _keeps_delivered(f)
    for table, spans in (("day", days), ("hour", hours)):
        for span_lo, span_hi in spans:
            where, params = _span_sql(span_lo, span_hi)
            for row in conn.execute(
                    f"SELECT provider, raw_status, error_code, network, country_code, sum(n), sum(events) FROM agg_{table}"
                    f" WHERE {where} AND {pre} GROUP BY 1, 2, 3, 4, 5", [*params, *pre_params]):
                if _keeps(f, *row[:5], open_only=open_only):
                    tally.add(row[:5], row[5], row[6])
            if wants_latency:
                for p, code, net, country, b, n in conn.execute(
                        f"SELECT provider, error_code, network, country_code, bucket, sum(n) FROM agg_latency_{table}"
                        f" WHERE {where} AND {pre} GROUP BY 1, 2, 3, 4, 5", [*params, *pre_params]):
                    if _keeps(f, p, "DELIVERED", code, net, country):
                        tally.latency[b] += n
    for p, raw_status, code, net, country, b, n, events in edge_groups(
            conn, raw, pre, pre_params, f"{aggregates.DIMS_SQL}, {BUCKET_SQL}, count(*), sum(events_count)"):
        if _keeps(f, p, raw_status, code, net, country, open_only=open_only):
            tally.add((p, raw_status, code, net, country), n, events)
            if wants_latency and b is not None:
                tally.latency[b] += n
    return tally


def edge_groups(conn: sqlite3.Connection, raw: list[tuple[str, str]], pre: str, pre_params: list[Any],
                select: str) -> Iterator[tuple]:
    """The messages of the raw ranges of `pieces` (the minutes at the edges of a period, which no
    aggregate row holds alone), counted by SQLite in groups: `select` is six grouped columns,
    then the sums."""
    for lo, hi in raw:
        yield from conn.execute(
            f"SELECT {select} FROM messages INDEXED BY ix_messages_time"
            f" WHERE last_event_at >= ? AND last_event_at < ? AND {pre} GROUP BY 1, 2, 3, 4, 5, 6", [lo, hi, *pre_params])


def quick_stats(flt: Filter) -> bool:
    """Whether the figures of this filter come from the maintained counts, in milliseconds however
    many messages match. Any other (a number or a prefix, free text, a stored flag) is counted
    from the messages themselves, apart from its rows: a stored flag alone can hold a third of a
    million messages at 10M events (`flag:late_event` took 0.5 s)."""
    return flt.empty or aggregable(flt)


def match_hours(conn: sqlite3.Connection, f: Filter, upto: str | None = None) -> Iterator[tuple[str, int]]:
    """(hour, messages) of each hour that holds messages an aggregable filter keeps (a message's
    hour is that of its latest event), newest first, from `upto`'s hour down, read as they are
    asked for: where a page of a filter no index drives (a country) has to look."""
    pre, params = _prefilter(f)
    if upto is not None:
        pre, params = f"{pre} AND span <= ?", [*params, upto[:13]]
    hour, count = None, 0
    for span, p, raw, code, net, country, n in conn.execute(
            "SELECT span, provider, raw_status, error_code, network, country_code, n FROM agg_hour"
            f" WHERE {pre} AND n > 0 ORDER BY span DESC", params):
        if span != hour:
            if count:
                yield hour, count  # type: ignore[misc]
            hour, count = span, 0
        if _keeps(f, p, raw, code, net, country):
            count += n
    if count:
        yield hour, count  # type: ignore[misc]


def _keeps_delivered(f: Filter) -> bool:
    """Whether delivered messages can match at all (else no time to deliver is read)."""
    return _keeps(replace(f, providers=(), errors=(), networks=(), countries=()), "zeckta", "DELIVERED", "", "", "")


def _raw(conn: sqlite3.Connection, f: Filter, now: datetime, window: timedelta, limit: int) -> tuple[Tally, int]:
    """The matching messages themselves, the first `limit` of them, counted by SQLite into a few
    hundred groups (per message in Python it took as long as the reading): (tally, stale among
    them). Partial when it read `limit`: there may be more (reading one more to know would count
    it too; leaving it out took 70 % longer, measured)."""
    hint, conds, params = _plan(conn, f, now, window)
    rows = conn.execute(
        "SELECT p, raw, code, net, country, bucket, count(*), sum(events), sum(stale) FROM ("
        "SELECT provider AS p, coalesce(raw_status, '') AS raw, coalesce(error_code, '') AS code,"
        " coalesce(network, '') AS net, coalesce(country_code, '') AS country, events_count AS events,"
        f" {BUCKET_SQL} AS bucket, is_final = 0 AND last_event_at < ? AS stale FROM messages{hint}"
        f" WHERE {' AND '.join(conds) or '1'} LIMIT ?) GROUP BY 1, 2, 3, 4, 5, 6",
        [fmt(now - window), *params, limit]).fetchall()
    tally = Tally(partial=sum(r[6] for r in rows) >= limit)
    stale = 0
    for p, raw, code, net, country, b, n, events, stale_n in rows:
        tally.add((p, raw, code, net, country), n, events)
        if b is not None:
            tally.latency[b] += n
        stale += stale_n
    return tally, stale


def _range(f: Filter, now: datetime, window: timedelta) -> tuple[datetime | None, datetime | None]:
    lo, hi = f.since, f.until
    if "stale" in f.special or "stale" in f.flags:  # open and silent since before the watch window
        cutoff = now - window
        hi = min(hi, cutoff) if hi else cutoff
    return lo, hi


def tally(conn: sqlite3.Connection, f: Filter, *, now: datetime, window: timedelta,
          limit: int | None = None) -> tuple[Tally, int]:
    """(the messages of a filter, how many of them are stale), from wherever is cheapest: the
    maintained counts, or at most `limit` of the messages themselves."""
    if not aggregable(f):
        return _raw(conn, f, now, window, RAW_LIMIT if limit is None else limit)
    lo, hi = _range(f, now, window)
    main = collect(conn, f, lo, hi)
    cutoff = now - window
    stale_hi = min(hi, cutoff) if hi else cutoff
    stale = sum(collect(conn, f, lo, stale_hi, open_only=True).n.values()) if not lo or lo < stale_hi else 0
    return main, stale


# ── figures from a tally ─────────────────────────────────────────────────────────
def percentile(histogram: Counter, q: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = min(total - 1, int(q * total))
    seen = 0
    for b in sorted(histogram):
        seen += histogram[b]
        if seen > rank:
            return round(aggregates.bucket_value(b), 3)
    return None  # unreachable: the ranks add up to total


def _top(counter: Counter) -> list[tuple[Any, int]]:
    return sorted(((k, n) for k, n in counter.items() if n > 0), key=lambda kv: (-kv[1], str(kv[0])))[:TOP]


def figures(t: Tally, stale: int, events: int | None = None) -> Stats:
    outcomes: Counter = Counter()
    by_code: Counter = Counter()
    by_network: Counter = Counter()
    by_status: Counter = Counter()
    for (p, raw, code, net, _country), n in t.n.items():
        outcome = outcome_of(p, normalize(p, raw))
        outcomes[outcome.value] += n
        if outcome is Outcome.NOT_DELIVERED:
            by_code[(p, code or None)] += n
            by_network[net or None] += n
            by_status[(p, raw)] += n
    delivered, failed = outcomes[Outcome.DELIVERED.value], outcomes[Outcome.NOT_DELIVERED.value]
    return Stats(
        messages=sum(outcomes.values()),
        events=events if events is not None else sum(t.events.values()),
        outcomes={o.value: outcomes.get(o.value, 0) for o in Outcome},
        delivery_rate=delivered / (delivered + failed) if delivered + failed else None,
        median_seconds=percentile(t.latency, 0.5),
        p90_seconds=percentile(t.latency, 0.9),
        stale=stale,
        failures_by_code=[(p, c, n) for (p, c), n in _top(by_code)],
        failures_by_network=[(net, n) for net, n in _top(by_network)],
        failures_by_status=[(p, raw, n) for (p, raw), n in _top(by_status)],
        partial=t.partial,
    )


def stats(conn: sqlite3.Connection, f: Filter | None = None, *, now: datetime | None = None,
          window: timedelta = WATCH_WINDOW, limit: int | None = None) -> Stats:
    """Delivery rate, time to deliver, outcomes, stale count and failures, for everything or a
    filter. `limit`: the messages read at most for a filter no maintained count answers
    (RAW_LIMIT unless said)."""
    now = now or now_utc()
    limit = RAW_LIMIT if limit is None else limit
    if f is None or f.empty:
        s = _unfiltered(conn, now, window)
    else:
        t, stale = tally(conn, f, now=now, window=window, limit=limit)
        s = figures(t, stale)
        s.limit = limit
    delivered = s.outcomes.get(Outcome.DELIVERED.value, 0)
    if 0 < delivered <= EXACT_LATENCY and s.messages <= EXACT_SCOPE and not s.partial:
        exact = exact_latency(conn, f or Filter(), now, window)
        if exact is not None:
            s.median_seconds, s.p90_seconds = exact
    return s


def exact_latency(conn: sqlite3.Connection, f: Filter, now: datetime, window: timedelta) -> tuple[float, float] | None:
    """The median and p90 of the times to deliver themselves, where there are few enough to read:
    the same figures as the insights screen, not the histogram's bucket (within 5 % of them)."""
    hint, conds, params = _plan(conn, f, now, window)
    secs = sorted(r[0] for r in conn.execute(
        f"SELECT deliver_seconds FROM messages{hint} WHERE {' AND '.join([*conds, 'deliver_seconds IS NOT NULL'])}"
        " LIMIT ?", [*params, EXACT_LATENCY + 1]))
    if not secs or len(secs) > EXACT_LATENCY:
        return None  # more than the counts said (written meanwhile): keep the histogram's

    def q(p: float) -> float:
        return round(secs[min(len(secs) - 1, int(p * len(secs)))], 3)

    return q(0.5), q(0.9)


def _unfiltered(conn: sqlite3.Connection, now: datetime, window: timedelta) -> Stats:
    """Everything, from the maintained counts: a few dozen rows."""
    counts: dict[str, dict[str, int]] = {}
    for dim, value, n in conn.execute("SELECT dim, value, n FROM facet_counts WHERE n > 0"):
        counts.setdefault(dim, {})[value] = n
    outcomes = counts.get("outcome", {})
    delivered, failed = outcomes.get(Outcome.DELIVERED.value, 0), outcomes.get(Outcome.NOT_DELIVERED.value, 0)
    latency = Counter({int(b): n for b, n in counts.get("latency", {}).items()})
    stale = conn.execute("SELECT count(*) FROM messages INDEXED BY ix_messages_open WHERE is_final = 0 AND last_event_at < ?",
                         (fmt(now - window),)).fetchone()[0]

    def top(dim: str) -> list[tuple[str, int]]:
        return sorted(counts.get(dim, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]

    return Stats(
        messages=sum(outcomes.values()), events=stored_events(conn),
        outcomes={o.value: outcomes.get(o.value, 0) for o in Outcome},
        delivery_rate=delivered / (delivered + failed) if delivered + failed else None,
        median_seconds=percentile(latency, 0.5), p90_seconds=percentile(latency, 0.9), stale=stale,
        failures_by_code=[(v.split(":", 1)[0], v.split(":", 1)[1] or None, n) for v, n in top("fail_code")],
        failures_by_network=[(v or None, n) for v, n in top("fail_network")],
        failures_by_status=[(v.split(":", 1)[0], v.split(":", 1)[1], n) for v, n in top("fail_status")],
    )


def facets(conn: sqlite3.Connection, dim: str, f: Filter | None = None, *, limit: int = TOP,
           now: datetime | None = None, window: timedelta = WATCH_WINDOW) -> list[tuple[str | None, int]]:
    """Message counts per value of `dim` (status, outcome, provider, error_code, network,
    country_code), largest first."""
    if dim not in FACET_DIMS:
        raise ValueError(f"unknown facet {dim!r}")
    if f is None or f.empty:
        rows = conn.execute(
            "SELECT value, n FROM facet_counts WHERE dim = ? AND n > 0 ORDER BY n DESC, value LIMIT ?", (dim, limit)
        ).fetchall()
        return [(v or None, n) for v, n in rows]
    t, _ = tally(conn, f, now=now or now_utc(), window=window)
    out: Counter = Counter()
    for (p, raw, code, net, country), n in t.n.items():
        status = normalize(p, raw)
        value = {"status": status.value, "outcome": outcome_of(p, status).value, "provider": p, "error_code": code,
                 "network": net, "country_code": country}[dim]
        out[value or None] += n
    return sorted(((v, n) for v, n in out.items() if n), key=lambda kv: (-kv[1], str(kv[0])))[:limit]
