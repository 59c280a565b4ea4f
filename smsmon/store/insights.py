"""The insights screen's read: the messages of a filter whose latest activity falls in a period
(the filter's since:/until:, else the last 24 h, 7 days or hour), broken down by status, error
code, network and country (failure counts and rates: failed ÷ finished), their delivery and time
to deliver per hour or day, and the stale messages. Every row carries the Filter of exactly the
messages it counts, so that opening it lists them.

Where the figures come from: for a filter the aggregates answer (stats.aggregable), the hourly
and daily aggregates, one bucket of the chart at a time (a few hundred rows each, whatever the
size of the database: the 7-day view read 770k messages at 10M events before); else the
messages of the period themselves. Costs are read apart (`costs`), so the rest of the screen
does not wait for them: from `agg_cost_hour` where the aggregates answer the filter, else from
the messages.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from smsmon.filters import NONE, Filter
from smsmon.lifecycle import Outcome, normalize, outcome_of
from smsmon.store import aggregates, queries
from smsmon.store import stats as figures
from smsmon.store.queries import _plan
from smsmon.timeutil import UTC, fmt

HOURLY_UP_TO = timedelta(hours=48)  # longer periods are drawn per day
STALE_SHOWN = 50
# Stale messages counted one by one at most (a filter the aggregates cannot answer): a number
# prefix's stale messages at any time took 4.2 s to count at 10M events.
STALE_COUNTED = 10_000
FAILED, DELIVERED = Outcome.NOT_DELIVERED.value, Outcome.DELIVERED.value
ND = (FAILED,)


def insights_period(conn: sqlite3.Connection, f: Filter, *, period: timedelta, now: datetime,
                    window: timedelta, limit: int | None = None) -> dict[str, Any]:
    """Everything the insights screen shows but the costs (`costs`). Under a filter the
    aggregates cannot answer, the figures are of the newest `limit` (RAW_LIMIT unless said) of the
    period's matching messages: "partial" says there were more, "limit" how many were read."""
    hourly = (((f.until or now) - (f.since or now - period)) <= HOURLY_UP_TO)
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    # Without since: the period starts on a whole hour, so that the aggregates answer it whole.
    since = f.since or _floor(now - period, timedelta(hours=1))
    fp = replace(f, since=since)
    if figures.aggregable(f):
        buckets, total = _from_aggregates(conn, f, since, f.until, step, now)
        limit = 0
    else:
        limit = figures.RAW_LIMIT if limit is None else limit
        buckets, total = _from_messages(conn, fp, step, now, window, limit)
    # Partial figures are of the period's newest messages: the buckets before the oldest one read
    # were not read at all (not empty), and that one only in part. The chart starts there.
    series = _series(buckets, since, f.until or now, step, now, min(buckets) if total.partial and buckets else None)
    latency = _latency(conn, fp, total, now, window)
    # A filter the aggregates cannot answer: its stale messages are read apart (`stale`), the rest
    # of the screen does not wait (counting them took 4.2 s at 10M events under a number prefix,
    # listing them 0.5 s under flag:late_event).
    apart = {"stale": None, "stale_count": None, "stale_more": False}
    return {
        "filter": fp, "since": since, "until": f.until, "period": period, "bucket": "hour" if hourly else "day",
        "totals": _totals(total, latency),
        **_rows(total, fp),
        "series": series, "partial": total.partial, "limit": limit,
        **(stale(conn, f, now=now, window=window) if figures.aggregable(f) else apart),  # None: read apart
    }


def _stale_filter(f: Filter) -> Filter:
    """The stale messages of a filter, at any time."""
    return replace(f, since=None, until=None, special=tuple(dict.fromkeys((*f.special, "stale"))))


def _stale_of_aggregates(conn: sqlite3.Connection, f: Filter, now: datetime, window: timedelta) -> int:
    """Stale messages of an aggregable filter at any time, from the aggregates of open messages
    (counting them one by one took 375 ms at 10M events under provider:zeckta)."""
    base = replace(f, since=None, until=None)
    return sum(figures.collect(conn, base, None, now - window, open_only=True).n.values())


