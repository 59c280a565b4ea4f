"""Retention in the background (issue 14): with the `retention` setting, `serve` and `watch` prune
what is older than it shortly after they start and then every RETENTION_EVERY_S.

Every batch (store/prune.py) runs on the committer's writer thread, between two commits of
callbacks, so no second connection competes for the write lock; batches are short and rested
(HOLD_S, REST), so a callback waits for at most one short batch. Then the freed pages go back to
the file system a step at a time, the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Callable, TypeVar

from smsmon.errors import StoreError
from smsmon.ingest.committer import Committer
from smsmon.store.prune import BATCH, VACUUM_STEP, PruneResult, run_batch, run_others, step_vacuum
from smsmon.store.writer import Writer
from smsmon.timeutil import fmt, human_duration, now_utc

log = logging.getLogger("smsmon.retention")

RETENTION_FIRST_S = 30.0  # after start: let the first callbacks and polls in before the first prune
RETENTION_EVERY_S = 3600.0  # hourly: retention is in days, and a prune of one hour's worth takes a few batches
# Measured on a copy of the 1M-event database under 1,000 callbacks/s (`smsmon bench months`): batches of
# 500 back to back held the writer thread 120 ms each (median; 0.9 s at worst) and, with the WAL
# checkpoints they caused, put callbacks' p50 at 0.6 s. Short batches with rests keep them waiting
# for one short batch at most.
HOLD_S = 0.02  # batches (and vacuum steps) sized to hold the writer thread about this long
REST = 5.0  # and followed by a rest this many times as long: a prune takes at most a sixth of the writer thread
MIN_BATCH = 20
VACUUM_PAGES = VACUUM_STEP
MIN_VACUUM_PAGES = 64
T = TypeVar("T")


class Retention:
    def __init__(self, committer: Committer, keep: timedelta, *, clock: Callable[[], datetime] = now_utc,
                 batch: int = BATCH, on_pruned: Callable[[int, int], None] | None = None) -> None:
        self.committer = committer
        self.keep = keep
        self.clock = clock
        self.batch = batch
        self.on_pruned = on_pruned
        self.last: PruneResult | None = None

    async def _timed(self, fn: Callable[[Writer], T]) -> tuple[T, float]:
        """`fn(writer)` on the writer thread, and how long it held it (not counting the wait for it)."""
        def run(w: Writer) -> tuple[T, float]:
            t0 = time.perf_counter()
            return fn(w), time.perf_counter() - t0
        return await self.committer.call(run)

    async def run_once(self) -> PruneResult:
        """Prune what is older than `keep` now, in batches, then give the space back. Raises StoreError.

        Batches are sized to hold the writer thread about HOLD_S, and each is followed by a rest
        REST times as long: callbacks wait for at most one short batch, and a prune never takes
        more than a sixth of the writer's time, however much there is to remove."""
        cutoff = fmt(self.clock() - self.keep)
        result = PruneResult(cutoff)
        started = time.perf_counter()
        size = self.batch
        while True:
            done, took = await self._timed(lambda w: run_batch(w, cutoff, size))
            result.longest_batch_s = max(result.longest_batch_s, took)
            if not done.messages:
                break
            if not result.batches:
                log.info("retention: removing messages silent since before %s (older than %s)", cutoff,
                         human_duration(self.keep.total_seconds()))
            result.batches += 1
            result.messages, result.events, result.outbox = (result.messages + done.messages, result.events + done.events,
                                                             result.outbox + done.outbox)
            if self.on_pruned:
                self.on_pruned(done.messages, done.events)
            size = max(MIN_BATCH, min(self.batch, int(size * HOLD_S / max(took, 1e-6))))
            await asyncio.sleep(took * REST)
        runs, letters, outbox = await self.committer.call(lambda w: run_others(w, cutoff))
        result.poll_runs, result.dead_letters, result.outbox = runs, letters, result.outbox + outbox
        if result.removed_anything:
            pages = VACUUM_PAGES
            while True:
                step, took = await self._timed(lambda w: step_vacuum(w, pages))
                if not step:
                    break
                result.pages_freed += step
                pages = max(MIN_VACUUM_PAGES, min(VACUUM_PAGES, int(pages * HOLD_S / max(took, 1e-6))))
                await asyncio.sleep(took * REST)
        result.seconds = time.perf_counter() - started
        self.last = result
        if result.removed_anything:
            log.info("retention: removed %s messages (%s events), %s poll runs, %s dead letters and %s outbox rows older"
                     " than %s (before %s) in %.1f s; %s pages given back", f"{result.messages:,}", f"{result.events:,}",
                     f"{result.poll_runs:,}", f"{result.dead_letters:,}", f"{result.outbox:,}",
                     human_duration(self.keep.total_seconds()), cutoff, result.seconds, f"{result.pages_freed:,}")
        return result

    async def run(self, stop: asyncio.Event, *, first: float = RETENTION_FIRST_S, every: float = RETENTION_EVERY_S) -> None:
        delay = first
        while True:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass  # time to prune
            delay = every
            try:
                await self.run_once()
            except StoreError as exc:
                log.warning("retention: could not prune now (%s); trying again in %s", exc, human_duration(every))
            except Exception:  # a bug must not stop ingest
                log.exception("retention: prune failed")
