"""Schema version 5 (issue 13): running it for real.

- `meta`: facts about the database itself; the row `demo` marks a database that holds only
  simulated traffic (`smsmon demo`, `smsmon sim generate`), so that they never write into one
  that holds real data;
- `forward_outbox`: one row per accepted callback still to be relayed to `--forward-to`,
  written in the same transaction as its event (smsmon.store.outbox);
- `dead_letters.headers`: the request's headers, secrets masked (JSON); `body_bytes`: the body
  exactly as received when it is not UTF-8 (`body` keeps a readable copy); `replayed_at`: when
  `smsmon dead-letters replay` last tried it.
"""

from __future__ import annotations

import sqlite3

STATEMENTS = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # event_id is the row's key: one row per event, found by it at no cost when prune deletes
    # events (ON DELETE CASCADE). message_id and created_at are what `smsmon prune` reads.
    "CREATE TABLE forward_outbox ("
    " event_id INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,"
    " message_id TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " content_type TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_at TEXT NOT NULL,"
    " last_at TEXT,"
    " last_status INTEGER,"
    " last_error TEXT)",
    "CREATE INDEX ix_forward_outbox_due ON forward_outbox(next_at)",
    "CREATE INDEX ix_forward_outbox_message ON forward_outbox(message_id)",
    "ALTER TABLE dead_letters ADD COLUMN headers TEXT",
    "ALTER TABLE dead_letters ADD COLUMN body_bytes BLOB",
    "ALTER TABLE dead_letters ADD COLUMN replayed_at TEXT",
)


def upgrade(conn: sqlite3.Connection) -> None:
    for statement in STATEMENTS:
        conn.execute(statement)
