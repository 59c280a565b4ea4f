"""What the screens read, as plain data. Every function here blocks on SQLite, so the app calls
them from thread workers. They share one read-only connection, taken in turn (Textual starts a
new thread per worker: a connection per thread would pile up, each with its own page cache)."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from smsmon.cli_output import message_detail
from smsmon.errors import StoreError
from smsmon.filters import Filter
from smsmon.store import queries
from smsmon.store.schema import open_readonly
from smsmon.timeutil import fmt, parse_iso

PAGE = 200
SPARK_MINUTES = 30
CACHE_KIB = 32 * 1024  # the UI's page cache: enough for the hot indexes, not the whole file


@dataclass
class Snapshot:
    rows: list[dict[str, Any]]
    stats: queries.Stats
    new_events: list[dict[str, Any]]
    watermark: int
    per_minute: Counter  # "YYYY-MM-DDTHH:MM" -> events received that minute (only the new ones)
    polls: dict[str, dict[str, Any]] = field(default_factory=dict)  # provider -> latest poll_runs row
    dead_letters: int = 0
    total_messages: int = 0


def _locked(method):  # type: ignore[no-untyped-def]
    def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self.lock:
            return method(self, *args, **kwargs)
    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class Data:
    def __init__(self, db: Path) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None
        self.lock = threading.RLock()

    def conn(self) -> sqlite3.Connection:
        """The shared connection; hold `self.lock` while using it."""
        if self._conn is None:
            self._conn = open_readonly(self.db, cache_kib=CACHE_KIB, mmap=False)
        return self._conn

    def exists(self) -> bool:
        try:
            with self.lock:
                self.conn()
            return True
        except StoreError:
            return False

    @_locked
    def snapshot(self, f: Filter, watermark: int, *, now: datetime, window: timedelta) -> Snapshot:
        c = self.conn()
        top = queries.latest_event_id(c)
        new = queries.events_after(c, watermark, limit=200) if top > watermark else []
        if top - watermark > 200:  # a burst: the stream shows the newest 200
            new = queries.events_after(c, top - 200, limit=200)
        if watermark == 0:  # first look: only the last half hour counts for the sparkline
            per_minute = self._recent_minutes(c, now)
        else:
            per_minute = Counter(dict(c.execute(
                "SELECT substr(received_at, 1, 16), count(*) FROM events WHERE id > ? GROUP BY 1", (watermark,))))
        polls = {r["provider"]: dict(r) for r in c.execute(
            "SELECT * FROM poll_runs WHERE id IN (SELECT max(id) FROM poll_runs GROUP BY provider)")}
        dead = c.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        total = c.execute("SELECT coalesce(sum(n), 0) FROM facet_counts WHERE dim = 'provider'").fetchone()[0]
        return Snapshot(
            rows=queries.page(c, f, limit=PAGE, now=now, window=window),
            stats=queries.stats(c, f, now=now, window=window),
            new_events=new, watermark=top, per_minute=per_minute, polls=polls, dead_letters=dead, total_messages=total,
        )

    def _recent_minutes(self, c: sqlite3.Connection, now: datetime) -> Counter:
        """Events per minute over the last SPARK_MINUTES, by bisecting events.id on arrival time
        (ids grow with arrival) instead of scanning the table."""
        since = fmt(now - timedelta(minutes=SPARK_MINUTES))
        lo, hi = 1, queries.latest_event_id(c) + 1
        while lo < hi:
            mid = (lo + hi) // 2
            row = c.execute("SELECT received_at FROM events WHERE id >= ? ORDER BY id LIMIT 1", (mid,)).fetchone()
            if row is None or row[0] >= since:
                hi = mid
            else:
                lo = mid + 1
        return Counter(dict(c.execute(
            "SELECT substr(received_at, 1, 16), count(*) FROM events WHERE id >= ? GROUP BY 1", (lo,))))

    @_locked
    def more(self, f: Filter, after: queries.Cursor, *, now: datetime, window: timedelta) -> list[dict[str, Any]]:
        return queries.page(self.conn(), f, after=after, limit=PAGE, now=now, window=window)

    @_locked
    def rows_by_id(self, ids: list[str], *, now: datetime, window: timedelta) -> dict[str, dict[str, Any]]:
        c = self.conn()
        return {i: r for i in ids if (r := queries.message(c, i, now=now, window=window))}

    @_locked
    def detail(self, message_id: str, window: timedelta) -> dict[str, Any]:
        return message_detail(self.conn(), message_id, window)

    @_locked
    def insights(self, f: Filter, *, now: datetime, window: timedelta) -> dict[str, Any]:
        c = self.conn()
        stats = queries.stats(c, f, now=now, window=window)
        countries = queries.facets(c, "country_code", Filter(outcomes=("NOT_DELIVERED",), since=f.since, until=f.until,
                                                             providers=f.providers), limit=15, now=now, window=window)
        hours = _hourly(c, now)
        stale = queries.page(c, Filter(special=("stale",)), limit=50, now=now, window=window)
        return {"stats": stats, "countries": countries, "hours": hours, "stale": stale}

    @_locked
    def dead_letters(self) -> list[dict[str, Any]]:
        return queries.dead_letters(self.conn(), limit=500)

    @_locked
    def latest(self) -> int:
        return queries.latest_event_id(self.conn())


def _hourly(c: sqlite3.Connection, now: datetime, hours: int = 24) -> list[dict[str, Any]]:
    """Delivery rate and median time to deliver per hour of final status, the last `hours`."""
    since = fmt(now - timedelta(hours=hours))
    buckets: dict[str, dict[str, Any]] = {}
    for hour, outcome, secs in c.execute(
        "SELECT substr(final_at, 1, 13), outcome, deliver_seconds FROM messages INDEXED BY ix_messages_time"
        " WHERE last_event_at >= ? AND final_at >= ?", (since, since)):
        b = buckets.setdefault(hour, {"hour": hour, "delivered": 0, "failed": 0, "secs": []})
        if outcome == "DELIVERED":
            b["delivered"] += 1
            if secs is not None:
                b["secs"].append(secs)
        elif outcome == "NOT_DELIVERED":
            b["failed"] += 1
    out = []
    start = parse_iso(since).replace(minute=0, second=0, microsecond=0)
    for i in range(hours + 1):
        key = fmt(start + timedelta(hours=i))[:13]
        b = buckets.get(key, {"hour": key, "delivered": 0, "failed": 0, "secs": []})
        done = b["delivered"] + b["failed"]
        secs = sorted(b["secs"])
        out.append({"hour": key, "rate": b["delivered"] / done if done else None,
                    "median": secs[len(secs) // 2] if secs else None, "final": done})
    return out
