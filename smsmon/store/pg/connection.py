"""Connections to PostgreSQL (psycopg 3 and psycopg_pool), with the face the read side expects.

The read side (queries.py, stats.py, views.py) is written once, in SQLite's SQL, against a
connection with `execute(sql, params)`. `Connection` gives a psycopg connection that face, and
`translate` turns the few SQLite-only spellings the read side uses into PostgreSQL's:

- `?` placeholders become `$1, $2, ...` (psycopg's raw cursors pass them to the server as they are);
- `INDEXED BY ix_...` goes (PostgreSQL's planner chooses indexes itself);
- `rowid`, the messages' page tie-break in SQLite, is `seq` (an index covers (last_event_at, seq));
- a subquery after FROM gets the alias PostgreSQL 15 insists on; `IN ()` becomes `IN (NULL)`;
- `WHERE 1` (an empty filter's condition) is `WHERE true`; `CAST(x AS INTEGER)` truncates, as in SQLite;
- `INSERT OR IGNORE` is `INSERT ... ON CONFLICT DO NOTHING`; `CAST(text AS BLOB)` is its UTF-8 bytes.

SQLite's `total()` and `group_concat()` are aggregates the PostgreSQL schema defines (schema.py).
Every text value is stored in the "C" collation, so that text compares by code point as in
SQLite (times as ISO text, id prefixes). PostgreSQL's text cannot hold a NUL character; a NUL in
a value (a provider's id, a dead letter's body) is stored as U+2400 (␀), on the way in and in
lookups alike.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any, Callable, Iterable, Sequence

import psycopg
from psycopg import errors as pgerrors
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from smsmon.database import PostgresUrl
from smsmon.errors import NotSmsmonDatabase, StoreError, StoreUnavailable

NUL, NUL_STORED = "\x00", "\u2400"
# The pool's own warnings while a server is away repeat libpq's reason every few seconds, two lines
# each: smsmon says once per failed commit what happened (the listener's 503 lines, the app's
# health line), so only the pool's errors are let through.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
CONNECT_TIMEOUT_S = 10  # libpq waits forever by default: a server that does not answer is an error after this
APPLICATION = "smsmon"
_KEYWORDS = {"WHERE", "GROUP", "ORDER", "LIMIT", "UNION", "JOIN", "LEFT", "INNER", "CROSS", "ON", "HAVING", "OFFSET",
             "EXCEPT", "INTERSECT", "WINDOW", "AS"}
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """SQLite's SQL, as the read side writes it, in PostgreSQL's (see the module's docstring)."""
    literals: list[str] = []

    def keep(m: re.Match) -> str:
        literals.append(m.group(0))
        return f"\x00{len(literals) - 1}\x00"

    text = _QUOTED.sub(keep, sql)
    text = re.sub(r"\s+INDEXED BY \w+", "", text)
    text = re.sub(r"\bSELECT rowid\b", "SELECT seq AS rowid", text)
    text = re.sub(r"(?<!AS )\browid\b", "seq", text)
    text = re.sub(r"\bIN \(\s*\)", "IN (NULL)", text)
    text = re.sub(r"\b(WHERE|AND|OR) 1(?=\s*(?:ORDER|GROUP|LIMIT|AND|OR|UNION|\)|$))", r"\1 true", text)
    text = re.sub(r"\bCAST\((\w+) AS BLOB\)", r"convert_to(\1, 'UTF8')", text)
    if re.match(r"\s*INSERT OR IGNORE INTO\b", text):
        text = re.sub(r"INSERT OR IGNORE INTO", "INSERT INTO", text, count=1) + " ON CONFLICT DO NOTHING"
    text = _alias_subqueries(text)
    text = _truncating_casts(text)
    count = iter(range(1, 1 << 16))
    text = re.sub(r"\?", lambda _: f"${next(count)}", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: literals[int(m.group(1))], text)


def _alias_subqueries(text: str) -> str:
    """`FROM (subquery)` without an alias gets one (`AS _sub1`), nested ones too."""
    at = []
    for m in re.finditer(r"\bFROM\s*\(", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        follows = re.match(r"\s*(\w+)", text[i:])
        if follows is None or follows.group(1).upper() in _KEYWORDS - {"AS"} or follows.group(1).isdigit():
            at.append(i)
    for n, i in enumerate(sorted(at, reverse=True), 1):
        text = f"{text[:i]} AS _sub{n}{text[i:]}"
    return text


def _truncating_casts(text: str) -> str:
    """`CAST(x AS INTEGER)` truncates in SQLite and rounds in PostgreSQL: `trunc(x)::bigint` here."""
    start = 0
    while m := re.compile(r"\bCAST\(").search(text, start):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        inner = text[m.end():i - 1]
        if inner.endswith(" AS INTEGER"):
            text = f"{text[:m.start()]}trunc({inner[:-len(' AS INTEGER')]})::bigint{text[i:]}"
        start = m.start() + 1
    return text


def clean(value: Any) -> Any:
    """A parameter as PostgreSQL can store it: text without NUL."""
    if isinstance(value, str) and NUL in value:
        return value.replace(NUL, NUL_STORED)
    return value


def clean_params(params: Sequence[Any] | None) -> list[Any]:
    return [clean(p) for p in params or ()]


# ── rows that behave like sqlite3.Row: by index, by name, dict(row) ────────────────
@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type:
    index = {n: i for i, n in enumerate(names)}

    class Row(tuple):
        __slots__ = ()

        def keys(self) -> list[str]:
            return list(names)

        def __getitem__(self, key: Any) -> Any:
            return tuple.__getitem__(self, index[key] if isinstance(key, str) else key)

    return Row


def row_factory(cursor: Any) -> Callable[[Sequence[Any]], tuple]:
    desc = cursor.description
    if desc is None:
        return tuple
    return _row_class(tuple(c.name for c in desc))


class _Numeric(Loader):
    """numeric (what sum() of bigint gives) as int, or float: never Decimal, as from SQLite."""

    def load(self, data: Any) -> Any:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


def configure(conn: psycopg.Connection, *, read_only: bool = False) -> None:
    """Raw cursors (`$1` placeholders), rows like sqlite3's, numeric as numbers. A reader's
    connection reads one snapshot per checkout (REPEATABLE READ, READ ONLY): a dashboard's dozen
    queries agree with each other, which SQLite gives by holding one read transaction too."""
    conn.cursor_factory = psycopg.RawCursor  # type: ignore[assignment]
    conn.row_factory = row_factory  # type: ignore[assignment]
    conn.adapters.register_loader("numeric", _Numeric)
    if read_only:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    else:  # a writer's statements see what committed before each began (a database may default to another level):
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED  # its look at the schema version after the lock


class Connection:
    """A psycopg connection with sqlite3's face: execute(sql with ?), executemany, rows by name or index."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.raw.execute(translate(sql), clean_params(params))  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(translate(sql), [clean_params(r) for r in rows])  # type: ignore[arg-type]


def kwargs_for(url: PostgresUrl, *, busy_timeout: float | None = None, autocommit: bool = False) -> dict[str, Any]:
    """Connection settings the URL does not give itself. Writers run in autocommit mode and
    open their transactions explicitly (`with conn.transaction()`); readers get one per checkout."""
    given = conninfo_to_dict(url.reveal())
    out: dict[str, Any] = {"autocommit": autocommit}
    if "connect_timeout" not in given:
        out["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in given:
        out["application_name"] = APPLICATION
    if busy_timeout is not None:  # waiting for another writer's lock: as long as SQLite's busy timeout
        out["options"] = (given.get("options", "") + f" -c lock_timeout={int(busy_timeout * 1000)}").strip()
    return out


def connect(url: PostgresUrl, *, busy_timeout: float | None = None, read_only: bool = False,
            autocommit: bool = False) -> psycopg.Connection:
    """One connection, now: a wrong password, an unknown host or a server that does not answer is
    a StoreError naming the server (password masked) and libpq's reason."""
    try:
        conn = psycopg.connect(url.reveal(), **kwargs_for(url, busy_timeout=busy_timeout, autocommit=autocommit))
    except psycopg.Error as exc:
        raise pg_error(exc, url) from None
    configure(conn, read_only=read_only)
    return conn


def pool(url: PostgresUrl, *, max_size: int, busy_timeout: float | None = None, read_only: bool = False,
         autocommit: bool = False, name: str = "smsmon", timeout: float = CONNECT_TIMEOUT_S) -> ConnectionPool:
    """A pool that replaces broken connections (a restarted server) by itself. Opened after one
    direct connection succeeded, so that what is wrong is said at once, in libpq's words.
    `timeout`: how long a caller waits for a connection (while the server is away) before a
    StoreUnavailable."""
    connect(url, busy_timeout=busy_timeout).close()
    kwargs = kwargs_for(url, busy_timeout=busy_timeout, autocommit=autocommit)
    return ConnectionPool(url.reveal(), kwargs=kwargs, min_size=1, max_size=max_size,
                          open=True, name=name, configure=lambda c: configure(c, read_only=read_only),
                          check=ConnectionPool.check_connection, timeout=timeout)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def pg_error(exc: BaseException, url: PostgresUrl) -> StoreError:
    """The one translation of PostgreSQL's failures into smsmon's: what may pass (the server is
    down or restarting, a lock held past the busy timeout, a deadlock, too many connections, a
    full disk) is StoreUnavailable, so that the listener answers 503 and the provider retries;
    a read-only server (a replica) and missing permissions say so; anything else is a
    StoreError with PostgreSQL's words. Passwords never appear."""
    words = one_line(exc)
    for secret in url.passwords:
        words = words.replace(secret, "****")
    where = f"PostgreSQL at {url}"
    if isinstance(exc, PoolTimeout):
        return StoreUnavailable(f"{where} unavailable: no connection to it ({words})")
    if isinstance(exc, (pgerrors.LockNotAvailable, pgerrors.QueryCanceled)):
        return StoreUnavailable(f"database {url} is locked by another process ({words})")
    if isinstance(exc, (pgerrors.DeadlockDetected, pgerrors.SerializationFailure, pgerrors.TooManyConnections,
                        pgerrors.InsufficientResources, pgerrors.AdminShutdown, pgerrors.CannotConnectNow,
                        pgerrors.CrashShutdown)):
        return StoreUnavailable(f"{where} unavailable: {words}")
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction):
        return StoreError(f"{where} is read-only (a replica?): smsmon writes to the primary; browse, show, stats and export"
                          f" can read a replica ({words})")
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return StoreError(f"{where}: not allowed: {words} (the user needs to own the database's tables, or CREATE on its schema"
                          " to make them)")
    if isinstance(exc, pgerrors.UndefinedTable):
        return NotSmsmonDatabase(f"{url} has no smsmon tables where expected ({words})")
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable(f"{where} unavailable: {words}")
    return StoreError(f"{where}: {words}")
