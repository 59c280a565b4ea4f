"""Reader: everything the commands, the app and the pollers read, on one read-only connection.

The connection opens on first use and is shared by whichever thread asks, one at a time (the
app starts a thread per worker: a connection per thread would pile up, each with its own page
cache). Every method blocks on SQLite: call it from a thread, never from an event loop.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from smsmon.errors import FilterError, NotSmsmonDatabase, ReadStopped, SchemaTooNew, SchemaTooOld, StoreError
from smsmon.filters import Filter
from smsmon.errors import LocalNumber
from smsmon.normalize import e164_strict, international_prefix
from smsmon.lifecycle import WATCH_WINDOW
from smsmon.timeutil import now_utc
from smsmon.store import keyindex, queries, views
from smsmon.store import stats as figures
from smsmon.store.schema import CACHE_KIB, open_readonly, store_error

if TYPE_CHECKING:
    from smsmon.store.outbox import Pending

# The modules of what the first screen does not show (the outbox, dead letters, insights, a
# follower's reads) are imported by the methods that use them: not by every launch.

EXPORT_BATCH = 1000  # rows read at a time when iterating everything
EVENT_KEY_CACHE = 16  # free texts whose event-id lookups a reader keeps
STOP_CHECK_STEPS = 20_000  # SQLite's steps between two looks at whether a read is still wanted (stoppable)
# Free text this long, in one word and not a number, is looked up as an event id too (a Zeckta
# eventId is a uuid of 36, smsmon's own keys `ez:` + 16 hex digits): the first lookup reads every
# Bloom block (about 25 ms per million events), so not for the short prefixes typed on the way.
EVENT_KEY_MIN = 16


def _may_be_event_key(text: str) -> bool:
    return len(text) >= EVENT_KEY_MIN and not any(c.isspace() for c in text) and not text.lstrip("+").isdigit()


class Reader:
    def __init__(self, path: str | Path, *, cache_kib: int = CACHE_KIB, mmap: bool = True,
                 window: timedelta = WATCH_WINDOW, region: str | None = None) -> None:
        """`window`: the watch window (stale messages); `region`: where local phone numbers in
        lookups and filters are read (setting default_region)."""
        self.path = Path(path)
        self.window = window
        self.region = region
        self._cache_kib, self._mmap = cache_kib, mmap
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._stop = threading.local()  # per thread: when its reads are no longer wanted (stoppable)
        # Free text looked up as an event id: text -> (its messages, the last Bloom block read)
        self._by_event_key: dict[str, tuple[tuple[str, ...], int]] = {}

    def open(self) -> "Reader":
        """Open now, to fail early with a clear StoreError (a missing file, not a database)."""
        with self._lock:
            self._c()
        return self

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = open_readonly(self.path, cache_kib=self._cache_kib, mmap=self._mmap)
            except SchemaTooOld as exc:
                self._upgrade(exc)
                self._conn = open_readonly(self.path, cache_kib=self._cache_kib, mmap=self._mmap)
        return self._conn

    def _upgrade(self, exc: SchemaTooOld) -> None:
        """A database from an older smsmon is upgraded in place where it can be written (the
        writer says so on stderr); a read-only one cannot be read by this smsmon."""
        from smsmon.store.writer import Writer

        try:
            Writer(self.path).close()
        except StoreError as why:
            raise SchemaTooOld(f"{exc}, and it cannot be upgraded here: {why}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Reader":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def localize(self, f: Filter | None) -> Filter | None:
        """Phone numbers of a filter as they are stored (E.164): `dest:0241234567` and
        `dest:024*` read in the region, free text that starts a local number searched in
        international form too. A local number without a region is a FilterError that says so."""
        if f is None or not (f.dests or f.text):
            return f
        if _may_be_event_key(f.text):
            f = replace(f, text_messages=self._event_key_messages(f.text))
        dests = []
        for v in f.dests:
            if v.endswith("*"):
                dests.append((international_prefix(v[:-1], self.region) or v[:-1]) + "*")
                continue
            try:
                dests.append(e164_strict(v, self.region) or v)
            except LocalNumber as exc:
                raise FilterError(f"dest: {exc}") from None
        return replace(f, dests=tuple(dests), text_number=international_prefix(f.text, self.region) or "")

    def _event_key_messages(self, text: str) -> tuple[str, ...]:
        """The messages with an event of this id; a second call reads only the Bloom blocks
        written since the first (a filter is localized for every page and summary)."""
        with self._lock:  # the app's workers share one reader
            found, last = self._by_event_key.get(text, ((), 0))
            more, last = self._run(keyindex.find_from, text, last)
            found = tuple(dict.fromkeys((*more, *found)))
            if text not in self._by_event_key and len(self._by_event_key) >= EVENT_KEY_CACHE:
                self._by_event_key.pop(next(iter(self._by_event_key)))
            self._by_event_key[text] = (found, last)
            return found

    @contextlib.contextmanager
    def stoppable(self, stopped: Callable[[], bool]) -> Iterator[None]:
        """Within this, the reads of this thread end in ReadStopped as soon as `stopped()` is
        true: SQLite asks it every STOP_CHECK_STEPS steps of a query. The app's reads share one
        connection, so a read the screen no longer wants (a count of 100,000 messages, 0.7 s at
        10M events, whose filter has just been changed) would otherwise keep the next one waiting."""
        self._stop.check = stopped
        try:
            yield
        finally:
            self._stop.check = None

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """`fn(connection, ...)` under the lock; SQLite's failures become smsmon's (a damaged
        file says so and what to do, a locked one that it is locked)."""
        with self._lock:
            stopped = getattr(self._stop, "check", None)
            conn = None
            try:
                conn = self._c()
                if stopped is not None:
                    conn.set_progress_handler(stopped, STOP_CHECK_STEPS)  # true: SQLite interrupts the query
                return fn(conn, *args, **kwargs)
            except sqlite3.Error as exc:
                if stopped is not None and isinstance(exc, sqlite3.OperationalError) and stopped():
                    raise ReadStopped() from None
                raise store_error(exc, self.path) from None
            finally:
                if stopped is not None and conn is not None:
                    conn.set_progress_handler(None, 0)

    # ── messages ─────────────────────────────────────────────────────────────
    def page(self, f: Filter | None = None, *, after: queries.Cursor | None = None, limit: int = queries.PAGE,
             now: datetime | None = None) -> list[dict[str, Any]]:
        return self._run(queries.page, self.localize(f), after=after, limit=limit, now=now, window=self.window)

    def message(self, message_id: str, *, now: datetime | None = None) -> dict[str, Any] | None:
        return self._run(queries.message, message_id, now=now, window=self.window)

    def messages_by_id(self, ids: Iterable[str], *, now: datetime | None = None) -> dict[str, dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            return {i: r for i in ids if (r := queries.message(conn, i, now=now, window=self.window))}
        return self._run(read)

    def timeline(self, message_id: str) -> list[dict[str, Any]]:
        return self._run(queries.timeline, message_id)

    def resolve(self, query: str) -> str:
        return self._run(queries.resolve, query, region=self.region)

    def detail(self, message_id: str, *, now: datetime | None = None) -> dict[str, Any]:
        return self._run(views.message_detail, message_id, window=self.window, now=now)

    def iter_messages(self, f: Filter | None = None, *, now: datetime | None = None,
                      batch: int = EXPORT_BATCH) -> Iterator[dict[str, Any]]:
        """Every matching message, a page at a time (the lock is held per page, not throughout)."""
        after = None
        while True:
            rows = self.page(f, after=after, limit=batch, now=now)
            yield from rows
            if len(rows) < batch:
                return
            after = queries.cursor(rows[-1])

    def iter_events(self, f: Filter | None = None, *, now: datetime | None = None,
                    batch: int = EXPORT_BATCH) -> Iterator[dict[str, Any]]:
        """Every event of the matching messages, in arrival order, a batch at a time."""
        after = 0
        while True:
            rows = self._run(queries.events_of, self.localize(f), after=after, limit=batch, now=now, window=self.window)
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1]["id"]

    def export(self, table: str, f: Filter | None = None, *, as_json: bool,
               now: datetime | None = None) -> tuple[list[str], Iterator[list[str]]]:
        """(columns, batches of lines) of `smsmon export`: one line per row (a JSON object, or a
        CSV record of the columns) streamed from one query, holding this reader until all are read."""
        from smsmon.store import export

        f, now = self.localize(f) or Filter(), now or now_utc()
        read = export.messages if table == "messages" else export.events

        def rows() -> Iterator[list[str]]:
            with self._lock:
                try:
                    yield from read(self._c(), f, now=now, window=self.window, as_json=as_json)
                except sqlite3.Error as exc:
                    raise store_error(exc, self.path) from None

        return (export.MESSAGE_COLUMNS if table == "messages" else export.EVENT_COLUMNS), rows()

    # ── figures ──────────────────────────────────────────────────────────────
    def stats(self, f: Filter | None = None, *, now: datetime | None = None,
              limit: int | None = None) -> figures.Stats:
        return self._run(figures.stats, self.localize(f), now=now, window=self.window, limit=limit)

    def facets(self, dim: str, f: Filter | None = None, *, limit: int = queries.TOP,
               now: datetime | None = None) -> list[tuple[str | None, int]]:
        return self._run(figures.facets, dim, self.localize(f), limit=limit, now=now, window=self.window)

    def dashboard(self, f: Filter, watermark: int, *, limit: int, now: datetime, with_stats: bool = True) -> views.Snapshot:
        return self._run(views.dashboard, self.localize(f), watermark, limit=limit, now=now, window=self.window,
                         with_stats=with_stats)

    def sightings(self, code: str, provider: str | None) -> dict[str, Any]:
        return self._run(views.sightings, code, provider, str(self.path))

    # ── new data, dead letters, polls ────────────────────────────────────────
    def latest_event_id(self) -> int:
        return self._run(queries.latest_event_id)

    def events_after(self, after_id: int, *, limit: int = 500) -> list[dict[str, Any]]:
        return self._run(queries.events_after, after_id, limit=limit)

    def events_matching(self, f: Filter | None, *, after: int, upto: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Events after id `after` up to `upto` of the messages matching the filter (`smsmon tail`)."""
        from smsmon.store import follow

        return self._run(follow.events_between, self.localize(f), after=after, upto=upto, limit=limit, window=self.window)

    def listen(self, on_change: Any) -> Any:
        """Commits announced as they happen: None here (SQLite announces nothing; a reader
        follows another process's commits by the watermark). PgReader's calls `on_change`."""
        return None

    def dead_letters(self, *, limit: int = 200) -> list[dict[str, Any]]:
        return self._run(queries.dead_letters, limit=limit)

    def poll_runs(self, *, limit: int = 200) -> list[dict[str, Any]]:
        return self._run(queries.poll_runs, limit=limit)

    # ── for the pollers and the demo ─────────────────────────────────────────
    def open_messages(self, provider: str, *, since: str, older_than: str | None = None, limit: int = 1000) -> list[str]:
        return self._run(queries.open_messages, provider, since=since, older_than=older_than, limit=limit)

    def open_statuses(self, provider: str) -> dict[str, str | None]:
        return self._run(queries.open_statuses, provider)

    def stored_keys(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        return self._run(queries.stored_keys, pairs)

    def raw_statuses(self, message_ids: Iterable[str]) -> dict[str, str | None]:
        return self._run(queries.raw_statuses, message_ids)

    # ── forwarding and dead letters (issue 13) ──────────────────────────────
    def outbox_due(self, now: str, limit: int) -> list[Pending]:
        from smsmon.store import outbox

        return self._run(outbox.due, now, limit)

    def outbox_depth(self) -> tuple[int, str | None]:
        from smsmon.store import outbox

        return self._run(outbox.depth)

    def outbox_summary(self, *, limit: int) -> dict[str, Any]:
        from smsmon.store import outbox

        return self._run(outbox.summary, limit=limit)

    def dead_letter_ids(self, *, since: str | None = None) -> list[int]:
        from smsmon.store import deadletters

        return self._run(deadletters.ids, since=since)

    def dead_letters_where(self, *, ids: Iterable[int] = (), since: str | None = None, limit: int | None = None,
                           with_bytes: bool = False) -> list[dict[str, Any]]:
        from smsmon.store import deadletters

        return self._run(deadletters.select, ids=list(ids), since=since, limit=limit, with_bytes=with_bytes)

    # ── for benchmarks ───────────────────────────────────────────────────────
    def sample_messages(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None, queries.Cursor | None]:
        return self._run(queries.sample_messages)


    # ── added for the app's charts and insights ──────────────────────────────
    def activity(self, watermark: int, top: int, *, now: datetime) -> Counter:
        """Events received per second, past `watermark` up to `top` (the last half hour at first)."""
        return self._run(views.activity, watermark, top, now=now)

    def insights_period(self, f: Filter, *, period: timedelta, now: datetime, limit: int | None = None) -> dict[str, Any]:
        """The insights screen over a period (the filter's since:/until:, else the last `period`);
        under a filter the aggregates cannot answer, of at most `limit` of its messages."""
        from smsmon.store import insights

        return self._run(insights.insights_period, self.localize(f), period=period, now=now, window=self.window,
                         limit=limit)

    def insights_stale(self, f: Filter, *, now: datetime) -> dict[str, Any]:
        """The insights screen's stale messages, for a filter they are read apart for: the newest,
        how many (at most STALE_COUNTED when counted one by one) and whether there are more."""
        from smsmon.store import insights

        return self._run(insights.stale, self.localize(f), now=now, window=self.window)

    def insights_costs(self, f: Filter, *, period: timedelta, now: datetime, limit: int | None = None) -> dict[str, Any]:
        """The insights screen's costs (read apart from the rest: smsmon.store.insights.costs)."""
        from smsmon.store import insights

        return self._run(insights.costs, self.localize(f), period=period, now=now, window=self.window, limit=limit)


def check_writer_can_open(path: str | Path) -> None:
    """Before the app starts (watch, demo): refuse, with the writer's own one line, a file it
    would refuse later (another program's SQLite file, a newer smsmon's), so that the error
    comes before the screen is drawn rather than as a flash of it. A missing or empty file, an
    empty SQLite file and any smsmon database pass."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    from smsmon.store.schema import SCHEMA_VERSION, connect, version

    conn = connect(path, readonly=True)
    try:
        current = version(conn)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 3")]
    except sqlite3.Error as exc:
        raise store_error(exc, path) from None
    finally:
        conn.close()
    if current < 0 or (current == 0 and tables):
        what = f"holds other tables ({', '.join(tables)}) and no smsmon schema" if current == 0 else f"has schema version {current}"
        raise NotSmsmonDatabase(f"{path} {what}: it is not an smsmon database (give --db a new file or an smsmon one)")
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(f"{path} has schema version {current}; this smsmon knows up to {SCHEMA_VERSION}: upgrade smsmon")
