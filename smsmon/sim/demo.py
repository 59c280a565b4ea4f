"""`smsmon demo`: the real ingest (writer, listener, pollers) fed by simulated providers on
loopback: the fake Eazita API polled by the real poller, the fake Zeckta Status API, and the
callback sender posting realistic callbacks to the real listener."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any, Callable

from smsmon.config import Settings
from smsmon.errors import StoreError
from smsmon.ingest.listener import CALLBACK_PATH, ListenerConfig
from smsmon.ingest.runtime import Ingest
from smsmon.sim.sender import Mix, send
from smsmon.sim.servers import FakeEazita, FakeZeckta, add_random_eazita
from smsmon.store.backend import exists, open_reader

CALLBACKS_PER_S = 6.0
EAZITA_PER_S = 1.0
FIRST_EAZITA_ID = 700_000
# The demo's own credentials for its fake providers, and intervals short enough to watch.
DEMO_SETTINGS = {
    "eazita.api_key": "demo-eazita-key", "eazita.password": "demo-eazita-password", "eazita.interval": "3s",
    "zeckta.api_key": "demo-zeckta-key", "zeckta.interval": "20s", "zeckta.status_after": "30s",
}


class DemoIngest(Ingest):
    description = "demo: simulated providers"

    def __init__(self, settings: Settings, listener: ListenerConfig, *, seed: int = 1,
                 on_commit: Callable[[int], None] | None = None) -> None:
        super().__init__(settings, listener=listener, on_commit=on_commit)
        self.seed = seed
        self.eazita = FakeEazita(DEMO_SETTINGS["eazita.api_key"], DEMO_SETTINGS["eazita.password"])
        self.zeckta = FakeZeckta(DEMO_SETTINGS["zeckta.api_key"])

    async def start(self) -> None:
        for fake in (self.eazita, self.zeckta):
            await fake.start()
        try:
            await asyncio.to_thread(self._known_to_zeckta)
            self.settings = self.settings.override(
                {**DEMO_SETTINGS, "eazita.url": self.eazita.url, "zeckta.url": self.zeckta.url}, source="demo")
            await super().start()
        except BaseException:
            await self._stop_fakes()
            raise
        self.add_task(asyncio.create_task(self._eazita_traffic()))
        self.add_task(asyncio.create_task(self._callbacks()))

    async def _eazita_traffic(self) -> None:
        rng = random.Random(self.seed)
        n = FIRST_EAZITA_ID
        while not self._stop.is_set():
            add_random_eazita(self.eazita, rng, n)
            n += 1
            await asyncio.sleep(rng.expovariate(EAZITA_PER_S))

    async def _callbacks(self) -> None:
        assert self.listener is not None and self.listener.url and self.listener_config is not None
        token = f"/{self.listener_config.token.reveal()}" if self.listener_config.token else ""
        target = f"{self.listener.url}{CALLBACK_PATH}{token}"
        await send(target, rate=CALLBACKS_PER_S, count=None, seed=self.seed, mix=Mix(), stop=self._stop,
                   on_status=self._zeckta_status)

    def _known_to_zeckta(self) -> None:
        """The fake Status API knows the open Zeckta messages already in the database (a demo on
        a database with history), as the real provider knows its own messages."""
        if not exists(self.settings.db):
            return
        try:
            with open_reader(self.settings.db) as reader:
                statuses = reader.open_statuses("zeckta")
        except StoreError:
            return  # the writer will say what is wrong with the file when it opens it
        self.zeckta.statuses.update({mid: (raw or "").lower() for mid, raw in statuses.items()})

    def _zeckta_status(self, body: bytes) -> None:
        """Keep the fake Status API in step with what the callbacks said."""
        try:
            cb: Any = json.loads(body)
            self.zeckta.statuses[cb["message"]["uuid"]] = cb["eventType"].removeprefix("MESSAGE_").lower()
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # the sender's deliberately malformed bodies: nothing to learn from them

    async def _stop_fakes(self) -> None:
        for fake in (self.eazita, self.zeckta):
            await fake.stop()

    async def stop(self) -> None:
        await super().stop()
        await self._stop_fakes()
