"""Figures over the messages: delivery rate, time to deliver, outcomes, stale messages,
failures by status, code and network (`stats`), and counts per value of one column (`facets`).
Unfiltered, they come from the counts the writer maintains; filtered, from the rows the
filter's plan selects."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from smsmon.filters import Filter
from smsmon.lifecycle import WATCH_WINDOW, Outcome
from smsmon.store.queries import TOP, _plan, latest_event_id
from smsmon.timeutil import fmt, now_utc

FACET_DIMS = ("status", "outcome", "provider", "error_code", "network", "country_code")


def facets(conn: sqlite3.Connection, dim: str, f: Filter | None = None, *, limit: int = TOP,
           now: datetime | None = None, window: timedelta = WATCH_WINDOW) -> list[tuple[str | None, int]]:
    """Message counts per value of `dim` (status, outcome, provider, error_code, network,
    country_code), largest first. Unfiltered counts are maintained by the writer."""
    if dim not in FACET_DIMS:
        raise ValueError(f"unknown facet {dim!r}")
    if f is None or f.empty:
        rows = conn.execute(
            "SELECT value, n FROM facet_counts WHERE dim = ? AND n > 0 ORDER BY n DESC, value LIMIT ?", (dim, limit)
        ).fetchall()
        return [(v or None, n) for v, n in rows]
    hint, conds, params = _plan(conn, f, now or now_utc(), window)
    rows = conn.execute(
        f"SELECT {dim}, count(*) AS n FROM messages{hint} WHERE {' AND '.join(conds)} GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


@dataclass
class Stats:
    messages: int
    events: int
    outcomes: dict[str, int]
    delivery_rate: float | None  # delivered / (delivered + not delivered)
    median_seconds: float | None  # first event to DELIVERED
    p90_seconds: float | None
    stale: int
    failures_by_code: list[tuple[str, str | None, int]]  # provider, error code, count
    failures_by_network: list[tuple[str | None, int]]
    failures_by_status: list[tuple[str, str, int]]  # provider, raw status, count

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "events": self.events, "outcomes": self.outcomes,
            "delivery_rate": self.delivery_rate, "median_seconds_to_deliver": self.median_seconds,
            "p90_seconds_to_deliver": self.p90_seconds, "stale": self.stale,
            "failures_by_code": [{"provider": p, "error_code": c, "count": n} for p, c, n in self.failures_by_code],
            "failures_by_network": [{"network": net, "count": n} for net, n in self.failures_by_network],
            "failures_by_status": [{"provider": p, "raw_status": r, "count": n} for p, r, n in self.failures_by_status],
        }


def stats(conn: sqlite3.Connection, f: Filter | None = None, *, now: datetime | None = None,
          window: timedelta = WATCH_WINDOW) -> Stats:
    """Delivery rate, time to deliver, outcomes, stale count and failures, for everything or a filter."""
    now = now or now_utc()
    cutoff = fmt(now - window)
    if f is None or f.empty:
        outcomes = dict(conn.execute("SELECT value, n FROM facet_counts WHERE dim = 'outcome' AND n > 0").fetchall())
        delivered = outcomes.get(Outcome.DELIVERED, 0)
        timed = conn.execute("SELECT coalesce(sum(n), 0) FROM facet_counts WHERE dim = 'timed'").fetchone()[0]
        median = _percentile_indexed(conn, timed, 0.5)
        p90 = _percentile_indexed(conn, timed, 0.9)
        stale = conn.execute("SELECT count(*) FROM messages INDEXED BY ix_messages_open WHERE is_final = 0 AND last_event_at < ?",
                             (cutoff,)).fetchone()[0]
        events = latest_event_id(conn)
        top = f"SELECT value, n FROM facet_counts WHERE dim = ? AND n > 0 ORDER BY n DESC, value LIMIT {TOP}"
        by_code = [(*v.split(":", 1), n) for v, n in conn.execute(top, ("fail_code",))]
        by_code = [(p, c or None, n) for p, c, n in by_code]
        by_network = [(v or None, n) for v, n in conn.execute(top, ("fail_network",))]
        by_status = [(*v.split(":", 1), n) for v, n in conn.execute(top, ("fail_status",))]
    else:
        hint, conds, params = _plan(conn, f, now, window)
        where = " AND ".join(conds)
        rows = conn.execute(
            f"SELECT outcome, count(*), sum(events_count), sum(is_final = 0 AND last_event_at < ?) FROM messages{hint}"
            f" WHERE {where} GROUP BY 1", [cutoff, *params]).fetchall()
        outcomes = {r[0]: r[1] for r in rows}
        events = sum(r[2] for r in rows)
        stale = sum(r[3] for r in rows)
        delivered = outcomes.get(Outcome.DELIVERED, 0)
        secs = [r[0] for r in conn.execute(
            f"SELECT deliver_seconds FROM messages{hint} WHERE {where} AND deliver_seconds IS NOT NULL", params)]
        secs.sort()
        median = _percentile(secs, 0.5)
        p90 = _percentile(secs, 0.9)
        failed_where = f"{where} AND outcome = 'NOT_DELIVERED'"
        by_code = conn.execute(f"SELECT provider, error_code, count(*) AS n FROM messages{hint} WHERE {failed_where}"
                               f" GROUP BY 1, 2 ORDER BY n DESC LIMIT {TOP}", params).fetchall()
        by_network = conn.execute(f"SELECT network, count(*) AS n FROM messages{hint} WHERE {failed_where}"
                                  f" GROUP BY 1 ORDER BY n DESC LIMIT {TOP}", params).fetchall()
        by_status = conn.execute(f"SELECT provider, raw_status, count(*) AS n FROM messages{hint} WHERE {failed_where}"
                                 f" GROUP BY 1, 2 ORDER BY n DESC LIMIT {TOP}", params).fetchall()
    total = sum(outcomes.values())
    failed = outcomes.get(Outcome.NOT_DELIVERED, 0)
    return Stats(
        messages=total,
        events=events,
        outcomes={o.value: outcomes.get(o.value, 0) for o in Outcome},
        delivery_rate=delivered / (delivered + failed) if delivered + failed else None,
        median_seconds=median,
        p90_seconds=p90,
        stale=stale,
        failures_by_code=[(r[0], r[1], r[2]) for r in by_code],
        failures_by_network=[(r[0] or None, r[1]) for r in by_network],
        failures_by_status=[(r[0], r[1], r[2]) for r in by_status],
    )


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _percentile_indexed(conn: sqlite3.Connection, count: int, q: float) -> float | None:
    if not count:
        return None
    row = conn.execute(
        "SELECT deliver_seconds FROM messages INDEXED BY ix_messages_latency WHERE deliver_seconds IS NOT NULL"
        " ORDER BY deliver_seconds LIMIT 1 OFFSET ?", (min(count - 1, int(q * count)),)).fetchone()
    return row[0] if row else None
