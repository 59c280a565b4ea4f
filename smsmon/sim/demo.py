"""`smsmon demo`: the real ingest (writer, listener, pollers) fed by simulated providers on
loopback: the fake Eazita API polled by the real poller, the fake Zeckta Status API, and the
callback sender posting realistic callbacks to the real listener.

The demo never writes into real data (issue 13): it runs on a fresh temporary database, deleted
when it ends, unless `--db` names one on its own command line, and then only a new or empty
file or one marked as a demo's (smsmon.store.origin); SMSMON_DB and the config file's `db` are
not used. Every event it stores says it is simulated (source `sim:...`), and it forwards
nothing unless told to on its command line."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from smsmon.config import Settings
from smsmon.errors import SmsmonError, StoreError
from smsmon.ingest.listener import CALLBACK_PATH, ListenerConfig
from smsmon.ingest.runtime import Ingest
from smsmon.sim.sender import Mix, send
from smsmon.sim.servers import FakeEazita, FakeZeckta, add_random_eazita
from smsmon.store import origin
from smsmon.store.backend import exists, inspect_origin, open_reader

CALLBACKS_PER_S = 6.0
EAZITA_PER_S = 1.0
FIRST_EAZITA_ID = 700_000
# The demo's own credentials for its fake providers, and intervals short enough to watch.
DEMO_SETTINGS = {
    "eazita.api_key": "demo-eazita-key", "eazita.password": "demo-eazita-password", "eazita.interval": "3s",
    "zeckta.api_key": "demo-zeckta-key", "zeckta.interval": "20s", "zeckta.status_after": "30s",
}


def refuse_real_data(path: Path) -> None:
    """SmsmonError, with what to do, unless the file is new, empty or a demo's."""
    found = inspect_origin(path)
    if found.kind == "real":
        raise SmsmonError(f"{path} holds data that is not from a demo ({found.describe()}): the demo never writes into "
                          "real data. Leave out --db for a temporary database, or give --db a new file")


TEMPORARY = "demo (temporary)"  # the source of the db setting when the demo made its own


@contextmanager
def demo_database(settings: Settings, say: Callable[[str], None] = lambda _: None) -> Iterator[Settings]:
    """The settings the demo runs with: the database given with --db on the command line when it
    may be written (else SmsmonError), or a fresh temporary one, deleted when the demo ends."""
    if settings.sources.get("db") == "flag":
        refuse_real_data(settings.db)
        yield settings
        say(f"the demo's database is {settings.db}: `smsmon browse --db {settings.db}` to look again")
        return
    folder = Path(tempfile.mkdtemp(prefix="smsmon-demo-"))
    db = folder / "demo.db"
    say(f"demo: a temporary database at {db}, deleted when the demo ends (--db FILE keeps one)")
    try:
        yield settings.override({"db": db}, source=TEMPORARY)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        say(f"demo: deleted its temporary database {db}")


class DemoIngest(Ingest):
    description = "demo: simulated providers"
    simulated = True

    def __init__(self, settings: Settings, listener: ListenerConfig, *, seed: int = 1,
                 on_commit: Callable[[int], None] | None = None) -> None:
        if settings.forward.url is not None and settings.sources.get("forward.url") != "flag":
            settings = settings.override({"forward.url": None}, source="demo: forwards only when told on its command line")
        super().__init__(settings, listener=listener, on_commit=on_commit)
        self.seed = seed
        self.eazita = FakeEazita(DEMO_SETTINGS["eazita.api_key"], DEMO_SETTINGS["eazita.password"])
        self.zeckta = FakeZeckta(DEMO_SETTINGS["zeckta.api_key"])

    def preflight(self) -> None:
        """Refuse a database that holds real data (whatever chose it), then the usual checks."""
        refuse_real_data(self.settings.db)
        super().preflight()

    async def start(self) -> None:
        for fake in (self.eazita, self.zeckta):
            await fake.start()
        try:
            await asyncio.to_thread(self._known_to_zeckta)
            self.settings = self.settings.override(
                {**DEMO_SETTINGS, "eazita.url": self.eazita.url, "zeckta.url": self.zeckta.url}, source="demo")
            await super().start()
            assert self.committer is not None
            await self.committer.run(origin.mark_demo)
        except BaseException:
            await self._stop_fakes()
            await super().stop()
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
