"""The one writer of a process, on its own thread, with group commit (SPEC §2, §5).

Handlers `await committer.submit(event)`; the writer thread takes everything queued (up to
`max_batch`), applies it in one transaction (WAL, synchronous=FULL), and only then resolves
each handler's future. So a handler answers 2xx only for a committed event, and one fsync
serves every event that arrived while the previous commit was running.

WAL checkpoints run on a second thread with its own connection, so a commit never waits for
one; when the WAL grows past `WAL_LIMIT` despite that (a checkpoint cannot finish under
continuous writes), the writer thread finishes one itself so the WAL can start over.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from smsmon.errors import DatabaseGone, Failure, NotSmsmonDatabase, SchemaTooNew, StoreError, StoreUnavailable
from smsmon.lifecycle import Event
from smsmon import database
from smsmon.store import backend
from smsmon.store.origin import simulated
from smsmon.store.writer import WAL_SIZE_LIMIT, Applied, DeadLetter, Writer

log = logging.getLogger("smsmon.committer")

MAX_BATCH = 500
CHECKPOINT_EVERY_S = 0.5
VERIFY_EVERY_S = 1.0  # when idle, check this often that the file at the path is still the database being written
WAL_LIMIT = WAL_SIZE_LIMIT  # 4 MiB, small: the WAL stays in cache and the writer's catch-up copy is short (measured best)
_STOP = object()


class _Work:
    """Other work for the writer's transaction: `fn(writer)`, its result kept for the caller."""

    def __init__(self, fn: Callable[[Writer], Any]) -> None:
        self.fn, self.result = fn, None

    def __call__(self, writer: Writer) -> None:
        self.result = self.fn(writer)


@dataclass
class _Item:
    # "event" (payload: the event and its forward entry) | "dead_letter" | "poll_run" | "work" (in
    # the batch's transaction) | "call" (on the writer thread between batches, its own transactions)
    kind: str
    payload: Any
    future: asyncio.Future | None
    loop: asyncio.AbstractEventLoop | None


