"""`smsmon serve` as a real process: start-up, clean stops, and no acknowledged event lost to SIGKILL
(on an SQLite file and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import aiohttp
import pytest

from typing import Any

from tests.helpers import arg, callback, rows

TOKEN = "serve-token-0123456789abcdef"


class Serve:
    """A `smsmon serve` subprocess whose stderr is collected line by line."""

    def __init__(self, db: Any, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smsmon", "serve", *(["--db", arg(db)] if db is not None else []), *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.01)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def url(self) -> str:
        return self.wait_for(r"listening on (\S+)").group(1)

    def finish(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


async def _post(session: aiohttp.ClientSession, url: str, body: dict) -> int:
    async with session.post(url, data=json.dumps(body)) as r:
        return r.status


def test_serve_prints_where_to_send_callbacks_and_stops_cleanly_on_sigterm(db) -> None:
    serve = Serve(db, "--listen", "127.0.0.1:0", env={"SMSMON_CALLBACK_TOKEN": TOKEN})
    url = serve.url()
    serve.wait_for(r"give Zeckta this callback URL: http://127\.0\.0\.1:\d+/callbacks/zeckta/<28 characters>  \(the token")  # nothing of it (issue 9)

    async def burst() -> list[int]:
        async with aiohttp.ClientSession() as s:
            tasks = [asyncio.create_task(_post(s, f"{url}/callbacks/zeckta/{TOKEN}", callback(uuid=f"m{i}", event_id=f"e{i}")))
                     for i in range(50)]
            done = await asyncio.gather(*tasks[:25])
            serve.proc.send_signal(signal.SIGTERM)  # while the other half may still be in flight
            rest = await asyncio.gather(*tasks[25:], return_exceptions=True)
            return [*done, *[r for r in rest if isinstance(r, int)]]

    statuses = asyncio.run(burst())
    assert serve.finish() == 0
    assert "stopped:" in serve.text and "Traceback" not in serve.text
    assert TOKEN not in serve.text
    [(stored,)] = rows(db, "SELECT count(*) FROM events")
    assert stored >= statuses.count(200) >= 25


def test_serve_stops_on_ctrl_c(tmp_path) -> None:
    serve = Serve(tmp_path / "s.db", "--listen", "127.0.0.1:0")
    serve.url()
    serve.proc.send_signal(signal.SIGINT)
    assert serve.finish() == 0 and "stopped:" in serve.text


def test_no_acknowledged_callback_is_lost_when_serve_is_killed_under_load(db) -> None:
    serve = Serve(db, "--listen", "127.0.0.1:0")
    url = serve.url() + "/callbacks/zeckta"
    acked: list[str] = []

    async def worker(session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while True:
            event_id = f"w{n}-{i}"
            i += 1
            try:
                status = await _post(session, url, callback(uuid=f"m{n}-{i // 3}", event_id=event_id,
                                                            at=f"2026-11-23T10:{(i // 60) % 60:02d}:{i % 60:02d}Z"))
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return
            if status == 200:
                acked.append(event_id)

    async def load() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as s:
            workers = [asyncio.create_task(worker(s, n)) for n in range(32)]
            deadline = time.monotonic() + 30
            while len(acked) < 500 and time.monotonic() < deadline:  # a condition with a deadline, not a sleep
                await asyncio.sleep(0.005)
            serve.proc.kill()  # SIGKILL: no chance to clean up
            await asyncio.wait_for(asyncio.gather(*workers), 30)

    asyncio.run(load())
    serve.finish()
    assert len(acked) >= 500
    stored = {r[0] for r in rows(db, "SELECT event_key FROM events")}
    missing = [e for e in acked if e not in stored]
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"


def test_serve_refuses_a_public_address_without_a_token(tmp_path) -> None:
    serve = Serve(tmp_path / "s.db", "--listen", "0.0.0.0:0")
    assert serve.finish() == 1
    assert serve.text.startswith("error: refusing to listen on 0.0.0.0 without a callback token")
    assert not (tmp_path / "s.db").exists()


def test_serve_says_when_the_port_is_taken(tmp_path) -> None:
    first = Serve(tmp_path / "a.db", "--listen", "127.0.0.1:0")
    port = first.url().rsplit(":", 1)[1]
    second = Serve(tmp_path / "b.db", "--listen", f"127.0.0.1:{port}")
    try:
        assert second.finish() == 1
        assert "cannot listen on 127.0.0.1:" in second.text and "Traceback" not in second.text
    finally:
        first.proc.send_signal(signal.SIGTERM)
        assert first.finish() == 0


@pytest.mark.parametrize("args,message", [
    (["--listen", "nowhere"], "HOST:PORT"),
    (["--allow-from", "10.0.0.0/77"], "not an address or CIDR"),
])
def test_serve_usage_problems_exit_2_and_say_what_is_wrong(tmp_path, args, message) -> None:
    serve = Serve(tmp_path / "s.db", *args)
    assert serve.finish() == 2 and message in serve.text and "Traceback" not in serve.text