def stale(conn: sqlite3.Connection, f: Filter, *, now: datetime, window: timedelta) -> dict[str, Any]:
    """The filter's stale messages at any time: the newest STALE_SHOWN, how many there are (from
    the aggregates where they answer, else counted one by one up to STALE_COUNTED) and whether
    there are more than that."""
    stale_filter = _stale_filter(f)
    if figures.aggregable(f):
        n, more = _stale_of_aggregates(conn, f, now, window), False
    else:
        counted = queries.count(conn, stale_filter, now=now, window=window, limit=STALE_COUNTED + 1)
        n, more = min(counted, STALE_COUNTED), counted > STALE_COUNTED
    # None stale (a final status asked for): no looking through the open messages for them
    shown = queries.page(conn, stale_filter, limit=STALE_SHOWN, now=now, window=window) if n else []
    return {"stale": shown, "stale_count": n, "stale_more": more}


def costs(conn: sqlite3.Connection, f: Filter, *, period: timedelta, now: datetime, window: timedelta,
          limit: int | None = None) -> dict[str, Any]:
    """The insights screen's costs, per UTC day sent and per provider and network, of the same
    messages as `insights_period`: from `agg_cost_hour` for a filter the aggregates answer (the
    minutes at the edges of the period from the messages), else from the newest `limit` of the
    messages themselves (RAW_LIMIT unless said; "costs_partial" says there were more)."""
    fp = replace(f, since=f.since or _floor(now - period, timedelta(hours=1)))
    by_day: dict[tuple[str, str], list[float]] = {}
    by_network: dict[tuple[str, str | None], list[float]] = {}
    if figures.aggregable(fp):
        rows, partial = _counted_costs(conn, fp, now, window), False
    else:
        rows, partial = _read_costs(conn, fp, now, window, figures.RAW_LIMIT if limit is None else limit)
    for day, p, net, priced, cost, n in rows:
        if priced:
            d = by_day.setdefault((day, p), [0, 0.0])
            d[0] += priced
            d[1] += cost
        w = by_network.setdefault((p, net), [0, 0.0, 0])
        w[0] += priced
        w[1] += cost
        w[2] += n
    return {
        "cost_by_day": [{"day": d, "provider": p, "priced": n, "cost": c} for (d, p), (n, c) in sorted(by_day.items())],
        "cost_by_network": sorted(({"provider": p, "network": net, "priced": priced, "cost": cost, "messages": n,
                                    "filter": replace(fp, providers=(p,), networks=(net or NONE,))}
                                   for (p, net), (priced, cost, n) in by_network.items() if priced), key=lambda r: -r["cost"]),
        "costs_partial": partial,
    }


CostRow = tuple[str, str, "str | None", int, float, int]  # (day sent, provider, network, priced, cost, messages)
# How many messages are priced, and their cost: a price of COST_LIMIT or more is not one (as agg_cost_hour counts).
_PRICED = (f"count(CASE WHEN {aggregates.PRICED_SQL} THEN 1 END), total(CASE WHEN {aggregates.PRICED_SQL} THEN cost END)")


def _read_costs(conn: sqlite3.Connection, fp: Filter, now: datetime, window: timedelta,
                limit: int) -> tuple[list[CostRow], bool]:
    """From the newest `limit` of the period's messages, in one pass
    (two took twice as long: 2.4 s for a week at 10M events); and whether it read `limit` (there may be more)."""
    hint, conds, params = _plan(conn, fp, now, window)
    rows = conn.execute(
        f"SELECT substr(coalesce(sent_at, first_event_at), 1, 10), provider, network, {_PRICED}, count(*) FROM ("
        f"SELECT sent_at, first_event_at, provider, network, cost FROM messages{hint}"
        f" WHERE {' AND '.join(conds) or '1'} ORDER BY last_event_at DESC LIMIT ?) GROUP BY 1, 2, 3",
        [*params, limit]).fetchall()
    return rows, sum(r[-1] for r in rows) >= limit


