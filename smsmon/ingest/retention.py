"""Retention in the background (issue 14): with the `retention` setting, `serve` and `watch` prune
what is older than it shortly after they start and then every RETENTION_EVERY_S.

Every batch (store/prune.py) runs on the committer's writer thread, between two commits of
callbacks, so no second connection competes for the write lock: a callback waits for at most one
batch. Then the freed pages go back to the file system a step at a time, the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Callable

from smsmon.errors import StoreError
from smsmon.ingest.committer import Committer
from smsmon.store.prune import BATCH, PruneResult, run_batch, run_others, step_vacuum
from smsmon.timeutil import fmt, human_duration, now_utc

log = logging.getLogger("smsmon.retention")

RETENTION_FIRST_S = 30.0  # after start: let the first callbacks and polls in before the first prune
RETENTION_EVERY_S = 3600.0  # hourly: retention is in days, and a prune of one hour's worth takes a few batches


class Retention:
    def __init__(self, committer: Committer, keep: timedelta, *, clock: Callable[[], datetime] = now_utc,
                 batch: int = BATCH, on_pruned: Callable[[int, int], None] | None = None) -> None:
        self.committer = committer
        self.keep = keep
        self.clock = clock
        self.batch = batch
        self.on_pruned = on_pruned
        self.last: PruneResult | None = None

    async def run_once(self) -> PruneResult:
        """Prune what is older than `keep` now, in batches, then give the space back. Raises StoreError."""
        cutoff = fmt(self.clock() - self.keep)
        result = PruneResult(cutoff)
        started = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            done = await self.committer.call(lambda w: run_batch(w, cutoff, self.batch))
            result.longest_batch_s = max(result.longest_batch_s, time.perf_counter() - t0)
            if not done.messages:
                break
            if not result.batches:
                log.info("retention: removing messages silent since before %s (older than %s), %s at a time", cutoff,
                         human_duration(self.keep.total_seconds()), f"{self.batch:,}")
            result.batches += 1
            result.messages, result.events, result.outbox = (result.messages + done.messages, result.events + done.events,
                                                             result.outbox + done.outbox)
            if self.on_pruned:
                self.on_pruned(done.messages, done.events)
        runs, letters, outbox = await self.committer.call(lambda w: run_others(w, cutoff))
        result.poll_runs, result.dead_letters, result.outbox = runs, letters, result.outbox + outbox
        if result.removed_anything:
            while step := await self.committer.call(step_vacuum):
                result.pages_freed += step
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
