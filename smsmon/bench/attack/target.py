"""The target of the listener attacks: a real `smsmon serve` subprocess with a callback token,
its own database and log, and the open-file limit of a common machine; and what the attacks
read back from its database (through the store's reader, as any other part of smsmon)."""

from __future__ import annotations

import json
import os
import random
import resource
import secrets
import time
from pathlib import Path
from typing import Any

from smsmon.bench.attack.rawhttp import Answer, exchange, request
from smsmon.bench.ingest import Server, smsmon_server
from smsmon.providers import zeckta
from smsmon.store.reader import Reader
from smsmon.timeutil import now_utc


class Target:
    """A `smsmon serve` with a callback token, its own database and log, and `open_files` as its
    open-file limit; the attacks talk to it with raw HTTP."""

    def __init__(self, folder: Path, open_files: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.db, self.log, config = folder / "attack.db", folder / "serve.log", folder / "config.toml"
        config.write_text("")  # not the user's: no pollers, no surprises
        self.token = secrets.token_urlsafe(24)
        self.path = f"/callbacks/zeckta/{self.token}"

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        env = {**os.environ, "SMSMON_CALLBACK_TOKEN": self.token}
        self.server: Server = smsmon_server(self.db, "--no-poll", "--config", str(config), log=self.log, env=env,
                                            preexec_fn=limit)
        hostport = self.server.url.split("://", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)

    def memory_mb(self) -> tuple[float, float]:
        """Resident memory now and at its peak, from /proc (0 where there is none)."""
        found = {"VmRSS": 0.0, "VmHWM": 0.0}
        try:
            for line in Path(f"/proc/{self.server.proc.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in found:
                    found[key] = int(value.split()[0]) / 1024
        except OSError:
            pass  # not Linux, or the process has gone: no figure
        return found["VmRSS"], found["VmHWM"]

    async def send(self, data: bytes, timeout: float = 10.0) -> Answer:
        return await exchange(self.host, self.port, data, timeout=timeout)

    async def health(self, with_token: bool = True) -> dict[str, Any]:
        a = await self.send(request("GET", f"/healthz/{self.token}" if with_token else "/healthz"))
        return json.loads(a.body) if a.status == 200 else {"status_code": a.status}

    def stop(self) -> int:
        return self.server.stop()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def callback(rng: random.Random, **over: Any) -> dict[str, Any]:
    body = {"eventId": f"fz-{rng.getrandbits(64):016x}",
            "eventType": rng.choice(["MESSAGE_SUBMITTED", "MESSAGE_SENT", "MESSAGE_DELIVERED", "MESSAGE_FAILED"]),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{rng.randrange(10**9):09d}Z",
            "message": {"uuid": f"{rng.getrandbits(128):032x}", "src": "ACME", "dest": f"+23324{rng.randrange(10**7):07d}",
                        "segments": 1, "units": 1, "attempts": 1, "cost": 0.0025}}
    body.update(over)
    return body


def snapshot(db: Path) -> tuple[int, int]:
    """The newest events.id and the newest dead letter's id."""
    with Reader(db) as reader:
        newest = reader.dead_letters(limit=1)
        return reader.latest_event_id(), newest[0]["id"] if newest else 0


def identity(body: bytes) -> tuple[str, str]:
    """The (message id, event key) smsmon stores a callback body under, by its own parser."""
    event = zeckta.parse_callback(body, received_at=now_utc())
    return event.message_id, event.event_key


def unstored(db: Path, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (message id, event key) pairs not in the database."""
    with Reader(db) as reader:
        found = reader.stored_keys(pairs)
    return [p for p in pairs if p not in found]


def ms(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000
