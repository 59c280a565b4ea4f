"""Forwarding (issue 13): every new accepted callback relayed to the user's own application, at
least once, from an outbox written with the event, surviving restarts and kill -9, and never
slowing the acknowledgement. The target is a real aiohttp application on loopback that fails,
is slow, is down and comes back; the listener, the writer and the database (SQLite and PostgreSQL) are the real ones."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from smsmon import config
from smsmon.cli import cli
from smsmon.ingest import forward
from smsmon.ingest.listener import ListenerConfig
from smsmon.ingest.runtime import Ingest
from smsmon.store.backend import open_reader, open_writer
from tests.helpers import arg, callback, rows, stored_bytes
from tests.test_serve import Serve

SECRET = "hook-secret-7f3a9c21"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def eventually(condition: Callable[[], Any], timeout: float = 15.0, what: str | Callable[[], str] = "") -> Any:
    """Wait for `condition()` to be true, looking every 20 ms, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what() if callable(what) else what or condition}")


class Target:
    """The user's application: records what it receives; `mode` says how it answers: ok, fail
    (500), slow (longer than the forwarder waits), echo (400 that repeats the URL it was called at)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mode = "ok"
        self.delay = 0.0  # seconds before every answer
        self.refuse: set[str] = set()  # event ids answered 422 (a payload the application rejects)
        self.received: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sms/{SECRET}?key={SECRET}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        mode = self.mode  # as recorded: a switch while this request waits applies to the next one
        self.received.append({"headers": dict(request.headers), "body": body, "path": request.path_qs, "mode": mode})
        event_id = request.headers.get("X-Smsmon-Event-Id", "")
        await asyncio.sleep(self.delay)
        if mode == "slow":
            await asyncio.sleep(5)
        if mode == "fail":
            return web.Response(status=500, text="database down")
        if mode == "echo":
            return web.Response(status=400, text=f"no route for {request.url}")
        if event_id in self.refuse:
            return web.Response(status=422, text="cannot take this one")
        return web.Response(status=204)

    async def start(self) -> "Target":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
            self.runner = None

    def delivered(self) -> list[str]:
        """Event ids answered 2xx."""
        return [r["headers"]["X-Smsmon-Event-Id"] for r in self.received
                if r["mode"] == "ok" and r["headers"]["X-Smsmon-Event-Id"] not in self.refuse]


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoffs of tens of milliseconds instead of seconds: the same code, shorter waits."""
    monkeypatch.setattr(forward, "BACKOFF_BASE_S", 0.02)
    monkeypatch.setattr(forward, "PAUSE_CAP_S", 0.2)
    monkeypatch.setattr(forward, "IDLE_S", 0.1)


@asynccontextmanager
async def live(db: Any, target_url: str | None, *, timeout: str = "1s") -> AsyncIterator[tuple[Ingest, str]]:
    settings = config.load(env={}, config_file=os.devnull,
                           flags={"db": arg(db), "forward.url": target_url, "forward.timeout": timeout})
    ingest = Ingest(settings, listener=ListenerConfig(host="127.0.0.1", port=0), pollers=False)
    await ingest.start()
    try:
        assert ingest.health.listening
        yield ingest, ingest.health.listening + "/callbacks/zeckta"
    finally:
        await ingest.stop()


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any] | bytes, **kw: Any) -> tuple[int, float]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    started = time.perf_counter()
    async with session.post(url, data=data, headers={"Content-Type": "application/json; charset=utf-8"}, **kw) as r:
        await r.read()
        return r.status, time.perf_counter() - started


def outbox(db: Any) -> list[tuple]:
    return rows(db, "SELECT event_id, message_id, attempts, last_error FROM forward_outbox ORDER BY event_id")


