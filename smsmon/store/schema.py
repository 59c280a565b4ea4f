"""Tables, indexes and migrations (SPEC §6), with sqlite-utils.

The schema version is SQLite's `user_version`; `MIGRATIONS[i]` takes a database from version i
to i + 1. A database written by a newer smsmon is refused rather than damaged.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import quote

from smsmon.errors import NotSmsmonDatabase, SchemaTooNew, SchemaTooOld, StoreError, StoreUnavailable

if TYPE_CHECKING:  # imported when migrating only: readers start faster without it
    import sqlite_utils

log = logging.getLogger("smsmon.store")

BUSY_TIMEOUT_S = 5.0
# Small pages: writes land on random pages of the unique indexes (uuids), and every dirty page
# goes whole to the WAL and again to the file at checkpoint. 2 KiB pages cut WAL bytes per event
# by a third and raised commits of 64 callbacks from 12.6k to 21.3k events/s (measured).
PAGE_SIZE = 2048
CACHE_KIB = 128 * 1024  # page cache per connection: keeps the hot indexes of a 1M-event database in memory
WAL_AUTOCHECKPOINT_PAGES = 10_000  # checkpoint per ~20 MB of WAL (2 KiB pages): pages rewritten often are copied once
MMAP_BYTES = 256 * 1024 * 1024

STORED_FLAGS = ("unmapped", "regression_ignored", "late_dlr", "late_event", "terminal_conflict", "clock_skew")


def _as_is(value: object) -> object:
    return value


# Python's sqlite3 looks for an adapter for every parameter that is not an int, float, str or
# bytearray, and for None and bytes it fails two attribute lookups before binding them as they
# are: 0.25 µs a NULL and 0.4 µs a BLOB (measured), where an int takes 0.05. A sixth of what the
# writer binds is NULL, and every event has a BLOB (its payload): registered, the lookup finds
# this at once, which binds them as sqlite3 would have, for 3-4 % of the writer's CPU.
sqlite3.register_adapter(type(None), _as_is)
sqlite3.register_adapter(bytes, _as_is)


def flag_condition(flag: str, t: str = "") -> str:
    """The SQL term that selects messages with a flag; the partial flag indexes use it verbatim,
    so queries must too (SQLite matches partial-index terms literally)."""
    if flag not in STORED_FLAGS:
        raise ValueError(flag)
    return f"{t}flags LIKE '%{flag}%'"


# The columns as version 1 created them; later versions add theirs at the end (ALTER TABLE).
_V1_MESSAGE_COLUMNS = {
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
    "deliver_seconds": float,  # first known send time to DELIVERED (NULL when unknown), for latency percentiles
}

_V1_EVENT_COLUMNS = {
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
# The columns now (v4 rebuilt both tables leaner: see migrate_v4.py). Of a message, two are computed
# by SQLite and take no space (GENERATED ... VIRTUAL): provider_message_id and final_at.
MESSAGE_COLUMNS = {k: v for k, v in _V1_MESSAGE_COLUMNS.items() if k != "updated_at"} | {"sent_at": str}
GENERATED_MESSAGE_COLUMNS = ("provider_message_id", "final_at")
STORED_MESSAGE_COLUMNS = tuple(c for c in MESSAGE_COLUMNS if c not in GENERATED_MESSAGE_COLUMNS)
EVENT_COLUMNS = {k: v for k, v in _V1_EVENT_COLUMNS.items() if k not in ("message_id", "provider")} | {"sent_at": str}
SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL"}


def _v1(db: "sqlite_utils.Database") -> None:
    db["messages"].create(_V1_MESSAGE_COLUMNS, pk="id", not_null={"seq", "provider", "provider_message_id", "status"})
    db["messages"].create_index(["seq"], index_name="ux_messages_seq", unique=True)
    db["events"].create(
        _V1_EVENT_COLUMNS,
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


def _v2(db: "sqlite_utils.Database") -> None:
    """Dead letters keep their size, so that they can be bounded by bytes as well as rows."""
    db.execute("ALTER TABLE dead_letters ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
    db.execute("UPDATE dead_letters SET size = length(CAST(body AS BLOB))")
    db.execute("CREATE INDEX ix_dead_letters_size ON dead_letters(size)")


def _v3(db: "sqlite_utils.Database") -> None:
    """Send times (SPEC §11): each event's and each message's; time to deliver from the first
    send time (NULL when none is known, no longer from the first event); a message's latest
    activity counts events from the future at their arrival time; phone numbers in E.164."""
    from smsmon.store.migrate_v3 import upgrade

    upgrade(db.conn)


def _v4(db: "sqlite_utils.Database") -> None:
    """Compressed payloads, compact attribute stamps, the aggregates (issue 11)."""
    from smsmon.store.migrate_v4 import upgrade

    upgrade(db.conn)


def _v5(db: "sqlite_utils.Database") -> None:
    """The demo marker, the forward outbox, dead letters' headers (issue 13)."""
    from smsmon.store.migrate_v5 import upgrade

    upgrade(db.conn)


