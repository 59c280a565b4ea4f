"""Tables, indexes and migrations (SPEC §6), with sqlite-utils.

The schema version is SQLite's `user_version`; `MIGRATIONS[i]` takes a database from version i
to i + 1. A database written by a newer smsmon is refused rather than damaged.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from smsmon.errors import NotSmsmonDatabase, SchemaTooNew, StoreError, StoreUnavailable

if TYPE_CHECKING:  # imported when migrating only: readers start faster without it
    import sqlite_utils

BUSY_TIMEOUT_S = 5.0
# Small pages: writes land on random pages of the unique indexes (uuids), and every dirty page
# goes whole to the WAL and again to the file at checkpoint. 2 KiB pages cut WAL bytes per event
# by a third and raised commits of 64 callbacks from 12.6k to 21.3k events/s (measured).
PAGE_SIZE = 2048
CACHE_KIB = 128 * 1024  # page cache per connection: keeps the hot indexes of a 1M-event database in memory
WAL_AUTOCHECKPOINT_PAGES = 10_000  # checkpoint per ~20 MB of WAL (2 KiB pages): pages rewritten often are copied once
MMAP_BYTES = 256 * 1024 * 1024

STORED_FLAGS = ("unmapped", "regression_ignored", "late_dlr", "late_event", "terminal_conflict", "clock_skew")


def flag_condition(flag: str, t: str = "") -> str:
    """The SQL term that selects messages with a flag; the partial flag indexes use it verbatim,
    so queries must too (SQLite matches partial-index terms literally)."""
    if flag not in STORED_FLAGS:
        raise ValueError(flag)
    return f"{t}flags LIKE '%{flag}%'"


MESSAGE_COLUMNS = {
    "id": str,  # provider:provider_message_id
    "seq": int,  # 1, 2, 3... in order of first arrival: what events point at (stable under VACUUM, unlike rowid)
    "provider": str,
    "provider_message_id": str,
    "src": str,
    "dest": str,
    "status": str,  # normalized
    "raw_status": str,
    "outcome": str,
    "is_final": int,
    "error_code": str,
    "network": str,
    "country_code": str,
    "segments": int,
    "units": float,
    "attempts": int,
    "cost": float,
    "reference": str,
    "first_event_at": str,
    "last_event_at": str,
    "final_at": str,
    "events_count": int,
    "duplicates_count": int,
    "flags": str,  # comma-separated, sorted
    "status_at": str,  # event time of the event that set the status
    "status_key": str,  # its event key (the merge rule's tie-break)
    "attr_at": str,  # JSON: attribute -> [event_time, event_key] of the value's source
    "last_event_id": int,  # events.id of the message's most recently stored event
    "updated_at": str,  # when that event was received
    "deliver_seconds": float,  # first event to DELIVERED, for latency percentiles
}

EVENT_COLUMNS = {
    "id": int,
    "event_key": str,
    "message_id": str,
    "message_seq": int,  # messages.seq: the timeline index is on it, so a new event appends near the end
    "provider": str,
    "source": str,  # callback | poll | status_api | import
    "event_type": str,
    "raw_status": str,
    "status": str,
    "error_code": str,
    "event_time": str,
    "received_at": str,
    "flags": str,
    "raw": str,
    "fingerprint": int,
}


def _v1(db: "sqlite_utils.Database") -> None:
    db["messages"].create(MESSAGE_COLUMNS, pk="id", not_null={"seq", "provider", "provider_message_id", "status"})
    db["messages"].create_index(["seq"], index_name="ux_messages_seq", unique=True)
    db["events"].create(
        EVENT_COLUMNS,
        pk="id",
        foreign_keys=[("message_id", "messages", "id")],
        not_null={"event_key", "message_id", "message_seq", "provider", "source", "status", "event_time", "received_at"},
    )
    # De-duplication (an event id, or a fingerprint, seen before for the message) and a message's
    # timeline. Both are keyed by the message's seq, not by random uuids, so the events of recent
    # messages land on the last pages of each index: a commit writes few pages.
    db["events"].create_index(["message_seq", "event_key"], index_name="ux_events_key", unique=True)
    db["events"].create_index(["message_seq", "fingerprint"], index_name="ix_events_message")
    # Pages are ordered by (last_event_at, rowid): `ix_messages_time` serves that order and
    # since/until ranges; the partial indexes (open, flags) keep the same order for their subsets.
    # Only those change when a message gets an event; the others change only when their own
    # value does, so writes stay cheap.
    ix = db["messages"].create_index
    ix(["status"], index_name="ix_messages_status")
    ix(["dest"], index_name="ix_messages_dest")
    ix(["error_code"], index_name="ix_messages_error")
    ix(["network"], index_name="ix_messages_network")
    ix(["reference"], index_name="ix_messages_reference")
    ix(["last_event_at"], index_name="ix_messages_time")
    db.execute("CREATE INDEX ix_messages_open ON messages(last_event_at) WHERE is_final = 0")
    db.execute("CREATE INDEX ix_messages_latency ON messages(deliver_seconds) WHERE deliver_seconds IS NOT NULL")
    for flag in STORED_FLAGS:
        db.execute(f"CREATE INDEX ix_messages_flag_{flag} ON messages(last_event_at) WHERE {flag_condition(flag)}")
    db["facet_counts"].create({"dim": str, "value": str, "n": int}, pk=("dim", "value"), not_null={"n"})
    db["dead_letters"].create(
        {"id": int, "received_at": str, "remote": str, "path": str, "reason": str, "body": str}, pk="id"
    )
    db["poll_runs"].create(
        {
            "id": int, "provider": str, "started_at": str, "finished_at": str, "ok": int, "http_status": int,
            "api_code": str, "rows_seen": int, "new_events": int, "error_code": str, "error": str,
        },
        pk="id",
    )
    db["poll_runs"].create_index(["provider", "id"], index_name="ix_poll_runs_provider")


MIGRATIONS: list[Callable[["sqlite_utils.Database"], None]] = [_v1]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: str | Path, *, readonly: bool = False, busy_timeout: float = BUSY_TIMEOUT_S,
            cache_kib: int = CACHE_KIB, mmap: bool = True) -> sqlite3.Connection:
    """Open a connection with smsmon's pragmas. Read-only connections never create the file.
    Raises StoreError with a one-line reason."""
    path = Path(path)
    try:
        if readonly:
            if not path.exists():
                raise StoreError(f"no database at {path} (make one with `smsmon import FILE` or `smsmon sim generate`, or pass --db)")
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only while the file is empty
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA cache_size=-{cache_kib}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute(f"PRAGMA mmap_size={MMAP_BYTES if mmap else 0}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise store_error(exc, path) from None
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror or exc}") from None
    return conn


# SQLite's primary result codes (https://sqlite.org/rescode.html) that smsmon tells apart.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


def store_error(exc: sqlite3.Error, path: str | Path) -> StoreError:
    """The one translation of SQLite's failures into smsmon's, by SQLite's own result code:
    what may pass (locked, disk full or failing, not writable just now) is StoreUnavailable, so
    the listener answers 503 and the provider retries; a file that is not a database (or is
    damaged) is NotSmsmonDatabase; anything else is a StoreError with SQLite's words."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (_BUSY, _LOCKED):
        return StoreUnavailable(f"database {path} is locked by another process")
    if primary in (_NOTADB, _CORRUPT):
        return NotSmsmonDatabase(f"{path} is not an smsmon database or is damaged (SQLite says: {exc})")
    if primary in (_FULL, _IOERR):
        return StoreUnavailable(f"database {path} unavailable: {exc}")
    if primary in (_READONLY, _CANTOPEN):
        return StoreUnavailable(f"cannot open {path} for writing: {exc}" if primary == _READONLY else f"cannot open {path}: {exc}")
    return StoreError(f"database {path}: {exc}")


def version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; return the version. Each step is one transaction."""
    current = version(conn)
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(f"this database has schema version {current}; this smsmon knows up to {SCHEMA_VERSION}: upgrade smsmon")
    if current == 0 and conn.execute("SELECT count(*) FROM sqlite_master WHERE name='messages'").fetchone()[0]:
        raise NotSmsmonDatabase("this SQLite file has a `messages` table but is not an smsmon database")
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    for step in range(current, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[step](db)
            conn.execute(f"PRAGMA user_version={step + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def open_readonly(path: str | Path, *, cache_kib: int = CACHE_KIB, mmap: bool = True) -> sqlite3.Connection:
    """A read connection to an existing smsmon database (for read-side commands and the UI)."""
    conn = connect(path, readonly=True, cache_kib=cache_kib, mmap=mmap)
    try:
        v = version(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(exc, path) from None
    if v == 0:
        conn.close()
        raise NotSmsmonDatabase(f"{path} is not an smsmon database (no smsmon schema in it)")
    if v > SCHEMA_VERSION:
        conn.close()
        raise SchemaTooNew(f"{path} has schema version {v}; this smsmon knows up to {SCHEMA_VERSION}: upgrade smsmon")
    conn.row_factory = sqlite3.Row
    return conn
