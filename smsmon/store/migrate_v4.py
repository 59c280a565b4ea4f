"""Schema version 4 (issue 11): half the bytes per event, and the aggregates every figure is read from.

- payloads compressed with a dictionary, which the database keeps (payloads.py);
- the merge rule's attribute stamps stored compactly;
- events without the columns their message has (message_id, provider: join on message_seq), and
  one index on message_seq for the timeline and for duplicates (the writer reads a message's few
  events instead of probing two indexes of 69 bytes an event);
- messages without what can be computed (provider_message_id and final_at are GENERATED
  VIRTUAL columns) or was never read (updated_at), and without the index of times to deliver
  (percentiles come from the aggregates);
- the aggregates, the histogram of times to deliver among the maintained counts, events per minute.
"""

from __future__ import annotations

import logging
import sqlite3

from smsmon.store import aggregates
from smsmon.store.schema import EVENT_COLUMNS, MESSAGE_COLUMNS, SQL_TYPES, STORED_FLAGS, STORED_MESSAGE_COLUMNS, flag_condition
from smsmon.store.payloads import DICT_ID, Codec, shipped_dictionary
from smsmon.store.queries import first_event_received_since
from smsmon.timeutil import fmt, parse_iso

log = logging.getLogger("smsmon.store")
BATCH = 20_000


def upgrade(conn: sqlite3.Connection) -> None:
    from smsmon.store.stamps import decode_attr_at, encode_attr_at
    from smsmon.store.writer import EVENTS_MINUTE_KEEP

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
    updates = [(encode_attr_at(decode_attr_at(text), [at, key]), mid)
               for mid, text, at, key in conn.execute("SELECT id, attr_at, status_at, status_key FROM messages WHERE attr_at LIKE '{%'")]
    conn.executemany("UPDATE messages SET attr_at = ? WHERE id = ?", updates)
    _rebuild_messages(conn)
    _rebuild_events(conn)
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


MESSAGE_INDEXES = [
    "CREATE UNIQUE INDEX ux_messages_seq ON messages(seq)",
    *(f"CREATE INDEX ix_messages_{name} ON messages({column})" for name, column in (
        ("status", "status"), ("dest", "dest"), ("error", "error_code"), ("network", "network"),
        ("reference", "reference"), ("time", "last_event_at"))),
    "CREATE INDEX ix_messages_open ON messages(last_event_at) WHERE is_final = 0",
    *(f"CREATE INDEX ix_messages_flag_{flag} ON messages(last_event_at) WHERE {flag_condition(flag)}" for flag in STORED_FLAGS),
]


def _rebuild_messages(conn: sqlite3.Connection) -> None:
    # By bytes (BLOB), not characters: SQLite's text functions stop at a NUL, and an id may hold one.
    generated = {"provider_message_id": "TEXT GENERATED ALWAYS AS"
                                        " (CAST(substr(CAST(id AS BLOB), length(CAST(provider AS BLOB)) + 2) AS TEXT)) VIRTUAL",
                 "final_at": "TEXT GENERATED ALWAYS AS (CASE WHEN is_final THEN status_at END) VIRTUAL"}
    not_null = {"seq", "provider", "status"}
    columns = ", ".join(
        f"{c} {generated[c]}" if c in generated else
        f"{c} {SQL_TYPES[t]}{' PRIMARY KEY' if c == 'id' else ''}{' NOT NULL' if c in not_null else ''}"
        for c, t in MESSAGE_COLUMNS.items())
    conn.execute(f"CREATE TABLE messages_v4 ({columns})")
    stored = ", ".join(STORED_MESSAGE_COLUMNS)
    conn.execute(f"INSERT INTO messages_v4 ({stored}) SELECT {stored} FROM messages")
    conn.execute("DROP TABLE messages")
    conn.execute("ALTER TABLE messages_v4 RENAME TO messages")
    for statement in MESSAGE_INDEXES:
        conn.execute(statement)


def _rebuild_events(conn: sqlite3.Connection) -> None:
    not_null = {"event_key", "message_seq", "source", "status", "event_time", "received_at"}
    columns = ", ".join(
        f"{c} {'BLOB' if c == 'raw' else SQL_TYPES[t]}{' PRIMARY KEY' if c == 'id' else ''}{' NOT NULL' if c in not_null else ''}"
        for c, t in EVENT_COLUMNS.items())
    conn.execute(f"CREATE TABLE events_v4 ({columns}, FOREIGN KEY (message_seq) REFERENCES messages(seq))")
    names = ", ".join(EVENT_COLUMNS)
    conn.execute(f"INSERT INTO events_v4 ({names}) SELECT {names} FROM events ORDER BY id")
    conn.execute("DROP TABLE events")
    conn.execute("ALTER TABLE events_v4 RENAME TO events")
    conn.execute("CREATE INDEX ix_events_seq ON events(message_seq)")