def _counted_costs(conn: sqlite3.Connection, fp: Filter, now: datetime, window: timedelta) -> list[CostRow]:
    """From the counts: the priced messages and their cost from agg_cost_hour (whole hours and
    days of the period, as stats.collect reads the others), the minutes at its edges from the
    messages; how many messages each (provider, network) has from stats.collect. A week at 10M
    events read 770k messages here before (1.9 s)."""
    lo, hi = figures._range(fp, now, window)
    days, hours, raw = figures.pieces(lo, hi)
    pre, pre_params = figures._prefilter(fp)
    out: list[CostRow] = []
    for span_lo, span_hi in (*days, *hours):  # day bounds compare with hour spans as they should ('2026-11-23' < '2026-11-23T00')
        where, params = figures._span_sql(span_lo, span_hi)
        for day, p, raw_status, code, net, country, priced, cost in conn.execute(
                "SELECT sent_day, provider, raw_status, error_code, network, country_code, sum(priced), sum(cost_micros)"
                f" FROM agg_cost_hour WHERE {where} AND {pre} GROUP BY 1, 2, 3, 4, 5, 6", [*params, *pre_params]):
            if priced and figures._keeps(fp, p, raw_status, code, net, country):
                out.append((day, p, net or None, priced, cost / aggregates.MICROS, 0))
    for day, p, raw_status, code, net, country, priced, cost in figures.edge_groups(
            conn, raw, pre, pre_params, f"substr(coalesce(sent_at, first_event_at), 1, 10), {aggregates.DIMS_SQL}, {_PRICED}"):
        if priced and figures._keeps(fp, p, raw_status, code, net, country):
            out.append((day, p, net or None, priced, cost, 0))
    messages: Counter = Counter()
    for (p, _, _, net, _), n in figures.collect(conn, fp, lo, hi).n.items():
        messages[(p, net or None)] += n
    return out + [("", p, net, 0, 0.0, n) for (p, net), n in messages.items()]


# ── where the counts come from ───────────────────────────────────────────────────
def _floor(t: datetime, step: timedelta) -> datetime:
    t = t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0) if step >= timedelta(days=1) else t


def _from_aggregates(conn: sqlite3.Connection, f: Filter, since: datetime, until: datetime | None,
                     step: timedelta, now: datetime) -> tuple[dict[str, figures.Tally], figures.Tally]:
    """A tally per bucket (hour or day) from the aggregates, and their sum. The last bucket is
    open-ended without until: (a message whose clock runs ahead counts in it, as in the list)."""
    base = replace(f, since=None, until=None)
    chars = 13 if step < timedelta(days=1) else 10
    buckets: dict[str, figures.Tally] = {}
    total = figures.Tally()
    at = _floor(since, step)
    while until is None or at < until:
        lo, hi = max(at, since), at + step
        last = hi > (until or now)
        t = figures.collect(conn, base, lo, min(hi, until) if until else (None if last else hi))
        buckets[fmt(at)[:chars]] = t
        total.n.update(t.n)
        total.events.update(t.events)
        total.latency.update(t.latency)
        if last:
            break
        at = hi
    return buckets, total


def _from_messages(conn: sqlite3.Connection, fp: Filter, step: timedelta, now: datetime, window: timedelta,
                   limit: int) -> tuple[dict[str, figures.Tally], figures.Tally]:
    """The same, read from the newest `limit` (all of them read: the total is then partial, there
    may be more) of the messages of the period (a filter the aggregates cannot answer): a week under
    a number prefix that matches a third of 10M events read 365k messages in 1.4 s before. The
    period's bound makes the plan the time index (or an ordered partial one), which SQLite walks
    backwards, newest first without sorting; or an index that selects few rows (fewer than SMALL,
    or one number's messages), which are read whole and sorted by a top-N sorter."""
    chars = 13 if step < timedelta(days=1) else 10
    hint, conds, params = _plan(conn, fp, now, window)
    buckets: dict[str, figures.Tally] = {}
    total = figures.Tally()
    for key, p, raw, code, net, country, b, n, events in conn.execute(
            f"SELECT substr(last_event_at, 1, {chars}), {aggregates.DIMS_SQL}, {figures.BUCKET_SQL}, count(*),"
            " sum(events_count) FROM (SELECT last_event_at, provider, raw_status, error_code, network, country_code,"
            f" deliver_seconds, events_count FROM messages{hint} WHERE {' AND '.join(conds) or '1'}"
            " ORDER BY last_event_at DESC LIMIT ?) GROUP BY 1, 2, 3, 4, 5, 6, 7",
            [*params, limit]):
        for t in (buckets.setdefault(key, figures.Tally()), total):
            t.add((p, raw, code, net, country), n, events)
            if b is not None:
                t.latency[b] += n
    total.partial = sum(total.n.values()) >= limit  # there may be more
    return buckets, total