# ── what is relayed ─────────────────────────────────────────────────────────────
async def test_new_callbacks_are_relayed_with_their_body_content_type_and_ids_and_duplicates_are_not(db) -> None:
    target = await Target().start()
    try:
        async with live(db, target.url) as (ingest, url), aiohttp.ClientSession() as s:
            bodies = [json.dumps(callback("MESSAGE_SENT", uuid=f"m{i}", event_id=f"e{i}")).encode() for i in range(5)]
            bodies[0] = bodies[0].replace(b", ", b",\n  ")  # as received, whitespace and all
            for b in bodies:
                assert (await post(s, url, b))[0] == 200
            assert (await post(s, url, bodies[1]))[0] == 200  # a duplicate: acknowledged, not relayed
            await eventually(lambda: len(target.received) == 5 and not outbox(db), what="five relayed")
            assert ingest.health.forward is not None and ingest.health.forward.delivered == 5
    finally:
        await target.stop()
    by_id = {r["headers"]["X-Smsmon-Event-Id"]: r for r in target.received}
    assert sorted(by_id) == [f"e{i}" for i in range(5)]
    for i, body in enumerate(bodies):
        got = by_id[f"e{i}"]
        assert got["body"] == body
        assert got["headers"]["Content-Type"] == "application/json; charset=utf-8"
        assert got["headers"]["X-Smsmon-Message-Id"] == f"zeckta:m{i}"
        assert got["headers"]["X-Smsmon-Attempt"] == "1"
        assert got["path"] == f"/hooks/sms/{SECRET}?key={SECRET}"


async def test_without_forwarding_no_outbox_rows_are_written(db) -> None:
    async with live(db, None) as (ingest, url), aiohttp.ClientSession() as s:
        assert (await post(s, url, callback(event_id="a")))[0] == 200
        assert ingest.health.forward is None
    assert rows(db, "SELECT count(*) FROM events") == [(1,)] and outbox(db) == []


# ── failures: retried until 2xx, nothing lost, nothing slowed ───────────────────
async def test_a_failing_target_is_retried_with_backoff_until_it_answers_2xx(db) -> None:
    target = await Target().start()
    target.mode = "fail"
    try:
        async with live(db, target.url) as (ingest, url), aiohttp.ClientSession() as s:
            for i in range(3):
                assert (await post(s, url, callback(uuid=f"m{i}", event_id=f"e{i}")))[0] == 200
            await eventually(lambda: len(target.received) >= 6, what="retries")
            health = ingest.health.forward
            assert health is not None and health.last_error and health.last_error.startswith("forward_server_error: ")
            assert "answered 500: database down" in health.last_error
            assert all(r[3] and r[3].startswith("forward_server_error") for r in outbox(db))
            target.mode = "ok"
            await eventually(lambda: not outbox(db), what="the outbox drained once the target works")
            assert sorted(set(target.delivered())) == ["e0", "e1", "e2"]
            attempts = [int(r["headers"]["X-Smsmon-Attempt"]) for r in target.received if r["mode"] == "ok"]
            assert max(attempts) >= 2  # the same callback, tried again: its number says so
            await eventually(lambda: ingest.health.forward.delivered == 3, what="counted once settled")
    finally:
        await target.stop()


async def test_a_payload_the_target_refuses_is_retried_without_holding_up_the_others(db) -> None:
    target = await Target().start()
    target.refuse = {"poison"}
    try:
        async with live(db, target.url) as (_, url), aiohttp.ClientSession() as s:
            assert (await post(s, url, callback(uuid="p", event_id="poison")))[0] == 200
            for i in range(3):
                assert (await post(s, url, callback(uuid=f"m{i}", event_id=f"e{i}")))[0] == 200
            await eventually(lambda: set(target.delivered()) == {"e0", "e1", "e2"}, what="the good ones delivered")
            await eventually(lambda: sum(r["headers"]["X-Smsmon-Event-Id"] == "poison" for r in target.received) >= 3,
                             what="the refused one tried again")
            (row,) = outbox(db)
            assert row[1] == "zeckta:p" and row[2] >= 2 and row[3].startswith("forward_rejected: the target answered 422")
    finally:
        await target.stop()


