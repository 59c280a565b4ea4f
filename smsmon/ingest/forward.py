"""Forwarding (issue 13), as Stripe CLI's `listen --forward-to` and Hookdeck do: every new
accepted callback (not a duplicate) is relayed to your own application, with the same body and
Content-Type, plus

    X-Smsmon-Event-Id     the callback's eventId (the same on every retry: dedupe on it)
    X-Smsmon-Message-Id   the message, as smsmon names it (zeckta:<uuid>)
    X-Smsmon-Attempt      1 on the first try, then 2, 3, ...

At least once: the writer stores an outbox row in the same transaction as the event
(smsmon.store.outbox), and the row goes only once the target has answered 2xx and that is
committed. A crash, even `kill -9`, leaves the row, and the next run relays it. Acknowledging a
callback never waits for any of this: the forwarder reads the outbox on its own, in this
loop's spare time, a few requests at a time, and not at all while the listener is saturated.

A failure (the target down, slow, redirecting, answering 4xx or 5xx) is classified
(`errors.Failure`), counted, shown in health, logged (with the target's URL masked) and retried
after an exponential backoff with jitter, up to BACKOFF_CAP_S, until the target answers 2xx.
While the target as a whole fails (it cannot be reached, times out or answers 5xx), the
forwarder pauses between rounds as well (up to PAUSE_CAP_S); when it answers again, everything
waiting is due at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import aiohttp

from smsmon import __version__
from smsmon.config import SecretUrl
from smsmon.errors import Failure, StoreError
from smsmon.ingest.committer import Committer
from smsmon.logs import printable
from smsmon.redact import Redactor
from smsmon.store import outbox
from smsmon.store.outbox import Attempt, Pending
from smsmon import database
from smsmon.store.backend import open_reader
from smsmon.store.reader import Reader
from smsmon.timeutil import fmt, now_utc

log = logging.getLogger("smsmon.forward")

BATCH = 64  # rows read at a time
CONCURRENCY = 8  # requests in flight at once: a slow target holds 8 connections, not the listener
IDLE_S = 1.0  # with nothing due, look again this often (and at once when a commit adds rows)
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0  # 5 minutes, as the pollers
# A row claimed by one of several processes (PostgreSQL) is theirs for the request's timeout and
# this long (the settling commit after the answer: milliseconds, seconds while the server is
# busy): if that process dies meanwhile, the row goes out again once the claim runs out.
CLAIM_MARGIN_S = 5.0
PAUSE_CAP_S = 30.0  # while the target is down, it is tried again at least this often: back within 30 s of it
PROBE_ANY = "9999"  # later than any next_at (ISO text): the soonest waiting row, due or not
ANSWER_MAX = 2048  # bytes of the target's answer read (the start of an error page, for the log)
DEPTH_EVERY_S = 1.0  # recount the outbox at most this often
HEADER_MAX = 512
# Acknowledging comes first: while this many callbacks wait for the writer at once, the listener
# is saturated and relaying waits (BUSY_WAIT_S at a time). By Little's law a steady 500
# callbacks/s at the measured p50 of 1.7 ms keeps about 1 waiting; 64 connections of wrk keep ~60.
BUSY_IN_FLIGHT = 16
BUSY_WAIT_S = 0.05
ROUND_GAP_S = 0.05  # after a round that emptied what was due: gather callbacks for this long (fewer, larger rounds)
USER_AGENT = f"smsmon/{__version__}"
_HEADER_SAFE = "-._~:@!$&'()*+,;=/"
TARGET_DOWN = {Failure.FORWARD_CONNECT_ERROR, Failure.FORWARD_TIMEOUT, Failure.FORWARD_SERVER_ERROR}


def backoff(failures: int, rng: random.Random, cap: float = BACKOFF_CAP_S) -> float:
    """Seconds before the next try after `failures` failures in a row: doubling from
    BACKOFF_BASE_S up to `cap`, each with jitter (half to all of it)."""
    return min(cap, BACKOFF_BASE_S * 2 ** min(failures - 1, 30)) * rng.uniform(0.5, 1.0)


def header_value(text: str) -> str:
    """Text as a header can carry it: printable ASCII, percent-encoded otherwise, cut."""
    return quote(text, safe=_HEADER_SAFE)[:HEADER_MAX]


@dataclass
class ForwardHealth:
    """What /healthz, the app's health line and `serve`'s log say about forwarding."""

    target: str  # the URL, masked: its origin only
    waiting: int = 0  # outbox rows
    oldest: str | None = None  # the oldest waiting row's created_at
    delivered: int = 0  # this run
    failed_attempts: int = 0  # this run
    last_ok: str | None = None
    last_error: str | None = None  # "forward_timeout: ...", free of secrets
    last_error_at: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Forwarder:
    def __init__(self, url: SecretUrl, committer: Committer, db_path: str | Path, *, timeout: float,
                 redact: Redactor | None = None, batch: int = BATCH, concurrency: int = CONCURRENCY,
                 rng: random.Random | None = None) -> None:
        self.url = url
        self.committer = committer
        self.db_path = database.parse(db_path)  # an SQLite file or a PostgreSQL URL
        self.timeout = timeout
        self.redact = redact or Redactor(url.parts())
        self.batch, self.concurrency = batch, concurrency
        self.rng = rng or random.Random()
        self.health = ForwardHealth(url.masked())
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self._reader: Reader | None = None
        self.busy: Callable[[], int] | None = None  # how many callbacks wait for the writer (the listener's in_flight)
        self._down = 0  # rounds in a row in which the target as a whole failed
        self._counted_at = -DEPTH_EVERY_S

    async def start(self) -> None:
        """Start relaying in the background; from now on the committer writes outbox rows."""
        self._loop = asyncio.get_running_loop()
        self._reader = open_reader(self.db_path, cache_kib=2048, mmap=False)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=self.concurrency), headers={"User-Agent": USER_AGENT})
        self.committer.forwarding = True
        self.committer.on_forward = self.nudge
        self._task = asyncio.create_task(self._run(), name="smsmon-forwarder")

    def nudge(self) -> None:
        """A commit wrote outbox rows (called on the writer thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        """Stop relaying. Requests in flight are abandoned: their rows stay and go next run."""
        self.committer.on_forward = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ── the loop ───────────────────────────────────────────────────────────────
    async def _run(self) -> None:
        failures = 0
        while True:
            while self.busy is not None and self.busy() >= BUSY_IN_FLIGHT:
                await asyncio.sleep(BUSY_WAIT_S)  # the listener is saturated: acknowledgements first
            try:
                busy = await self._round()
                failures = 0
            except StoreError as exc:  # the database cannot be read or settled now: try again later
                failures += 1
                self._failed(Failure.FORWARD_INTERNAL, f"the outbox cannot be read or updated: {exc}")
                await asyncio.sleep(backoff(failures, self.rng))
                continue
            except Exception as exc:  # a bug of ours: the forwarder carries on
                failures += 1
                log.error("%s: %s", Failure.FORWARD_INTERNAL, self._text(exc), exc_info=exc)
                self._failed(Failure.FORWARD_INTERNAL, self._text(exc))
                await asyncio.sleep(backoff(failures, self.rng))
                continue
            if self._down:
                await asyncio.sleep(backoff(self._down, self.rng, PAUSE_CAP_S))  # the target is down: no hammering
            elif busy == "some":
                await asyncio.sleep(ROUND_GAP_S)
            elif not busy:
                self._wake.clear()
                try:  # asyncio.timeout, not wait_for: in 3.11 wait_for drops a cancellation that comes
                    async with asyncio.timeout(IDLE_S):  # with the wake-up, and stop() then waited for good
                        await self._wake.wait()
                except TimeoutError:
                    pass  # nothing new: look at the outbox again anyway (rows whose backoff ended)

    async def _round(self) -> bool | str:
        """Relay what is due: False when nothing was, "some" when all that was due fitted in
        this round, True when more may be due."""
        assert self._reader is not None
        now = now_utc()
        await self._count(now.timestamp())
        rows = await asyncio.to_thread(self._reader.outbox_due, fmt(now), self.batch)
        due_by = fmt(now)
        if not rows and self._down:
            # The target is down and every row waits out its own backoff (up to 5 minutes): the
            # soonest is sent anyway, as a probe, so that the moment the target is back (within
            # PAUSE_CAP_S) everything waiting goes.
            rows = await asyncio.to_thread(self._reader.outbox_due, PROBE_ANY, 1)
            due_by = PROBE_ANY
        if rows and self.committer.shared:  # other processes relay this outbox too: take these rows first
            until = fmt(now + timedelta(seconds=self.timeout + CLAIM_MARGIN_S))
            mine = await self.committer.run(lambda w: outbox.claim(w, [p.event_id for p in rows], due_by, until))
            rows = [p for p in rows if p.event_id in mine]
        if not rows:
            return False
        self.health.waiting = max(self.health.waiting, len(rows))  # until the next count
        gate = asyncio.Semaphore(self.concurrency)

        async def one(p: Pending) -> tuple[Attempt, Failure | None]:
            async with gate:
                return await self._send(p)

        results = await asyncio.gather(*(one(p) for p in rows))
        attempts = [a for a, _ in results]
        kinds = [k for _, k in results]
        recovered = self._down > 0 and any(a.ok for a in attempts)
        self._down = self._down + 1 if kinds and all(k in TARGET_DOWN for k in kinds) else 0
        at = fmt(now_utc())

        def settle(writer: object) -> None:
            outbox.settle(writer, attempts)  # type: ignore[arg-type]
            if recovered:  # the target answers again: what waits goes now, not when its backoff ends
                outbox.retry_now(writer, at)  # type: ignore[arg-type]

        await self.committer.run(settle)
        ok = sum(a.ok for a in attempts)
        if ok:
            self.health.delivered += ok
            self.health.last_ok = at
            if recovered:
                log.info("forwarding to %s works again; what waits is relayed now", self.health.target)
        self.health.waiting = max(0, self.health.waiting - ok)
        return True if len(rows) == self.batch else "some"

    async def _count(self, now: float) -> None:
        if now - self._counted_at >= DEPTH_EVERY_S:
            assert self._reader is not None
            self._counted_at = now
            self.health.waiting, self.health.oldest = await asyncio.to_thread(self._reader.outbox_depth)

    async def _send(self, p: Pending) -> tuple[Attempt, Failure | None]:
        assert self._session is not None
        headers = {"X-Smsmon-Event-Id": header_value(p.event_key), "X-Smsmon-Message-Id": header_value(p.message_id),
                   "X-Smsmon-Attempt": str(p.attempts + 1)}
        if p.content_type:
            headers["Content-Type"] = p.content_type
        status = None
        try:
            async with self._session.post(self.url.reveal(), data=p.body, headers=headers, allow_redirects=False,
                                          skip_auto_headers=("Content-Type",)) as answer:
                status = answer.status
                start = await answer.content.read(ANSWER_MAX)
            if 200 <= status < 300:
                return Attempt(p.event_id, True, fmt(now_utc()), status), None
            kind = (Failure.FORWARD_REDIRECT if status < 400 else Failure.FORWARD_REJECTED if status < 500
                    else Failure.FORWARD_SERVER_ERROR)
            where = f" to {answer.headers.get('Location', '')[:200]}" if kind is Failure.FORWARD_REDIRECT else ""
            error = f"the target answered {status}{where}: {start.decode('utf-8', 'replace').strip()[:200]}"
        except TimeoutError:
            kind, error = Failure.FORWARD_TIMEOUT, f"no whole answer within {self.timeout:g} s"
        except aiohttp.ClientError as exc:
            kind, error = Failure.FORWARD_CONNECT_ERROR, f"cannot reach it: {self._text(exc)}"
        except OSError as exc:
            kind, error = Failure.FORWARD_CONNECT_ERROR, f"cannot reach it: {self._text(exc)}"
        except Exception as exc:  # a bug of ours: recorded like any failure, and retried
            log.error("%s: %s", Failure.FORWARD_INTERNAL, self._text(exc), exc_info=exc)
            kind, error = Failure.FORWARD_INTERNAL, self._text(exc)
        error = self.redact.cut(printable(error), 300)
        self._failed(kind, error)
        delay = backoff(p.attempts + 1, self.rng)
        log.warning("%s: %s %s; %s waiting, the next try in %.0f s", kind, self.health.target, error,
                    f"{self.health.waiting:,}", delay)
        now = now_utc()
        return Attempt(p.event_id, False, fmt(now), status, f"{kind}: {error}", fmt(now + timedelta(seconds=delay))), kind

    def _failed(self, kind: Failure, error: str) -> None:
        self.health.failed_attempts += 1
        self.health.last_error = f"{kind}: {error}"
        self.health.last_error_at = fmt(now_utc())

    def _text(self, exc: BaseException) -> str:
        return self.redact.cut(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, 300)