# ── what the screen shows ────────────────────────────────────────────────────────
def _outcome(p: str, raw: str) -> str:
    return outcome_of(p, normalize(p, raw)).value


def _series(buckets: dict[str, figures.Tally], since: datetime, end: datetime, step: timedelta,
            now: datetime, read_from: str | None = None) -> list[dict[str, Any]]:
    """One point per bucket of the period; from `read_from` on when only the newest messages
    were read, that first bucket drawn as not whole (as the one still going on is)."""
    chars = 13 if step < timedelta(days=1) else 10
    out, at = [], _floor(since, step)
    while at <= end:
        key = fmt(at)[:chars]
        if read_from is not None and key < read_from:
            at += step
            continue
        t = buckets.get(key, figures.Tally())
        by = Counter()
        for (p, raw, *_), n in t.n.items():
            by[_outcome(p, raw)] += n
        out.append({"bucket": key, "delivered": by[DELIVERED], "failed": by[FAILED],
                    "median": figures.percentile(t.latency, 0.5), "partial": at + step > now or key == read_from,
                    "cut": key == read_from})
        at += step
    return out


def _latency(conn: sqlite3.Connection, fp: Filter, total: figures.Tally, now: datetime,
             window: timedelta) -> tuple[float | None, float | None]:
    """Median and p90: the times themselves where few enough (as `smsmon stats`), else the histogram's."""
    delivered = sum(total.latency.values())
    if 0 < delivered <= figures.EXACT_LATENCY and not total.partial:  # partial: the histogram of those read
        exact = figures.exact_latency(conn, fp, now, window)
        if exact is not None:
            return exact
    return figures.percentile(total.latency, 0.5), figures.percentile(total.latency, 0.9)


def _totals(total: figures.Tally, latency: tuple[float | None, float | None]) -> dict[str, Any]:
    outcomes: Counter = Counter()
    for (p, raw, *_), n in total.n.items():
        outcomes[_outcome(p, raw)] += n
    d, nd = outcomes[DELIVERED], outcomes[FAILED]
    return {"messages": sum(outcomes.values()), "outcomes": dict(outcomes), "median": latency[0], "p90": latency[1],
            "delivery_rate": d / (d + nd) if d + nd else None}


def _ranked(counts: Counter) -> list[tuple[Any, int]]:
    """Most first; equal counts in a fixed order (by name), the same on every read."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], [str(x) for x in kv[0]]))


def _rows(total: figures.Tally, fp: Filter) -> dict[str, list[dict[str, Any]]]:
    """Failures by status and by code; failure rates by network and by country."""
    status_rows: Counter = Counter()
    code_rows: Counter = Counter()
    rates: dict[str, dict[Any, Counter]] = {"network": {}, "country": {}}
    for (p, raw, code, net, country), n in total.n.items():
        status = normalize(p, raw).value
        outcome = outcome_of(p, normalize(p, raw)).value
        if outcome == FAILED:
            status_rows[(p, status)] += n
            code_rows[(p, code or None)] += n
        for dim, value in (("network", net or None), ("country", country or None)):
            rates[dim].setdefault(value, Counter())[outcome] += n

    def rate_rows(dim: str, field_name: str) -> list[dict[str, Any]]:
        out = []
        for value, c in rates[dim].items():
            done = c[DELIVERED] + c[FAILED]
            out.append({dim: value, "delivered": c[DELIVERED], "failed": c[FAILED], "finished": done,
                        "unknown": c[Outcome.UNKNOWN.value], "in_flight": c[Outcome.IN_FLIGHT.value],
                        "rate": c[FAILED] / done if done else None,
                        "filter": replace(fp, outcomes=ND, **{field_name: (value or NONE,)})})
        return sorted(out, key=lambda r: (-r["failed"], -(r["rate"] or 0), str(r[dim])))

    return {
        "by_status": [{"provider": p, "status": s, "failed": n, "filter": replace(fp, providers=(p,), statuses=(s,), outcomes=ND)}
                      for (p, s), n in _ranked(status_rows)],
        "by_code": [{"provider": p, "code": c, "failed": n,
                     "filter": replace(fp, providers=(p,), errors=(c if c is not None else NONE,), outcomes=ND)}
                    for (p, c), n in _ranked(code_rows)],
        "by_network": rate_rows("network", "networks"),
        "by_country": rate_rows("country", "countries"),
    }