async def test_a_slow_target_never_slows_the_acknowledgement(db) -> None:
    target = await Target().start()
    target.mode = "slow"
    try:
        async with live(db, target.url, timeout="0.5s") as (ingest, url), aiohttp.ClientSession() as s:
            answers = [await post(s, url, callback(uuid=f"m{i}", event_id=f"e{i}")) for i in range(40)]
            assert all(status == 200 for status, _ in answers)
            # Each answer waits for its commit (a few ms), never for the target's 5 s.
            assert max(seconds for _, seconds in answers) < 0.5, answers
            await eventually(lambda: (ingest.health.forward.last_error or "").startswith("forward_timeout"))
            assert len(outbox(db)) == 40
            target.mode = "ok"
            await eventually(lambda: not outbox(db), timeout=30, what="all relayed once the target is quick")
            assert set(target.delivered()) == {f"e{i}" for i in range(40)}
    finally:
        await target.stop()


async def test_a_target_that_is_down_gets_everything_once_it_is_back(db) -> None:
    target = Target()  # not started: nothing listens on its port
    async with live(db, target.url) as (ingest, url), aiohttp.ClientSession() as s:
        for i in range(10):
            assert (await post(s, url, callback(uuid=f"m{i}", event_id=f"e{i}")))[0] == 200
        await eventually(lambda: (ingest.health.forward.last_error or "").startswith("forward_connect_error"))
        await eventually(lambda: ingest.health.forward.waiting == 10, what="the depth counted")
        async with s.get(url.replace("/callbacks/zeckta", "/healthz")) as r:
            health = (await r.json())["forward"]
        assert health["waiting"] == 10 and health["last_error"].startswith("forward_connect_error: cannot reach it")
        await target.start()
        try:
            await eventually(lambda: not outbox(db), timeout=30, what="delivered after the target came back")
            assert set(target.delivered()) == {f"e{i}" for i in range(10)}
        finally:
            await target.stop()


async def test_a_target_back_is_found_within_the_pause_cap_though_every_row_waits_out_a_long_backoff(db, monkeypatch) -> None:
    monkeypatch.setattr(forward, "PAUSE_CAP_S", 0.5)  # 30 s in use; the rule is the same
    target = Target()  # not started: nothing listens on its port
    async with live(db, target.url) as (ingest, url), aiohttp.ClientSession() as s:
        for i in range(3):
            assert (await post(s, url, callback(uuid=f"m{i}", event_id=f"e{i}")))[0] == 200
        await eventually(lambda: (ingest.health.forward.last_error or "").startswith("forward_connect_error"))
        with open_writer(db) as w:  # as after many failures: each row's own next try minutes away
            w.run(lambda w: w.conn.execute("UPDATE forward_outbox SET next_at = '2999-01-01T00:00:00.000000Z'"))
        await target.start()
        try:
            await eventually(lambda: not outbox(db), timeout=15, what="delivered once the target was back")
            assert set(target.delivered()) == {f"e{i}" for i in range(3)}
        finally:
            await target.stop()


async def test_the_outbox_survives_a_restart(db) -> None:
    target = Target()
    async with live(db, target.url) as (_, url), aiohttp.ClientSession() as s:
        for i in range(4):
            assert (await post(s, url, callback(uuid=f"m{i}", event_id=f"e{i}")))[0] == 200
        await eventually(lambda: any(r[3] for r in outbox(db)), what="a try failed (the target is down)")
    assert len(outbox(db)) == 4  # stopped with the target down: kept
    shown = CliRunner().invoke(cli, ["stats", "--db", arg(db)], catch_exceptions=False).stdout
    assert "Forwarding: 4 callbacks wait to be relayed" in shown and "last error at" in shown and "forward_connect_error" in shown
    as_json = json.loads(CliRunner().invoke(cli, ["stats", "--json", "--db", arg(db)], catch_exceptions=False).stdout)
    assert as_json["forwarding"]["waiting"] == 4 and as_json["forwarding"]["last_error"]["error"].startswith("forward_connect_error")
    await target.start()
    try:
        async with live(db, target.url):
            await eventually(lambda: not outbox(db), what="relayed by the next run")
        assert set(target.delivered()) == {f"e{i}" for i in range(4)}
    finally:
        await target.stop()