def _v6(db: "sqlite_utils.Database") -> None:
    """What the priced messages cost, per hour of latest activity and day sent (`agg_cost_hour`),
    kept by the writer: the insights screen's costs from the counts (issue 11)."""
    from smsmon.store import aggregates

    db.execute(aggregates.COST_SCHEMA)
    aggregates.rebuild_costs(db.conn)


MIGRATIONS: list[Callable[["sqlite_utils.Database"], None]] = [_v1, _v2, _v3, _v4, _v5, _v6]
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
            conn = _connect_readonly(path, busy_timeout)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # these two take effect only while the file is empty:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # prune can then give space back a little at a time
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


def _connect_readonly(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Read-only. On a read-only file system SQLite cannot create the WAL's shared-memory file,
    and mode=ro fails ("unable to open database file"): then the file is read as immutable
    (no locks, no WAL), which is right for a copy that nothing writes any more."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.Error as exc:
        conn.close()
        if not _read_only_place(path) or (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in (_CANTOPEN, _READONLY):
            raise
    if Path(f"{path}-wal").exists() and Path(f"{path}-wal").stat().st_size > 0:
        raise StoreError(f"{path} is on a read-only file system and its write-ahead log ({path}-wal) holds changes "
                         "that cannot be read there: copy the database and its -wal file to a writable place")
    return sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=busy_timeout, check_same_thread=False)


def _read_only_place(path: Path) -> bool:
    """The file or its folder cannot be written (a read-only mount, or permissions)."""
    return not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK))


def check_writable(path: str | Path) -> None:
    """Refuse, with one clear line, a database a writer could open but never commit to."""
    path = Path(path)
    if path.exists():
        ok, where = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK), path.parent
    else:
        where = path.parent
        while not where.exists() and where != where.parent:
            where = where.parent
        ok = os.access(where, os.W_OK | os.X_OK)
    if not ok:
        why = "it is on a read-only file system" if _on_read_only_fs(where) else "no permission to write it"
        raise StoreError(f"cannot write {path}: {why} (smsmon writes the file and a -wal file beside it; "
                         "to look at it, use `smsmon browse`, `show`, `stats` or `export`, which only read)")


def _on_read_only_fs(where: Path) -> bool:
    try:
        return bool(os.statvfs(where).f_flag & os.ST_RDONLY)
    except OSError:
        return False


CHECK_BUDGET_S = 3.0  # a full check of a 1M-event database takes 1.6-3.2 s here (measured): bigger ones are checked in part


