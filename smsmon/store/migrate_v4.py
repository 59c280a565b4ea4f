"""Schema version 4 (issue 11): payloads compressed with a dictionary, which the database keeps;
the merge rule's attribute stamps stored compactly; the aggregates every figure is read from;
the histogram of times to deliver among the maintained counts."""

from __future__ import annotations

import logging
import sqlite3

from smsmon.store import aggregates
from smsmon.store.payloads import DICT_ID, Codec, shipped_dictionary
from smsmon.store.queries import first_event_received_since
from smsmon.timeutil import fmt, parse_iso

log = logging.getLogger("smsmon.store")
BATCH = 20_000


def upgrade(conn: sqlite3.Connection) -> None:
    from smsmon.store.writer import EVENTS_MINUTE_KEEP, decode_attr_at, encode_attr_at

    conn.execute("CREATE TABLE payload_dicts (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    conn.execute("INSERT INTO payload_dicts (id, data) VALUES (?, ?)", (DICT_ID, shipped_dictionary()))
    codec = Codec.of(conn)
    last = 0
    while True:  # in batches by id: a payload table of millions is never held in memory
        rows = conn.execute("SELECT id, raw FROM events WHERE id > ? AND typeof(raw) = 'text' ORDER BY id LIMIT ?",
                            (last, BATCH)).fetchall()
        if not rows:
            break
        conn.executemany("UPDATE events SET raw = ? WHERE id = ?", [(codec.pack(raw), i) for i, raw in rows])
        last = rows[-1][0]
    updates = [(encode_attr_at(decode_attr_at(text)), mid)
               for mid, text in conn.execute("SELECT id, attr_at FROM messages WHERE attr_at LIKE '{%'")]
    conn.executemany("UPDATE messages SET attr_at = ? WHERE id = ?", updates)
    for statement in aggregates.SCHEMA:
        conn.execute(statement)
    aggregates.rebuild(conn)
    conn.execute("DELETE FROM facet_counts WHERE dim = 'timed'")
    buckets: dict[str, int] = {}
    for (seconds,) in conn.execute("SELECT deliver_seconds FROM messages WHERE deliver_seconds IS NOT NULL"):
        b = str(aggregates.bucket(seconds))
        buckets[b] = buckets.get(b, 0) + 1
    conn.executemany("INSERT INTO facet_counts (dim, value, n) VALUES ('latency', ?, ?)", buckets.items())
    conn.execute("CREATE TABLE events_minute (minute TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
    last = conn.execute("SELECT received_at FROM events ORDER BY id DESC LIMIT 1").fetchone()
    if last:  # the last two days of arrivals (ids grow with arrival: found by bisection, not a scan)
        first = first_event_received_since(conn, fmt(parse_iso(last[0]) - EVENTS_MINUTE_KEEP))
        conn.execute("INSERT INTO events_minute SELECT substr(received_at, 1, 16), count(*) FROM events WHERE id >= ?"
                     " GROUP BY 1", (first,))