async def test_the_target_url_never_shows_anywhere(db, caplog: pytest.LogCaptureFixture) -> None:
    """The URL may hold a credential (here in the path and the query): logs, /healthz, the
    database and `forward status` show its origin only, even when the target echoes the URL."""
    caplog.set_level(logging.INFO, logger="smsmon")
    target = await Target().start()
    target.mode = "echo"
    try:
        async with live(db, target.url) as (ingest, url), aiohttp.ClientSession() as s:
            assert (await post(s, url, callback(event_id="e1")))[0] == 200
            await eventually(lambda: (ingest.health.forward.last_error or "").startswith("forward_rejected"))
            assert SECRET in target.received[0]["path"]  # it was sent there, and its answer repeats it
            async with s.get(url.replace("/callbacks/zeckta", "/healthz")) as r:
                health = await r.text()
            await target.stop()
            await eventually(lambda: (ingest.health.forward.last_error or "").startswith("forward_connect_error"))
            assert ingest.health.forward.target == f"http://127.0.0.1:{target.port}/…"
    finally:
        await target.stop()
    status = subprocess.run([sys.executable, "-m", "smsmon", "forward", "status", "--db", arg(db)],
                            capture_output=True, text=True, env={**os.environ, "SMSMON_FORWARD_URL": target.url})
    assert status.returncode == 0 and "1 callback wait" in status.stdout and "forward_connect_error" in status.stdout
    files = stored_bytes(db)
    for text in (caplog.text, health, ingest.health.forward.last_error or "", status.stdout + status.stderr):
        assert SECRET not in text
    assert SECRET.encode() not in files
    assert "forward_rejected" in caplog.text and "****" in caplog.text