def check_integrity(path: str | Path, budget_s: float = CHECK_BUDGET_S) -> bool:
    """Look for damage before a writer starts: the header, the schema and as much of SQLite's
    quick_check as `budget_s` allows. Returns True when the whole file was checked, False when
    the budget ran out first (no damage found in what was read). Raises NotSmsmonDatabase
    naming the file and what to do."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return True  # a new database: nothing to check
    conn = connect(path, readonly=True)
    deadline = time.monotonic() + budget_s
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        version(conn)
        problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            return False
        raise store_error(exc, path) from None
    except sqlite3.Error as exc:
        raise store_error(exc, path) from None
    finally:
        conn.close()
    if problems != ["ok"]:
        first = " ".join(problems[0].replace("***", " ").split())[:120]
        more = f" and {len(problems) - 1} more problems" if len(problems) > 1 else ""
        raise NotSmsmonDatabase(f"{path} is damaged (SQLite's check: {first}{more}): {RECOVER.format(path=path)}")
    return True


RECOVER = 'recover what can be read with `sqlite3 {path} ".recover" | sqlite3 recovered.db` and use recovered.db'


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
    if primary == _NOTADB:
        return NotSmsmonDatabase(f"{path} is not an smsmon database: not an SQLite database at all (SQLite says: {exc})")
    if primary == _CORRUPT:
        return NotSmsmonDatabase(f"{path} is damaged (SQLite says: {exc}): {RECOVER.format(path=path)}")
    if primary in (_FULL, _IOERR):
        return StoreUnavailable(f"database {path} unavailable: {exc}")
    if primary in (_READONLY, _CANTOPEN):
        return StoreUnavailable(f"cannot open {path} for writing: {exc}" if primary == _READONLY else f"cannot open {path}: {exc}")
    return StoreError(f"database {path}: {exc}")


def version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, path: str | Path = "this database") -> int:
    """Bring the schema up to date; return the version. Each step is one transaction, with
    foreign keys checked after it rather than during (a step may rebuild a table)."""
    current = version(conn)
    if current < 0:
        raise NotSmsmonDatabase(f"{path} has schema version {current}, which no smsmon writes: it is not an smsmon database")
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(f"{path} has schema version {current}; this smsmon knows up to {SCHEMA_VERSION}: upgrade smsmon")
    if current == 0 and (other := [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 3")]):
        raise NotSmsmonDatabase(f"{path} holds other tables ({', '.join(other)}) and no smsmon schema: "
                                "it is not an smsmon database (give --db a new file or an smsmon one)")
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    if 0 < current < SCHEMA_VERSION:
        log.warning("upgrading %s from schema version %d to %d (once%s) ...", path, current, SCHEMA_VERSION,
                    "; about two minutes per million events" if current < 4 else "")  # only v4 rewrites every row
    conn.execute("PRAGMA foreign_keys=OFF")  # only outside a transaction does this take effect
    try:
        for step in range(current, SCHEMA_VERSION):
            conn.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[step](db)
                if conn.execute("PRAGMA foreign_key_check").fetchone():
                    raise NotSmsmonDatabase(f"{path}: rows point at messages that do not exist (upgrade to {step + 1} stopped)")
                conn.execute(f"PRAGMA user_version={step + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    finally:
        conn.execute("PRAGMA foreign_keys=ON")
    return SCHEMA_VERSION


def open_readonly(path: str | Path, *, cache_kib: int = CACHE_KIB, mmap: bool = True) -> sqlite3.Connection:
    """A read connection to an existing smsmon database (for read-side commands and the UI)."""
    conn = connect(path, readonly=True, cache_kib=cache_kib, mmap=mmap)
    try:
        v = version(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(exc, path) from None
    if v <= 0:
        conn.close()
        why = "no smsmon schema in it" if v == 0 else f"schema version {v}, which no smsmon writes"
        raise NotSmsmonDatabase(f"{path} is not an smsmon database ({why})")
    if v > SCHEMA_VERSION:
        conn.close()
        raise SchemaTooNew(f"{path} has schema version {v}; this smsmon knows up to {SCHEMA_VERSION}: upgrade smsmon")
    if v < SCHEMA_VERSION:
        conn.close()
        raise SchemaTooOld(f"{path} was written by an older smsmon (schema version {v}; this one reads {SCHEMA_VERSION})")
    conn.row_factory = sqlite3.Row
    return conn
