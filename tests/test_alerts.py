"""Alerts (issue 14): the rules, pure; then a real Ingest (listener, writer, the poller against the
fake Eazita) judged on a clock the test moves, notices POSTed to a real local webhook receiver and
given to a real command; and `serve` itself, firing at start."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from smsmon import alerts, config
from smsmon.alerts import Condition, Figures, Rules, Tracker, banner, evaluate
from smsmon.errors import Failure
from smsmon.ingest.alerting import Delivery, webhook_host
from smsmon.ingest.listener import ListenerConfig
from smsmon.ingest.runtime import Ingest
from smsmon.sim.servers import FakeEazita, Step
from smsmon.timeutil import UTC, fmt
from tests.helpers import arg, callback

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET_PATH = "/hook/T000-B000-s3cr3t-w3bh00k-path"


# ── the rules, pure ─────────────────────────────────────────────────────────────
def figures(**kw: Any) -> Figures:
    return Figures(at=T0, window=timedelta(minutes=15), **kw)


def keys(conditions: list[Condition]) -> set[tuple[str, str]]:
    return {c.key for c in conditions if c.active}


def test_every_rule_is_off_until_its_threshold_is_set() -> None:
    assert evaluate(Rules(), figures(finished=100, delivered=0, stale=10**6, failures_by_code={"eazita:101": 10**6})) == []
    assert not Rules().any


@pytest.mark.parametrize("finished,delivered,min_messages,fires", [
    (100, 89, 20, True), (100, 90, 20, False), (19, 0, 20, False), (20, 0, 20, True), (0, 0, 0, False),
])
def test_delivery_rate_needs_its_minimum_volume(finished, delivered, min_messages, fires) -> None:
    rules = Rules(delivery_rate_below=0.9, min_messages=min_messages)
    (c,) = evaluate(rules, figures(finished=finished, delivered=delivered))
    assert c.active is fires
    if finished >= min_messages and finished:
        assert f"{delivered / finished * 100:.0f}%" in c.summary.replace(".0%", "%") and "15m" in c.summary
    else:
        assert "fewer than" in c.summary or not finished


def test_failures_fire_per_code_and_per_network_and_codeless_failures_are_not_a_code() -> None:
    rules = Rules(code_failures_above=3)
    f = figures(failures_by_code={"eazita:101": 4, "eazita:8": 3, "zeckta:": 50}, failures_by_network={"Zong": 4, "": 60, "Jazz": 2})
    got = evaluate(rules, f)
    assert keys(got) == {("code_failures", "eazita:101"), ("network_failures", "Zong")}
    assert "smsmon explain 101 --provider eazita" in next(c.summary for c in got if c.subject == "eazita:101")


def test_stale_silence_and_poll_failures() -> None:
    rules = Rules(stale_above=5, silence_after=timedelta(minutes=30), poll_failures=3)
    f = figures(stale=6, heard_at=T0 - timedelta(minutes=31), last_callback=fmt(T0 - timedelta(minutes=31)),
                poll_streaks={"eazita": 3, "zeckta": 2}, poll_errors={"eazita": "poll_server_error"})
    assert keys(evaluate(rules, f)) == {("stale", ""), ("silence", ""), ("poll_failures", "eazita")}
    quiet = figures(quiet_since=T0 - timedelta(minutes=29))  # listening for 29 minutes, nothing heard yet
    assert keys(evaluate(Rules(silence_after=timedelta(minutes=30)), quiet)) == set()
    never = figures(looked_back=timedelta(minutes=30))  # `smsmon alerts`: none stored in the last 30 minutes
    (c,) = evaluate(Rules(silence_after=timedelta(minutes=30)), never)
    assert c.active and c.summary == "no callback stored in the last 30m"


def test_an_alert_fires_once_and_clears_once_without_storms() -> None:
    rules = Rules(stale_above=5)
    tracker = Tracker()
    history = []
    # above, above, below once (hovering), above, then below for good
    for i, stale in enumerate([6, 7, 5, 9, 4, 3, 2, 1]):
        changes = tracker.update(evaluate(rules, figures(stale=stale)), T0 + timedelta(seconds=15 * i))
        history += [(i, t.state, t.alert.rule) for t in changes]
        if i in (0, 1, 2, 3):
            assert [a.rule for a in tracker.firing()] == ["stale"]
    assert history == [(0, "firing", "stale"), (5, "cleared", "stale")]
    assert tracker.firing() == []


def test_turning_a_rule_off_clears_its_alert_at_once() -> None:
    tracker = Tracker()
    tracker.update(evaluate(Rules(stale_above=1), figures(stale=5)), T0)
    (t,) = tracker.update([], T0 + timedelta(seconds=15), rules_on=[])
    assert (t.state, t.alert.rule) == ("cleared", "stale")


def test_the_banner_names_what_fires() -> None:
    assert banner([]) is None
    tracker = Tracker()
    tracker.update(evaluate(Rules(stale_above=1, delivery_rate_below=0.9, min_messages=1, code_failures_above=1),
                            figures(stale=5, finished=10, delivered=5, failures_by_code={"eazita:101": 5})), T0)
    text = banner(tracker.firing())
    assert text.startswith("3 alerts firing: delivery rate 50% over 10 messages finished in 15m (below 90%) · 5 eazita")
    assert text.endswith("· and 1 more (`smsmon alerts`)") and "smsmon explain" not in text


# ── a real ingest, a real webhook receiver, a real command ──────────────────────
class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class Receiver:
    """A webhook receiver on loopback that fails the first `fail` requests with 503."""

    def __init__(self, fail: int = 0, status: int = 503) -> None:
        self.fail, self.status = fail, status
        self.got: list[dict[str, Any]] = []
        self.attempts = 0
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self.paths.append(request.path)
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=self.status)
        self.got.append(await request.json())
        return web.Response(status=204)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_post(SECRET_PATH, self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}{SECRET_PATH}"
        finally:
            await runner.cleanup()


def writer_script(tmp_path: Path, out: Path, *, exit_code: int = 0, sleep: float = 0) -> str:
    """A real command: appends its stdin (one JSON line) and its SMSMON_ALERT_STATE to `out`."""
    script = tmp_path / "notify.py"
    script.write_text(
        "import os, sys, time\n"
        f"time.sleep({sleep})\n"
        "data = sys.stdin.read()\n"
        f"open({str(out)!r}, 'a').write(os.environ['SMSMON_ALERT_STATE'] + ' ' + data)\n"
        f"sys.stderr.write('notify: done\\n'); sys.exit({exit_code})\n")
    return f"{sys.executable} {script}"


async def until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def notices(out: Path) -> list[tuple[str, str, str]]:
    lines = out.read_text().splitlines() if out.exists() else []
    return [(state, (d := json.loads(rest))["alert"], d["state"]) for state, rest in (line.split(" ", 1) for line in lines)]


@asynccontextmanager
async def live(db: Any, clock: Clock, env: dict[str, str], **ingest: Any) -> AsyncIterator[tuple[Ingest, str]]:
    settings = config.load(env={"SMSMON_DB": arg(db), **env})
    ing = Ingest(settings, listener=ListenerConfig(port=0), clock=clock, **ingest)
    await ing.start()
    stop = asyncio.Event()
    assert ing.operations is not None
    worker = asyncio.create_task(ing.operations.delivery.run(stop)) if ing.operations.delivery else None
    try:
        yield ing, ing.health.listening + "/callbacks/zeckta"
    finally:
        stop.set()
        if worker:
            await worker
        await ing.stop()


async def test_rate_and_silence_fire_and_clear_once_each_by_webhook_and_command(db, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    receiver = Receiver(fail=2)  # the receiver is down twice first: the notice is retried
    out = tmp_path / "notices.txt"
    clock = Clock(datetime.now(UTC))
    async with receiver.running() as hook:
        env = {"SMSMON_ALERTS_DELIVERY_RATE_BELOW": "90%", "SMSMON_ALERTS_MIN_MESSAGES": "5",
               "SMSMON_ALERTS_SILENCE_AFTER": "10m", "SMSMON_ALERTS_WEBHOOK": hook,
               "SMSMON_ALERTS_COMMAND": writer_script(tmp_path, out)}
        async with live(db, clock, env) as (ing, url), aiohttp.ClientSession() as s:
            ing.operations.delivery.backoff = 0.01  # the real backoff, in hundredths
            for i in range(10):
                event = "MESSAGE_FAILED" if i < 6 else "MESSAGE_DELIVERED"
                async with s.post(url, json=callback(event, uuid=f"m{i}", at=clock.now - timedelta(minutes=1))) as r:
                    assert r.status == 200
            changes = await ing.alerts.evaluate()
            assert [(t.state, t.alert.rule) for t in changes] == [("firing", "delivery_rate")]
            assert ing.alerts.firing()[0].summary.startswith("delivery rate 40% over 10 messages finished in 15m")
            await until(lambda: len(receiver.got) == 1 and len(notices(out)) == 1, "the first notice")
            assert receiver.attempts == 3
            clock.advance(minutes=1)
            assert await ing.alerts.evaluate() == []  # still firing: nothing more is sent
            clock.advance(minutes=20)  # the messages leave the window, and nothing has been heard for 21 minutes
            assert [(t.state, t.alert.rule) for t in await ing.alerts.evaluate()] == [("firing", "silence")]
            clock.advance(seconds=15)
            assert [(t.state, t.alert.rule) for t in await ing.alerts.evaluate()] == [("cleared", "delivery_rate")]
            async with s.post(url, json=callback("MESSAGE_SENT", uuid="late", at=clock.now)) as r:
                assert r.status == 200
            for _ in range(2):
                clock.advance(seconds=15)
                changes = await ing.alerts.evaluate()
            assert [(t.state, t.alert.rule) for t in changes] == [("cleared", "silence")]
            assert ing.alerts.firing() == []
            await until(lambda: len(receiver.got) == 4 and len(notices(out)) == 4, "four notices")
    expected = [("delivery_rate", "firing"), ("silence", "firing"), ("delivery_rate", "cleared"), ("silence", "cleared")]
    assert [(n["alert"], n["state"]) for n in receiver.got] == expected
    assert [(a, st) for _, a, st in notices(out)] == expected and all(env == st for env, _, st in notices(out))
    first = receiver.got[0]
    assert first["value"] == 0.4 and first["threshold"] == 0.9 and first["window"] == "15m" and first["min_messages"] == 5
    assert first["figures"]["finished"] == 10 and first["setting"] == "alerts.delivery_rate_below"
    assert receiver.got[1]["summary"].startswith("no callback for 21m")
    # the webhook's secret path is in no line of smsmon's; its host is, where a retry is reported
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("smsmon"))
    assert SECRET_PATH.split("/")[-1] not in ours and f"alert webhook {webhook_host(hook)}: HTTP 503" in ours


async def test_code_network_and_poll_failures_from_the_real_poller(db, tmp_path) -> None:
    fake = FakeEazita("k-123456", "p-123456")
    await fake.start()
    for i in range(4):
        fake.add(800 + i, [Step(0, "SUBMIT"), Step(0, "NOT_DELIVERED", "101")], network="Jazz")
    fake.add(900, [Step(0, "SUBMIT"), Step(0, "DELIVERED")], network="Zong")
    clock = Clock(datetime.now(UTC) + timedelta(minutes=1))
    env = {"SMSMON_EAZITA_API_KEY": "k-123456", "SMSMON_EAZITA_PASSWORD": "p-123456", "SMSMON_EAZITA_URL": fake.url,
           "SMSMON_ALERTS_CODE_FAILURES_ABOVE": "3", "SMSMON_ALERTS_POLL_FAILURES": "3"}
    try:
        async with live(db, clock, env) as (ing, _):
            await ing.poll_once()
            changes = await ing.alerts.evaluate()
            assert {(t.state, t.alert.rule, t.alert.subject) for t in changes} == {
                ("firing", "code_failures", "eazita:101"), ("firing", "network_failures", "Jazz")}
            fake.fail("http", count=3, arg=500)
            for _ in range(3):
                (o,) = await ing.poll_once()
                assert not o.ok
            changes = await ing.alerts.evaluate()
            assert [(t.state, t.alert.rule, t.alert.subject) for t in changes] == [("firing", "poll_failures", "eazita")]
            assert "poll_server_error" in changes[0].alert.summary
            (o,) = await ing.poll_once()
            assert o.ok
            clock.advance(minutes=20)  # and the failures leave the window
            await ing.alerts.evaluate()
            changes = await ing.alerts.evaluate()
            assert {(t.state, t.alert.rule) for t in changes} == {
                ("cleared", "poll_failures"), ("cleared", "code_failures"), ("cleared", "network_failures")}
    finally:
        await fake.stop()


# ── delivery when the receiver or the command misbehaves ───────────────────────
def body(state: str = "firing") -> dict[str, Any]:
    return {"alert": "stale", "state": state, "summary": "12 stale messages"}


async def test_a_webhook_down_throughout_is_given_up_after_its_retries_and_logged_without_its_secret(caplog) -> None:
    receiver = Receiver(fail=100)
    async with receiver.running() as hook:
        d = Delivery(webhook=config.Secret(hook), attempts=4, backoff=0.01)
        assert await d.post(body()) is False
    assert receiver.attempts == 4
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("smsmon"))
    assert f"{Failure.ALERT_WEBHOOK_FAILED}: the alert webhook {webhook_host(hook)} failed (HTTP 503) after 4" in ours
    assert "s3cr3t" not in ours


async def test_a_webhook_that_refuses_is_not_asked_again() -> None:
    receiver = Receiver(fail=100, status=404)
    async with receiver.running() as hook:
        assert await Delivery(webhook=config.Secret(hook), backoff=0.01).post(body()) is False
    assert receiver.attempts == 1


async def test_an_unreachable_webhook_is_retried_then_given_up(caplog) -> None:
    d = Delivery(webhook=config.Secret("http://127.0.0.1:9/hook/s3cr3t"), attempts=3, backoff=0.01)
    assert await d.post(body()) is False
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("smsmon"))
    assert "cannot reach it (ConnectError)" in ours and "s3cr3t" not in ours


async def test_a_failing_or_hanging_command_is_logged_and_stopped(tmp_path, caplog) -> None:
    out = tmp_path / "o.txt"
    failing = Delivery(command=writer_script(tmp_path, out, exit_code=3))
    assert await failing.run_command(body()) is False
    assert f"{Failure.ALERT_COMMAND_FAILED}: the alert command failed: python" in caplog.text.replace(Path(sys.executable).name, "python")
    assert "exited 3: notify: done" in caplog.text and notices(out) == [("firing", "stale", "firing")]
    hanging = Delivery(command=writer_script(tmp_path, out, sleep=30), command_timeout=0.5)
    started = time.monotonic()
    assert await hanging.run_command(body()) is False
    assert time.monotonic() - started < 5 and "did not finish within 0.5 s (killed)" in caplog.text
    missing = Delivery(command="/no/such/notifier --flag")
    assert await missing.run_command(body()) is False and "cannot run notifier" in caplog.text


def test_a_command_that_cannot_be_split_is_a_config_error(tmp_path) -> None:
    from smsmon.errors import ConfigError
    from smsmon.ingest.operations import delivery_from

    with pytest.raises(ConfigError, match=r"alerts.command \(env SMSMON_ALERTS_COMMAND\): No closing quotation"):
        delivery_from(config.load(env={"SMSMON_ALERTS_COMMAND": "notify 'unclosed"}))


def test_alert_settings_are_read_and_checked() -> None:
    s = config.load(env={"SMSMON_ALERTS_DELIVERY_RATE_BELOW": "0.95", "SMSMON_ALERTS_WINDOW": "1h",
                         "SMSMON_ALERTS_MIN_MESSAGES": "50", "SMSMON_ALERTS_WEBHOOK": "https://hooks.example.com/x/y/zzzzzz"})
    assert (s.alerts.delivery_rate_below, s.alerts.window, s.alerts.min_messages) == (0.95, timedelta(hours=1), 50)
    assert "zzzzzz" not in str(s.shown()) and "https://hooks.example.com/x/y/zzzzzz" in s.secrets
    for env, message in (("SMSMON_ALERTS_DELIVERY_RATE_BELOW", "not a share between 0 and 1"),
                         ("SMSMON_ALERTS_MIN_MESSAGES", "is not a whole number"), ("SMSMON_ALERTS_WEBHOOK", "is not http or https")):
        with pytest.raises(config.ConfigError, match=message):
            config.load(env={env: "150%" if "RATE" in env else "-3" if "MIN" in env else "ftp://x"})


# ── serve itself ────────────────────────────────────────────────────────────────
def test_serve_fires_an_alert_true_at_start_through_its_command_and_shows_it_in_metrics(tmp_path) -> None:
    """A database with stale messages: `serve` judges the rules as it starts, so a restart
    re-announces what is still true."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from smsmon.bench.ingest import smsmon_server
    from smsmon.sim.generate import fill

    db = tmp_path / "s.db"
    fill(db, messages=400, seed=2, days=8)
    out = tmp_path / "notices.txt"
    env = {**os.environ, "SMSMON_ALERTS_STALE_ABOVE": "0", "SMSMON_ALERTS_COMMAND": writer_script(tmp_path, out)}
    server = smsmon_server(db, env=env)
    try:
        deadline = time.monotonic() + 20
        while not notices(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(a, st) for _, a, st in notices(out)] == [("stale", "firing")]
        text = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
        found = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text)
                 for s in fam.samples}
        assert found[("smsmon_alerts_firing", (("rule", "stale"), ("subject", "")))] == 1
        assert found[("smsmon_stale_messages", ())] > 0
    finally:
        assert server.stop() == 0
    assert any("alert stale:" in line for line in server.lines)
