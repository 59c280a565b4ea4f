"""The figures alerts and metrics are judged on (issue 14), read cheaply whatever the size of the
database: a few hundred rows of the maintained aggregates, and only the minutes at the window's
start from the messages themselves (grouped by SQLite, not read into Python).

- finished and delivered messages, failures by error code and by network, for the messages whose
  latest activity is in the window: whole hours from `agg_hour`, the minutes before the first
  whole hour from `messages` through its time index;
- stale messages: the partial index of open messages, up to the watch window's cut-off;
- the newest callback: looked for among the events received in the silence window only (found
  by bisecting event ids on arrival time, then read newest first);
- each poller's failures in a row: its newest `poll_runs` rows, through their index;
- dead letters: a count of a table bounded to 10,000 rows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from smsmon.alerts import Figures
from smsmon.lifecycle import PROVIDERS, WATCH_WINDOW, Outcome, normalize, outcome_of
from smsmon.store.origin import SIMULATED
from smsmon.store.queries import first_event_received_since
from smsmon.store.schema import open_readonly, store_error
from smsmon.store.stats import _span_sql, pieces
from smsmon.timeutil import fmt, parse_iso

STREAK_LIMIT = 1000  # poll runs read per provider at most, to count failures in a row


def _final(provider: str, raw: str) -> Outcome | None:
    outcome = outcome_of(provider, normalize(provider, raw))
    return outcome if outcome in (Outcome.DELIVERED, Outcome.NOT_DELIVERED) else None


def read(conn: sqlite3.Connection, *, now: datetime, window: timedelta, watch_window: timedelta = WATCH_WINDOW,
         silence: timedelta | None = None, quiet_since: datetime | None = None, streak: int = 0) -> Figures:
    """Figures at `now`. `silence`: how far back to look for a callback (None: not looked for);
    `streak`: how many poll runs per provider to read for failures in a row (0: none)."""
    f = Figures(at=now, window=window, quiet_since=quiet_since)
    tally: Counter = Counter()  # (provider, raw_status, error_code, network) -> messages
    days, hours, raw = pieces(now - window, None)
    for table, spans in (("agg_day", days), ("agg_hour", hours)):
        for lo, hi in spans:
            where, params = _span_sql(lo, hi)
            for p, r, code, net, n in conn.execute(
                    f"SELECT provider, raw_status, error_code, network, sum(n) FROM {table} WHERE {where}"
                    " GROUP BY 1, 2, 3, 4", params):
                tally[(p, r, code, net)] += n
    for lo, hi in raw:
        for p, r, code, net, n in conn.execute(
                "SELECT provider, coalesce(raw_status, ''), coalesce(error_code, ''), coalesce(network, ''), count(*)"
                " FROM messages INDEXED BY ix_messages_time WHERE last_event_at >= ? AND last_event_at < ? GROUP BY 1, 2, 3, 4",
                (lo, hi)):
            tally[(p, r, code, net)] += n
    by_code: Counter = Counter()
    by_network: Counter = Counter()
    for (p, r, code, net), n in tally.items():
        outcome = _final(p, r)
        if outcome is None or not n:
            continue
        f.finished += n
        if outcome is Outcome.DELIVERED:
            f.delivered += n
        else:
            by_code[f"{p}:{code}"] += n
            by_network[net] += n
    f.failures_by_code, f.failures_by_network = dict(by_code), dict(by_network)
    f.stale = conn.execute("SELECT count(*) FROM messages INDEXED BY ix_messages_open WHERE is_final = 0 AND last_event_at < ?",
                           (fmt(now - watch_window),)).fetchone()[0]
    if silence is not None:
        first = first_event_received_since(conn, fmt(now - silence))
        # a simulated callback (a demo's, `sim generate`'s: store.origin) came through the listener too
        row = conn.execute("SELECT received_at FROM events WHERE id >= ? AND source IN ('callback', ?) ORDER BY id DESC LIMIT 1",
                           (first, SIMULATED + "callback")).fetchone()
        f.last_callback = row[0] if row else None
        f.heard_at = parse_iso(row[0]) if row else None
        f.looked_back = None if row else silence
    if streak:
        for provider in PROVIDERS:
            runs = conn.execute("SELECT ok, error_code FROM poll_runs INDEXED BY ix_poll_runs_provider WHERE provider = ?"
                                " ORDER BY id DESC LIMIT ?", (provider, min(streak, STREAK_LIMIT))).fetchall()
            if not runs:
                continue
            failed = next((i for i, (ok, _) in enumerate(runs) if ok), len(runs))
            f.poll_streaks[provider] = failed
            if failed:
                f.poll_errors[provider] = runs[0][1] or "poll failed"
    f.dead_letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return f


class Source:
    """The figures of one database on a read-only connection of their own, opened on first use
    and used by one thread at a time (the alert evaluator's)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def read(self, **kwargs: Any) -> Figures:
        """`read()` on this database. Raises StoreError."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = open_readonly(self.path)
                return read(self._conn, **kwargs)
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