# ── kill -9 ─────────────────────────────────────────────────────────────────────
async def test_every_accepted_callback_reaches_the_target_across_kill_9(db: Any) -> None:
    """`serve --forward-to` is killed with SIGKILL while callbacks pour in and the target is
    slow to answer, then restarted: every callback answered 200 reaches the target at least
    once, each with its X-Smsmon-Event-Id."""
    target = await Target().start()
    target.delay = 0.03  # slower than callbacks arrive: a backlog in the outbox when the kill comes
    accepted: list[str] = []
    backlog: list[int] = []
    sent = 0

    async def pour(session: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> None:
        nonlocal sent
        while not stop.is_set():
            sent += 1
            event_id = f"k{sent}"
            try:
                status, _ = await post(session, url, callback(uuid=f"m{sent % 50}", event_id=event_id,
                                                                 # a time of its own: the same message, status and time is a duplicate
                                                                 at=f"2026-11-23T{10 + sent // 3600:02d}:{sent // 60 % 60:02d}:{sent % 60:02d}Z"))
            except aiohttp.ClientError:
                continue  # killed mid-request: not acknowledged, so Zeckta would send it again
            if status == 200:
                accepted.append(event_id)

    port = free_port()
    args = ("--listen", f"127.0.0.1:{port}", "--forward-to", target.url, "--no-poll")
    # On PostgreSQL a killed serve leaves the rows it had claimed to the next one once the claim
    # (the request's timeout and 5 s) runs out: a short timeout keeps that wait short here.
    QUICK = {"SMSMON_FORWARD_TIMEOUT": "2s"}
    url = f"http://127.0.0.1:{port}/callbacks/zeckta"
    started: list[Serve] = []
    try:
        async with aiohttp.ClientSession() as s:
            for run in range(2):
                serve = Serve(db, *args, env=QUICK)
                started.append(serve)
                await asyncio.to_thread(serve.url)
                stop = asyncio.Event()
                senders = [asyncio.create_task(pour(s, url, stop)) for _ in range(4)]
                await eventually(lambda: len(target.received) >= 40 * (run + 1),
                                 what=lambda: f"relaying under load: {len(target.received)} received\n" + "\n".join(serve.lines[-20:]))
                serve.proc.send_signal(signal.SIGKILL)  # mid-stream: requests in flight, relays in flight
                stop.set()
                await asyncio.gather(*senders)
                serve.finish()
                backlog.append(rows(db, "SELECT count(*) FROM forward_outbox")[0][0])
            serve = Serve(db, *args, env=QUICK)  # and once more, to drain what the last kill left
            started.append(serve)
            await asyncio.to_thread(serve.url)
            await eventually(lambda: set(accepted) <= set(target.delivered()) and not outbox(db), timeout=60,
                             what=lambda: f"not relayed: {sorted(set(accepted) - set(target.delivered()))[:20]}, outbox "
                                          f"{outbox(db)[:5]}\n" + "\n".join(serve.lines[-30:]))
            serve.proc.send_signal(signal.SIGTERM)
            assert serve.finish() == 0
    finally:
        for p in started:
            if p.proc.poll() is None:
                p.proc.kill()  # a failed assertion leaves no server behind
                p.proc.wait(10)
        await target.stop()
    assert len(accepted) > 80 and all(n > 0 for n in backlog), (len(accepted), backlog)  # the kills left work behind
    assert all(r["headers"]["X-Smsmon-Event-Id"].startswith("k") for r in target.received)
    assert rows(db, "SELECT count(*) FROM forward_outbox") == [(0,)]
    with open_reader(db) as reader:
        assert reader.latest_event_id() >= len(accepted)


# ── two serves on one PostgreSQL ────────────────────────────────────────────────
@pytest.mark.postgres
async def test_two_serves_on_one_postgresql_relay_each_callback_once(pg_server) -> None:
    """Both forwarders read the one outbox: a row is claimed (in a transaction) before it is
    sent, so while the target is healthy each callback reaches it once, whichever serve took it."""
    from tests.conftest import schema_url

    db = schema_url(pg_server)
    target = await Target().start()
    target.delay = 0.02  # rows wait a little: both forwarders find them due
    try:
        async with live(db, target.url) as (_, url_a), live(db, target.url) as (_, url_b), aiohttp.ClientSession() as s:
            for i in range(60):
                body = callback(uuid=f"m{i}", event_id=f"e{i}")
                assert (await post(s, url_a if i % 2 else url_b, body))[0] == 200
            await eventually(lambda: not outbox(db) and len(target.received) >= 60, timeout=30,
                             what=lambda: f"{len(target.received)} received, outbox {outbox(db)[:3]}")
        ids = [r["headers"]["X-Smsmon-Event-Id"] for r in target.received]
        assert sorted(ids) == sorted(f"e{i}" for i in range(60)), sorted(k for k, n in Counter(ids).items() if n > 1)
    finally:
        await target.stop()


async def test_stopping_while_the_idle_forwarder_is_woken_still_stops(db) -> None:
    """Once seen in CI: a commit woke the idle forwarder in the same turn of the loop as the
    ingest stopped it. asyncio.wait_for (3.11) then returned the wake-up and dropped the
    cancellation, the forwarder went on for good, and `stop` (Ctrl+C on serve) waited forever."""
    async with live(db, "http://127.0.0.1:9/") as (ingest, _):
        await asyncio.sleep(0.3)  # the forwarder has looked at the empty outbox and idles, waiting to be woken
        assert ingest.forwarder is not None
        ingest.forwarder._wake.set()
        async with asyncio.timeout(10):
            await ingest.stop()  # the same turn of the loop as the wake-up
