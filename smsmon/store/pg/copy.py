"""`smsmon migrate`: an SQLite database copied into PostgreSQL, resumably and idempotently.

Everything is read from one snapshot of the SQLite file (one read transaction: `serve` may go
on writing it meanwhile) and written in batches, each its own transaction, with COPY:

1. the payload dictionaries, then the messages (upserted by id: a second run brings them up to
   date), then the events past the newest one already copied (events never change: a run that
   was interrupted goes on where it stopped), then poll runs the same way;
2. last, in one transaction: what changes in place on the source (dead letters, the forward
   outbox, the demo mark in `meta`) and the maintained counts (facets, aggregates, events per
   minute, the event id filters) replaced by the source's, the commit clock set past the copied
   ids, and the copy recorded (`copied_from`) as finished.

So until step 2 commits, readers of the target see messages without their counts; after it,
the target holds exactly what the snapshot held. Running it again copies what the SQLite file
got since, and changes nothing else. A target that holds data of its own (another source, or
events written by a `serve` since the copy) is refused.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import psycopg

from smsmon.database import PostgresUrl
from smsmon.errors import StoreError
from smsmon.store.pg.connection import clean, connect, pg_error
from smsmon.store.pg.writer import CHANNEL_PREFIX
from smsmon.store.schema import EVENT_COLUMNS, STORED_MESSAGE_COLUMNS, open_readonly, store_error
from smsmon.timeutil import fmt, now_utc

BATCH = 20_000  # rows per transaction: a Ctrl+C loses at most this many rows' work (about a second of it)
DERIVED = ("facet_counts", "agg_hour", "agg_day", "agg_latency_hour", "agg_latency_day", "agg_cost_hour", "events_minute",
           "event_key_blocks")
Progress = Callable[[str, int, int], None]  # (what, done, of)


@dataclass
class CopyResult:
    messages: int
    events: int  # copied by this run
    events_total: int
    dead_letters: int
    poll_runs: int
    seconds: float
    resumed_from: int  # the newest event id already there when this run began (0: a fresh copy)


def _identity(lite: sqlite3.Connection) -> str:
    """What names the source: its first message and event (an SQLite file has no id of its own)."""
    first = lite.execute("SELECT m.id, e.event_key, e.received_at FROM events e JOIN messages m ON m.seq = e.message_seq"
                         " ORDER BY e.id LIMIT 1").fetchone()
    return "empty" if first is None else "\x1f".join(str(v) for v in first)


def _rows(lite: sqlite3.Connection, sql: str, params: tuple = ()) -> Iterator[list[tuple]]:
    cur = lite.execute(sql, params)
    while batch := cur.fetchmany(BATCH):
        yield batch


def _copy(pg: psycopg.Connection, table: str, columns: list[str], rows: list[tuple]) -> None:
    with pg.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[arg-type]
        for row in rows:
            copy.write_row([clean(v) for v in row])


def copy_sqlite(source: Path, target: PostgresUrl, *, progress: Progress | None = None) -> CopyResult:
    """Copy (or bring up to date) `target` from the SQLite database `source`. Raises StoreError."""
    from smsmon.store.backend import open_reader, open_writer

    started = time.perf_counter()
    say = progress or (lambda what, done, of: None)
    with open_reader(source):  # an older smsmon's file is upgraded first (or refused, saying why)
        pass
    open_writer(target).close()  # the target's schema, made or brought up to date
    lite = open_readonly(source)
    pg = connect(target, autocommit=True)
    try:
        lite.execute("BEGIN")  # one snapshot for everything read below
        return _copy_all(lite, pg, source, target, say, started)
    except sqlite3.Error as exc:
        raise store_error(exc, source) from None
    except psycopg.Error as exc:
        raise pg_error(exc, target) from None
    finally:
        lite.close()
        pg.close()


def _copy_all(lite: sqlite3.Connection, pg: psycopg.Connection, source: Path, target: PostgresUrl, say: Progress,
              started: float) -> CopyResult:
    identity = _identity(lite)
    copied = pg.execute("SELECT identity, events FROM copied_from").fetchone()
    have_events = pg.execute("SELECT last_event_id FROM commit_clock").fetchone()[0]  # type: ignore[index]
    if copied is None and have_events:
        raise StoreError(f"{target} already holds {have_events:,} events that did not come from {source}: copy into an empty"
                         " database (or a schema of its own: ?options=-csearch_path%3Dname)")
    if copied is not None and copied[0] != identity:
        raise StoreError(f"{target} holds a copy of another database than {source}: copy into an empty one")
    if copied is not None and have_events > copied[1]:
        raise StoreError(f"{target} has {have_events - copied[1]:,} events written since it was copied from {source}"
                         " (a serve on it): copying again would mix the two")
    resumed = pg.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]  # type: ignore[index]
    with pg.transaction():
        pg.execute("INSERT INTO copied_from (identity, source, events, started_at) VALUES ($1, $2, 0, $3)"
                   " ON CONFLICT (identity) DO UPDATE SET source = excluded.source", (identity, str(source), fmt(now_utc())))
        for dict_id, data in lite.execute("SELECT id, data FROM payload_dicts"):
            pg.execute("INSERT INTO payload_dicts (id, data) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                       (dict_id, data))

    total = lite.execute("SELECT count(*) FROM messages").fetchone()[0]
    cols = list(STORED_MESSAGE_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
    done = 0
    for batch in _rows(lite, f"SELECT {', '.join(cols)} FROM messages ORDER BY seq"):
        with pg.transaction():
            pg.execute("CREATE TEMP TABLE incoming (LIKE messages INCLUDING DEFAULTS) ON COMMIT DROP")
            _copy(pg, "incoming", cols, batch)
            pg.execute(f"INSERT INTO messages ({', '.join(cols)}) SELECT {', '.join(cols)} FROM incoming"  # type: ignore[arg-type]
                       f" ON CONFLICT (id) DO UPDATE SET {updates}")
        done += len(batch)
        say("messages", done, total)

    total_events = lite.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    events = list(EVENT_COLUMNS)
    copied_events = 0
    for batch in _rows(lite, f"SELECT {', '.join(events)} FROM events WHERE id > ? ORDER BY id", (resumed,)):
        with pg.transaction():
            _copy(pg, "events", events, batch)
        copied_events += len(batch)
        say("events", resumed + copied_events, total_events)

    runs = _append(lite, pg, "poll_runs", ["id", "provider", "started_at", "finished_at", "ok", "http_status", "api_code",
                                           "rows_seen", "new_events", "error_code", "error"])

    with pg.transaction():
        letters = _mirror(lite, pg)
        for table in DERIVED:
            pg.execute(f"DELETE FROM {table}")  # type: ignore[arg-type]
            columns = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
            for batch in _rows(lite, f"SELECT {', '.join(columns)} FROM {table}"):
                _copy(pg, table, columns, batch)
        last_seq = lite.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
        pg.execute("UPDATE commit_clock SET last_event_id = $1, last_seq = $2", (total_events, last_seq))
        pg.execute("UPDATE copied_from SET events = $1, finished_at = $2 WHERE identity = $3",
                   (total_events, fmt(now_utc()), identity))
        schema = pg.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        pg.execute("SELECT pg_notify($1, $2)", (CHANNEL_PREFIX + schema, str(total_events)))  # open apps read it all again
    say("counts", 1, 1)
    return CopyResult(total, copied_events, total_events, letters, runs, time.perf_counter() - started, resumed)


def _mirror(lite: sqlite3.Connection, pg: psycopg.Connection) -> int:
    """What changes in place or goes away on the source: dead letters (replayed, bounded), the
    forward outbox (relayed) and `meta` (the demo mark), copied as they are in the snapshot.
    The target's own dead letters, past the source's newest id, stay. Returns the dead letters."""
    letters = [r[1] for r in lite.execute("PRAGMA table_info(dead_letters)")]
    newest = lite.execute("SELECT coalesce(max(id), 0) FROM dead_letters").fetchone()[0]
    pg.execute("DELETE FROM dead_letters WHERE id <= $1", (newest,))
    n = 0
    for batch in _rows(lite, f"SELECT {', '.join(letters)} FROM dead_letters ORDER BY id"):
        _copy(pg, "dead_letters", letters, batch)
        n += len(batch)
    pg.execute("SELECT setval(pg_get_serial_sequence('dead_letters', 'id'), greatest(coalesce(max(id), 0), 1),"
               " max(id) IS NOT NULL) FROM dead_letters")
    for table in ("forward_outbox", "meta"):
        pg.execute(f"DELETE FROM {table}")  # type: ignore[arg-type]
        columns = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
        for batch in _rows(lite, f"SELECT {', '.join(columns)} FROM {table}"):
            _copy(pg, table, columns, batch)
    return n


def _append(lite: sqlite3.Connection, pg: psycopg.Connection, table: str, columns: list[str]) -> int:
    """Rows past the newest one the target has (ids are kept), then the id sequence set past them."""
    after = pg.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]  # type: ignore[arg-type, index]
    n = 0
    for batch in _rows(lite, f"SELECT {', '.join(columns)} FROM {table} WHERE id > ? ORDER BY id", (after,)):
        with pg.transaction():
            _copy(pg, table, columns, batch)
        n += len(batch)
    pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), greatest(coalesce(max(id), 0), 1),"  # type: ignore[arg-type]
               f" max(id) IS NOT NULL) FROM {table}")
    return n
