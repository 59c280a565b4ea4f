"""Ingest inside another program's asyncio loop (the app's): the writer, the listener, the
configured pollers, and for the demo the simulated providers. No UI code here."""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

from smsmon.ingest.committer import Committer
from smsmon.ingest.listener import CALLBACK_PATH, Listener, ListenerConfig
from smsmon.ingest.poller import PollOutcome, run_poller
from smsmon.ingest.runtime import Scheduled, build_pollers

log = logging.getLogger("smsmon.live")


@dataclass
class Health:
    listening: str | None = None
    callback_url: str | None = None
    last_callback: str | None = None
    polls: dict[str, PollOutcome] = field(default_factory=dict)
    pollers: list[str] = field(default_factory=list)
    error: str | None = None


class LiveIngest:
    def __init__(self, settings: Any, listener_config: ListenerConfig, *, on_data: Callable[[int], None]) -> None:
        self.settings = settings
        self.listener_config = listener_config
        self.on_data = on_data
        self.committer = Committer(settings.db_path, on_commit=on_data)
        self.listener: Listener | None = None
        self.scheduled: list[Scheduled] = []
        self.health = Health()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        await asyncio.to_thread(self.committer.start)
        self.listener = Listener(self.committer, self.listener_config)
        await self.listener.start()
        self.health.listening = self.listener.url
        self.health.callback_url = self.listener.callback_url
        self.scheduled = await build_pollers(self.settings, self.committer, self._stack)
        self.health.pollers = [s.poller.provider for s in self.scheduled]
        for s in self.scheduled:
            self._tasks.append(asyncio.create_task(run_poller(s.poller, self.committer, s.interval, self._stop,
                                                              on_outcome=self._polled)))

    def _polled(self, outcome: PollOutcome) -> None:
        self.health.polls[outcome.provider] = outcome

    def last_callback(self) -> str | None:
        return self.listener.last_callback_at if self.listener else None

    async def refresh(self, message_id: str) -> PollOutcome | None:
        """Ask the provider about one message now, where a poller is configured."""
        provider, _, pid = message_id.partition(":")
        for s in self.scheduled:
            if s.poller.provider == provider:
                outcome = await s.poller.refresh(pid)
                await self.committer.poll_run(outcome.run_row())
                return outcome
        return None

    def can_refresh(self, message_id: str) -> bool:
        return message_id.partition(":")[0] in self.health.pollers

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.listener:
            await self.listener.stop()
        await self._stack.aclose()
        await asyncio.to_thread(self.committer.stop)


class DemoIngest(LiveIngest):
    """The real listener, writer and pollers, fed by simulated providers on loopback: the fake
    Eazita API (polled by the real poller), the fake Zeckta Status API, and the callback sender
    posting to the real listener."""

    CALLBACKS_PER_S = 6.0
    EAZITA_PER_S = 1.0

    def __init__(self, settings: Any, listener_config: ListenerConfig, *, on_data: Callable[[int], None], seed: int = 1) -> None:
        self.seed = seed
        self._fakes: list[Any] = []
        super().__init__(settings, listener_config, on_data=on_data)

    async def start(self) -> None:
        from smsmon.sim.servers import FakeEazita, FakeZeckta

        key, password, bearer = "demo-eazita-key", "demo-eazita-password", "demo-zeckta-key"
        self.eazita = FakeEazita(key, password)
        self.zeckta = FakeZeckta(bearer)
        for fake in (self.eazita, self.zeckta):
            await fake.start()
            self._fakes.append(fake)
        await asyncio.to_thread(self._known_to_zeckta)
        self.settings = replace_settings(self.settings, eazita_url=self.eazita.url, eazita_api_key=key,
                                         eazita_password=password, eazita_interval="3s", zeckta_url=self.zeckta.url,
                                         zeckta_api_key=bearer, zeckta_interval="20s", zeckta_status_after="30s")
        await super().start()
        self._tasks.append(asyncio.create_task(self._eazita_traffic()))
        self._tasks.append(asyncio.create_task(self._callbacks()))

    async def _eazita_traffic(self) -> None:
        from smsmon.sim.servers import add_random_eazita

        rng = random.Random(self.seed)
        n = 700_000
        while not self._stop.is_set():
            add_random_eazita(self.eazita, rng, n)
            n += 1
            await asyncio.sleep(rng.expovariate(self.EAZITA_PER_S))

    async def _callbacks(self) -> None:
        from smsmon.sim.sender import Mix, send

        assert self.listener and self.listener.url
        token = f"/{self.listener_config.token}" if self.listener_config.token else ""
        target = f"{self.listener.url}{CALLBACK_PATH}{token}"
        await send(target, rate=self.CALLBACKS_PER_S, count=None, seed=self.seed, mix=Mix(), stop=self._stop,
                   on_status=self._zeckta_status)

    def _known_to_zeckta(self) -> None:
        """The fake Status API knows the open Zeckta messages already in the database (a demo on
        a database with history), as the real provider knows its own messages."""
        from smsmon.errors import StoreError
        from smsmon.store.schema import open_readonly

        if not self.settings.db_path.exists():
            return
        try:
            conn = open_readonly(self.settings.db_path)
        except StoreError:
            return
        try:
            for mid, raw in conn.execute("SELECT provider_message_id, raw_status FROM messages INDEXED BY ix_messages_open"
                                         " WHERE is_final = 0 AND provider = 'zeckta'"):
                self.zeckta.statuses[mid] = (raw or "").lower()
        finally:
            conn.close()

    def _zeckta_status(self, body: bytes) -> None:
        """Keep the fake Status API in step with what the callbacks said."""
        import json

        try:
            cb = json.loads(body)
            self.zeckta.statuses[cb["message"]["uuid"]] = cb["eventType"].removeprefix("MESSAGE_").lower()
        except (ValueError, KeyError, TypeError, AttributeError):
            pass

    async def stop(self) -> None:
        await super().stop()
        for fake in self._fakes:
            await fake.stop()


def replace_settings(settings: Any, **values: Any) -> Any:
    from smsmon.config import Settings

    return Settings({**settings.values, **values}, dict(settings.sources, **{k: "demo" for k in values}))


