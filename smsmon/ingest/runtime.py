"""The ingest of one process: the writer thread, the callback listener and the configured
pollers, started and stopped together, in whatever asyncio loop runs them (`serve`'s own, or
the app's under `watch` and `demo`). `smsmon poll` runs it without a listener.

    ingest = Ingest(settings, listener=ListenerConfig(...))
    await ingest.start()          # the writer, then the listener, then the pollers' clients
    ingest.run_pollers()          # each configured poller every interval, in the background
    ...                           # ingest.health says how it goes; ingest.refresh(id) asks now
    await ingest.stop()           # pollers, then the listener (requests in flight finish), then the writer
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import httpx

from smsmon import __version__
from smsmon.config import Settings
from smsmon.errors import SmsmonError
from smsmon.ingest.alerting import Evaluator
from smsmon.ingest.committer import Committer
from smsmon.ingest.forward import ForwardHealth, Forwarder
from smsmon.ingest.listener import Listener, ListenerConfig
from smsmon.ingest.operations import Operations
from smsmon.ingest.poller import EazitaPoller, Poller, PollOutcome, ZecktaStatusPoller, run_poller
from smsmon.redact import Redactor
from smsmon.database import is_postgres
from smsmon.store.backend import open_reader
from smsmon.store.reader import Reader
from smsmon.store.schema import CHECK_BUDGET_S, check_integrity, check_writable
from smsmon.timeutil import now_utc

log = logging.getLogger("smsmon.ingest")

USER_AGENT = f"smsmon/{__version__}"
CONNECT_TIMEOUT_S = 10.0
NOT_CONFIGURED = ("no poller is configured: set SMSMON_EAZITA_API_KEY and SMSMON_EAZITA_PASSWORD for Eazita, "
                  "SMSMON_ZECKTA_API_KEY for Zeckta's Status API (or the [eazita] / [zeckta] sections of the config file)")


@dataclass
class Scheduled:
    poller: Poller
    interval: float
    base_url: str


@dataclass
class Health:
    """How this process's ingest is doing, for the app's health line."""

    listening: str | None = None
    callback_url: str | None = None
    pollers: list[str] = field(default_factory=list)
    polls: dict[str, PollOutcome] = field(default_factory=dict)  # provider -> its latest outcome
    forward: ForwardHealth | None = None  # with --forward-to: the outbox's depth, the last error (issue 13)


class Ingest:
    description = "live"  # how the app names what it shows
    simulated = False  # the demo's: every event stored says it is simulated (smsmon.store.origin)

    def __init__(self, settings: Settings, *, listener: ListenerConfig | None = None, pollers: bool = True,
                 only: str | None = None, busy_timeout: float = 5.0,
                 on_commit: Callable[[int], None] | None = None, clock: Callable[[], datetime] = now_utc) -> None:
        """`pollers=False` runs no poller; `only` runs only that provider's. `on_commit` is told
        the newest events.id after each commit, on the writer thread (the app's nudge); it may
        be set until `start()`. `clock` is what alerts and retention take for now (tests move it)."""
        self.settings = settings
        self.listener_config = listener
        self.with_pollers = pollers
        self.only = only
        self.busy_timeout = busy_timeout
        self.on_commit = on_commit
        self.clock = clock
        self.operations: Operations | None = None  # retention, metrics, alerts (with a listener: serve, watch)
        self.committer: Committer | None = None
        self.listener: Listener | None = None
        self.forwarder: Forwarder | None = None
        self.scheduled: list[Scheduled] = []
        self.health = Health()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._clients = AsyncExitStack()
        self._reader: Reader | None = None
        self._checked = False

    @property
    def configured_pollers(self) -> list[str]:
        """The providers whose credentials are set (and that `only` allows)."""
        s = self.settings
        configured = [p for p, ok in (("eazita", s.eazita.configured), ("zeckta", s.zeckta.configured)) if ok]
        return [p for p in configured if self.only in (None, p)] if self.with_pollers else []

    def preflight(self) -> None:
        """Refuse a database that cannot be written, or is damaged, with one clear line, before
        anything starts (the CLI calls this before it draws the app). Checks as much of a large
        file as CHECK_BUDGET_S allows and says so."""
        if self._checked:
            return
        if is_postgres(self.settings.db):  # a server: the writer's connection says what is wrong, if anything
            self._checked = True
            return
        check_writable(self.settings.db)
        if not check_integrity(self.settings.db):
            log.info("checked %s for damage for %g s and found none; the rest of it was not checked (`sqlite3 %s "
                     "\"PRAGMA integrity_check\"` checks all of it)", self.settings.db, CHECK_BUDGET_S, self.settings.db)
        self._checked = True

    async def start(self) -> None:
        """Open the database, bind the listener, build the pollers. Raises StoreError or
        ListenerError (everything started so far is stopped again)."""
        await asyncio.to_thread(self.preflight)
        self.committer = Committer(self.settings.db, busy_timeout=self.busy_timeout, on_commit=self.on_commit)
        self.committer.simulated = self.simulated
        await asyncio.to_thread(self.committer.start)
        try:
            if self.settings.forward.url is not None and self.listener_config is not None:
                self.forwarder = Forwarder(self.settings.forward.url, self.committer, self.settings.db,
                                           timeout=self.settings.forward.timeout.total_seconds(),
                                           redact=Redactor(self.settings.secrets))
                await self.forwarder.start()
                self.health.forward = self.forwarder.health
            if self.listener_config is not None:
                self.listener = Listener(self.committer, self.listener_config)
                self.listener.redact = Redactor(self.settings.secrets)
                if self.forwarder is not None:
                    self.listener.health_extra = lambda: {"forward": self.forwarder.health.to_dict() if self.forwarder else None}
                    self.forwarder.busy = lambda: self.listener.in_flight if self.listener else 0
                self.operations = Operations(self.settings, self.committer, self.listener, clock=self.clock,
                                             forward_depth=self.forward_depth)
                self.health.listening = await self.listener.start()
                self.health.callback_url = self.listener.callback_url
            self._reader = open_reader(self.settings.db, window=self.settings.watch_window, region=self.settings.default_region)
            self.scheduled = await self._build_pollers()
            self.health.pollers = [s.poller.provider for s in self.scheduled]
        except BaseException:
            await self.stop()
            raise

    async def _build_pollers(self) -> list[Scheduled]:
        s = self.settings
        redact = Redactor(s.secrets)
        out: list[Scheduled] = []
        assert self.committer is not None and self._reader is not None

        async def client(base_url: str, timeout: float) -> httpx.AsyncClient:
            return await self._clients.enter_async_context(httpx.AsyncClient(
                base_url=base_url, timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S),
                headers={"User-Agent": USER_AGENT}))

        providers = self.configured_pollers
        if "eazita" in providers:
            c = await client(s.eazita.url, s.eazita.timeout.total_seconds())
            out.append(Scheduled(EazitaPoller(c, self.committer, self._reader, redact, s.watch_window,
                                              api_key=s.eazita.api_key, password=s.eazita.password,  # type: ignore[arg-type]
                                              tz=s.eazita.timezone, region=s.default_region),
                                 s.eazita.interval.total_seconds(), s.eazita.url))
        if "zeckta" in providers:
            c = await client(s.zeckta.url, s.zeckta.timeout.total_seconds())
            out.append(Scheduled(ZecktaStatusPoller(c, self.committer, self._reader, redact, s.watch_window,
                                                    api_key=s.zeckta.api_key,  # type: ignore[arg-type]
                                                    status_after=s.zeckta.status_after),
                                 s.zeckta.interval.total_seconds(), s.zeckta.url))
        return out

    def run_pollers(self) -> None:
        """Run every poller at its interval in the background until `stop()`."""
        assert self.committer is not None
        for s in self.scheduled:
            self._tasks.append(asyncio.create_task(run_poller(s.poller, self.committer, s.interval, self._stop,
                                                              on_outcome=self._polled)))
        if self.operations is not None:
            self._tasks += self.operations.start(self._stop)

    def add_task(self, task: asyncio.Task) -> None:
        """Another background task that lives and stops with the ingest (the demo's traffic)."""
        self._tasks.append(task)

    def _polled(self, outcome: PollOutcome) -> None:
        self.health.polls[outcome.provider] = outcome
        if self.operations is not None:
            self.operations.polled(outcome)

    @property
    def alerts(self) -> Evaluator | None:
        """The alert evaluator (`.firing()`: the alerts firing now), while a listener runs."""
        return self.operations.alerts if self.operations is not None else None

    def forward_depth(self) -> int | None:
        """Outbox rows waiting to be forwarded (the metrics gauge), or None where nothing forwards:
        the forwarder's count, read from the outbox after each pass (ForwardHealth.waiting)."""
        return self.forwarder.health.waiting if self.forwarder is not None else None

    async def poll_once(self) -> list[PollOutcome]:
        """One cycle of each poller, side by side, each recorded in poll_runs."""
        assert self.committer is not None
        outcomes = list(await asyncio.gather(*(s.poller.poll_once() for s in self.scheduled)))
        for o in outcomes:
            await self.committer.poll_run(o.run_row())
            self._polled(o)
        return outcomes

    def can_refresh(self, message_id: str) -> bool:
        return message_id.partition(":")[0] in self.health.pollers

    async def refresh(self, message_id: str) -> PollOutcome:
        """Ask the provider about one message (`provider:id`) now, and record the poll."""
        assert self.committer is not None
        provider, _, pid = message_id.partition(":")
        for s in self.scheduled:
            if s.poller.provider == provider:
                outcome = await s.poller.refresh(pid)
                await self.committer.poll_run(outcome.run_row())
                self._polled(outcome)
                return outcome
        raise SmsmonError(f"{provider} is not configured: {NOT_CONFIGURED.split(': ', 1)[1]}")

    async def replay_dead_letters(self, ids: tuple[int, ...] | None = None, since: str | None = None) -> Any:
        """Replay dead letters through this ingest's writer (the app's dead-letters screen): a
        smsmon.ingest.replay.ReplayResult."""
        from smsmon.ingest.replay import replay_live

        assert self.committer is not None
        return await replay_live(self.committer, self.settings.db, ids=ids, since=since, region=self.settings.default_region)

    @property
    def store_error(self) -> str | None:
        """Why the database cannot take writes now (locked, disk full, the file gone), or None."""
        return self.committer.last_error if self.committer is not None else None

    @property
    def last_callback(self) -> str | None:
        return self.listener.last_callback_at if self.listener else None

    async def stop(self) -> None:
        """Stop the pollers, then the listener (requests in flight are answered), then commit
        what is queued and close the database. Safe to call twice."""
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.listener:
            await self.listener.stop()
            self.listener = None
        if self.forwarder is not None:
            await self.forwarder.stop()  # what it had in flight stays in the outbox for the next run
            self.forwarder = None
        await self._clients.aclose()
        if self.operations is not None:
            await self.operations.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.committer is not None:
            await asyncio.to_thread(self.committer.stop)

    async def __aenter__(self) -> "Ingest":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
