"""The Reader on PostgreSQL: every read of the SQLite Reader (the same queries, views and figures,
through connection.translate), on a pool of connections instead of one shared connection, so
that the app's reads run side by side. Each read sees one snapshot of the database.

New commits are announced, not looked for: every writer's transaction ends with a NOTIFY of
its last event id, and `listen()` hands those to a callback (the app, `tail`).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

import psycopg
from psycopg import sql as pgsql
from psycopg_pool import ConnectionPool, PoolTimeout

from smsmon.database import PostgresUrl
from smsmon.errors import SchemaTooOld, StoreError
from smsmon.filters import Filter
from smsmon.lifecycle import WATCH_WINDOW
from smsmon.store.pg import export as pg_export
from smsmon.store.pg import schema
from smsmon.store.pg.connection import CONNECT_TIMEOUT_S, Connection, connect, pg_error, pool
from smsmon.store.pg.writer import CHANNEL_PREFIX
from smsmon.store.reader import Reader
from smsmon.timeutil import now_utc

log = logging.getLogger("smsmon.store")

POOL_SIZE = 4  # the app's reads at once: a refresh, a page, a message, insights
RELISTEN_S = 1.0  # after the server went away, try again this often


class PgReader(Reader):
    def __init__(self, url: PostgresUrl, *, cache_kib: int = 0, mmap: bool = False, window: timedelta = WATCH_WINDOW,
                 region: str | None = None, pool_size: int = POOL_SIZE) -> None:
        """As Reader (`cache_kib` and `mmap` are SQLite's: PostgreSQL's cache is the server's)."""
        super().__init__(str(url), window=window, region=region)  # what every Reader keeps (caches, settings)
        self.url = self.path = url  # type: ignore[assignment]
        self.pool_size = pool_size
        self.channel = ""
        self._pool: ConnectionPool | None = None
        self._lock = threading.RLock()  # guards opening and closing only: reads run side by side

    def open(self) -> "PgReader":
        self._get_pool()
        return self

    def _get_pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                conn = connect(self.url, read_only=True)
                try:
                    try:
                        schema.check(conn, str(self.url))
                    except SchemaTooOld as exc:
                        self._upgrade(exc)
                    self.channel = CHANNEL_PREFIX + conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
                    conn.rollback()
                except psycopg.Error as exc:
                    raise pg_error(exc, self.url) from None
                finally:
                    conn.close()
                self._pool = pool(self.url, max_size=self.pool_size, read_only=True, name="smsmon-reader")
            return self._pool

    def _upgrade(self, exc: SchemaTooOld) -> None:
        from smsmon.store.pg.writer import PgWriter

        try:
            PgWriter(self.url).close()
        except StoreError as why:
            raise SchemaTooOld(f"{exc}, and it cannot be upgraded here: {why}") from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._get_pool().connection() as raw:
                return fn(Connection(raw), *args, **kwargs)
        except (psycopg.Error, PoolTimeout) as exc:
            raise pg_error(exc, self.url) from None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(connection, ...)`, a read of the store's (written in SQLite's SQL: store.window's
        figures, store.prune's plan), on a connection of the pool; PostgreSQL's failures as smsmon's."""
        return self._run(fn, *args, **kwargs)

    def export(self, table: str, f: Filter | None = None, *, as_json: bool,
               now: datetime | None = None) -> tuple[list[str], Iterator[list[bytes]]]:
        f, now = self.localize(f) or Filter(), now or now_utc()
        read = pg_export.messages if table == "messages" else pg_export.events

        def rows() -> Iterator[list[bytes]]:
            try:
                with self._get_pool().connection() as raw:
                    yield from read(raw, f, now=now, window=self.window, as_json=as_json)
            except (psycopg.Error, PoolTimeout) as exc:
                raise pg_error(exc, self.url) from None

        return (pg_export.MESSAGE_COLUMNS if table == "messages" else pg_export.EVENT_COLUMNS), rows()

    def listen(self, on_change: Callable[[int], None]) -> Callable[[], None] | None:
        """Call `on_change(last event id)` (on a thread of its own) after each commit of any
        writer of this database; after a lost connection, once with 0 when listening again
        (commits may have been missed). Returns the function that stops listening; None on a
        replica, which cannot LISTEN (the caller looks for new rows itself, as on SQLite)."""
        if self._run(lambda c: c.execute("SELECT pg_is_in_recovery()").fetchone()[0]):
            return None
        stop = threading.Event()
        holder: dict[str, psycopg.Connection] = {}

        def run() -> None:
            while not stop.is_set():
                try:
                    conn = holder["conn"] = connect(self.url, autocommit=True)
                    conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.channel)))  # type: ignore[arg-type]
                    listening.set()
                    if relistened:
                        on_change(0)
                    while not stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            on_change(int(note.payload) if note.payload.isdigit() else 0)
                except (psycopg.Error, StoreError) as exc:
                    log.debug("listening for commits: %s", exc)
                    stop.wait(RELISTEN_S)
                finally:
                    if "conn" in holder:
                        holder.pop("conn").close()
                relistened.append(True)

        relistened: list[bool] = []
        listening = threading.Event()
        thread = threading.Thread(target=run, name="smsmon-listen", daemon=True)
        thread.start()
        # Returns once LISTEN is in effect, so that no commit after this call goes unheard (a
        # server that does not answer: after the connect timeout, and then the first commit heard
        # is announced as 0, "look again").
        listening.wait(CONNECT_TIMEOUT_S)

        def stop_listening() -> None:
            stop.set()
            thread.join(5)

        return stop_listening