class Committer:
    """Start it with `start()` (opens and migrates the database, raising StoreError if it
    cannot), stop it with `stop()` (commits everything queued, then closes)."""

    def __init__(self, db_path: str | Path, *, busy_timeout: float = 5.0, max_batch: int = MAX_BATCH,
                 on_commit: Callable[[int], None] | None = None) -> None:
        """`db_path`: an SQLite file or a PostgreSQL URL (smsmon.database). `on_commit(last_event_id)`
        is called on the writer thread after each commit that stored events."""
        self.db_path = database.parse(db_path)
        # Other processes may write the same database (PostgreSQL): work that must not be done
        # twice (relaying an outbox row) is claimed in a transaction first.
        self.shared = database.is_postgres(self.db_path)
        self.on_commit = on_commit
        self.busy_timeout = busy_timeout
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._writer: Writer | Any | None = None  # Writer, or PgWriter on PostgreSQL
        self._thread: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        # What the health endpoint and the UI read; written by the writer thread only.
        self.last_event_id = 0
        self.events_stored = 0  # this run
        self.duplicates = 0  # this run
        self.batches = 0
        self.batched_items = 0
        self.commit_seconds = 0.0  # time spent applying and committing
        self.last_error: str | None = None
        self.gone: DatabaseGone | None = None  # set once the file at the path stopped being this database: no commit after
        # Set once a newer smsmon has upgraded the database under this writer: nothing is written after
        self.refused: StoreUnavailable | None = None
        # Told of each commit that stored something, on the writer thread: (events, what became of
        # them, items in the batch, seconds it took). Metrics count with it (ingest/metrics.py).
        self.observer: Callable[[list[Event], list[Applied], int, float], None] | None = None
        # Forwarding (issue 13): with `forwarding`, every new callback submitted with a Content-Type
        # gets an outbox row in its transaction, and `on_forward` is told after such commits.
        self.forwarding = False
        self.on_forward: Callable[[], None] | None = None
        self.simulated = False  # a demo's: every event's source says it is simulated (store.origin)

    # ── lifecycle ─────────────────────────────────────────────────────────────
    def start(self) -> None:
        self._writer = backend.open_writer(self.db_path, busy_timeout=self.busy_timeout, autocheckpoint=False)
        self.last_event_id = self._writer.latest_event_id()
        self._thread = threading.Thread(target=self._run, name="smsmon-writer", daemon=True)
        self._thread.start()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="smsmon-checkpoint", daemon=True)
        self._checkpointer.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, then close. Blocking: from async code use `await asyncio.to_thread(c.stop)`."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._stopping.set()
        if self._checkpointer:
            self._checkpointer.join(timeout)
        self._thread = None

    @property
    def healthy(self) -> bool:
        return self.last_error is None

    # ── submitting ────────────────────────────────────────────────────────────
    async def submit(self, event: Event, *, content_type: str | None = None) -> Applied:
        """Queue an event; return once its batch is committed. Raises StoreUnavailable. A
        callback's `content_type` ("" for none) makes it relayed when forwarding is on."""
        forward = content_type if self.forwarding else None
        return await self._submit("event", (simulated(event) if self.simulated else event, forward))

    async def run(self, fn: Callable[[Writer], Any]) -> Any:
        """`fn(writer)` in the next batch's transaction; its result once committed."""
        work = _Work(fn)
        await self._submit("work", work)
        return work.result

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self._submit("dead_letter", letter)

    async def poll_run(self, run: dict[str, Any]) -> None:
        await self._submit("poll_run", run)

    async def call(self, fn: Callable[[Writer], Any]) -> Any:
        """Run `fn(writer)` on the writer thread, between two batches of callbacks, and return
        what it returns (retention's batches: no second connection competes for the lock)."""
        return await self._submit("call", fn)

    def _submit(self, kind: str, payload: Any) -> asyncio.Future:
        if self._thread is None:
            raise StoreUnavailable("the writer is not running")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Item(kind, payload, future, loop))
        return future

    # ── the writer thread ─────────────────────────────────────────────────────
    def _run(self) -> None:
        assert self._writer is not None
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=VERIFY_EVERY_S)
            except queue.Empty:
                self._verify()
                continue
            if first is _STOP:
                break
            batch: list[_Item] = [first]  # type: ignore[list-item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            if writes := [i for i in batch if i.kind != "call"]:
                self._commit(writes)
            for call in (i for i in batch if i.kind == "call"):
                self._call(call)
        if self.gone is None:
            self._writer.close()

    def _verify(self) -> None:
        if self.gone is None:
            try:
                self._writer.verify_file()  # type: ignore[union-attr]
            except DatabaseGone as exc:
                self._lost_the_file(exc)

    def _lost_the_file(self, exc: DatabaseGone) -> None:
        """From now on nothing is committed or acknowledged. The connections close at once: the
        last one to close copies the write-ahead log into the file it belongs to (the old one)
        and deletes it, so that it can never be applied to the file now at the path."""
        self.gone, self.last_error = exc, str(exc)
        self._stopping.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(5)
        if exc.how != "truncated":
            self._writer.finish_in_old_file()  # type: ignore[union-attr]
        self._writer.close()  # type: ignore[union-attr]
        moved = self._writer.abandon_wal()  # type: ignore[union-attr]
        log.error("%s: %s. Nothing more is acknowledged (callbacks get 503 and the provider retries them); "
                  "put the right file at the path and restart smsmon.%s", Failure.STORE_GONE, exc,
                  f" Changes not yet in the old file are kept in {moved}." if moved else "")

    def _commit(self, batch: list[_Item]) -> None:
        if self.gone is not None or self.refused is not None:
            self._resolve([(i, None, self.gone or self.refused) for i in batch])
            return
        events = [i for i in batch if i.kind == "event"]
        letters = [i for i in batch if i.kind == "dead_letter"]
        runs = [i for i in batch if i.kind == "poll_run"]
        works = [i for i in batch if i.kind == "work"]
        forward = [i.payload[1] for i in events]
        forwarded = any(f is not None for f in forward)
        started = time.perf_counter()
        try:
            applied = self._writer.apply([i.payload[0] for i in events], dead_letters=[i.payload for i in letters],  # type: ignore[union-attr]
                                         poll_runs=[i.payload for i in runs], forward=forward if forwarded else None,
                                         work=[i.payload for i in works])
        except DatabaseGone as exc:
            self._lost_the_file(exc)
            self._resolve([(i, None, exc) for i in batch])
            return
        except SchemaTooNew as exc:  # for good: the version never goes back (errors.upgraded_under)
            self.last_error = str(exc)
            self.refused = StoreUnavailable(str(exc))
            log.error("%s: %s; %d callbacks answered 503, and every one from now on", Failure.STORE_UNAVAILABLE, exc,
                      len(batch))
            self._resolve([(i, None, self.refused) for i in batch])
            return
        except StoreError as exc:
            self.last_error = str(exc)
            kind = Failure.STORE_DAMAGED if isinstance(exc, NotSmsmonDatabase) else Failure.STORE_UNAVAILABLE
            log.warning("%s: commit failed, %d callbacks answered 503: %s", kind, len(batch), exc)
            error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(str(exc))
            self._resolve([(i, None, error) for i in batch])
            return
        except Exception as exc:  # a bug: never leave a handler waiting forever
            log.exception("commit failed")
            self.last_error = f"internal error: {exc}"
            self._resolve([(i, None, StoreUnavailable(self.last_error)) for i in batch])
            return
        self.last_error = None
        self.batches += 1
        self.batched_items += len(batch)
        self.commit_seconds += time.perf_counter() - started
        for a in applied:
            if a.duplicate:
                self.duplicates += 1
            else:
                self.events_stored += 1
                self.last_event_id = max(self.last_event_id, a.event_id or 0)
        if works:  # work may have stored events too (a replay): followers and the forwarder hear of them
            try:
                self.last_event_id = max(self.last_event_id, self._writer.latest_event_id())  # type: ignore[union-attr]
            except StoreError as exc:  # committed all the same: followers hear of it with the next batch
                log.warning("%s: after a commit, the newest event id could not be read: %s", Failure.STORE_UNAVAILABLE, exc)
            forwarded = forwarded or self.forwarding
        self._resolve([(i, a, None) for i, a in zip(events, applied)] + [(i, None, None) for i in letters + runs + works])
        if forwarded and self.on_forward:
            try:
                self.on_forward()
            except Exception:  # the forwarder's bug must not stop the writer; it reads the outbox anyway
                log.exception("on_forward failed")
        if self.on_commit and (events or letters or runs or works):
            try:
                self.on_commit(self.last_event_id)
            except Exception:  # a watcher's bug must not stop the writer
                log.exception("on_commit failed")
        if self.observer is not None:
            try:
                self.observer([i.payload[0] for i in events], applied, len(batch), time.perf_counter() - started)
            except Exception:  # counting must never stop the writer
                log.exception("commit observer failed")
        self._writer.checkpoint_if_wal_over(WAL_LIMIT)  # type: ignore[union-attr]

    def _call(self, item: _Item) -> None:
        if self.gone is not None or self.refused is not None:
            self._resolve([(item, None, self.gone or self.refused)])
            return
        try:
            result = item.payload(self._writer)
        except DatabaseGone as exc:
            self._lost_the_file(exc)
            self._resolve([(item, None, exc)])
            return
        except Exception as exc:  # StoreError, or a bug of the caller's: the caller hears of it
            self._resolve([(item, None, exc)])
            return
        self._resolve([(item, result, None)])
        self._writer.checkpoint_if_wal_over(WAL_LIMIT)  # type: ignore[union-attr]

    @staticmethod
    def _resolve(outcomes: list[tuple[_Item, Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for item, value, error in outcomes:
            if item.loop is not None:
                by_loop.setdefault(item.loop, []).append((item.future, value, error))
        for loop, results in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_results, results)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more

    def _checkpoint_loop(self) -> None:
        try:
            checkpointer = backend.checkpointer(self._writer)
        except StoreError:
            return  # the writer's own bound on the WAL still holds
        if checkpointer is None:
            return  # PostgreSQL: the server checkpoints
        try:
            while not self._stopping.wait(CHECKPOINT_EVERY_S):
                checkpointer.checkpoint()
        finally:
            checkpointer.close()


def _set_results(results: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, value, error in results:
        if future.done():  # the handler went away (client disconnected)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
