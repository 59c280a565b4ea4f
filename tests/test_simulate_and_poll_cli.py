"""`smsmon poll`, `smsmon simulate`, `smsmon config` and `serve` with pollers, as users run them."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import signal
import sqlite3
import threading
from typing import Any

import pytest
from click.testing import CliRunner

from smsmon.cli import cli
from smsmon.sim.sender import Mix, plan, send
from smsmon.sim.servers import FakeEazita, FakeZeckta, Step
from tests.test_listener import serving
from tests.test_serve import Serve

KEY, PASSWORD = "cli-key-abcdef123456", "cli-pass-654321"


class InThread:
    """A fake provider on its own event loop in a thread, so any client can reach it."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.url = self.call(server.start())

    def call(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def fake_eazita():
    fake = FakeEazita(KEY, PASSWORD)
    fake.add(41, [Step(0, "SUBMIT"), Step(0, "PENDING"), Step(0, "DELIVERED")])
    fake.add(42, [Step(0, "SUBMIT"), Step(0, "FAILED", "103")])
    running = InThread(fake)
    yield running
    running.close()


def env_for(url: str, **extra: str) -> dict[str, str]:
    return {"SMSMON_EAZITA_URL": url, "SMSMON_EAZITA_API_KEY": KEY, "SMSMON_EAZITA_PASSWORD": PASSWORD,
            "SMSMON_CONFIG": "", **extra}


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


# ── poll ────────────────────────────────────────────────────────────────────────
def test_poll_once_stores_and_summarizes(tmp_path, fake_eazita) -> None:
    db = tmp_path / "p.db"
    r = run("poll", "--once", "--db", str(db), env=env_for(fake_eazita.url))
    assert r.exit_code == 0, r.stderr
    assert "eazita: ok, 2 rows, 2 new events" in r.stderr
    again = run("poll", "--once", "--json", "--db", str(db), env=env_for(fake_eazita.url))
    (outcome,) = json.loads(again.stdout)
    assert outcome["ok"] and outcome["new_events"] == 0 and outcome["rows_seen"] == 2
    stats = json.loads(run("stats", "--json", "--db", str(db)).stdout)
    assert stats["outcomes"]["DELIVERED"] == 1 and stats["outcomes"]["NOT_DELIVERED"] == 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*), sum(ok) FROM poll_runs").fetchone() == (2, 2)


def test_poll_one_message_on_demand(tmp_path, fake_eazita) -> None:
    db = tmp_path / "p.db"
    run("poll", "--once", "--db", str(db), env=env_for(fake_eazita.url))
    fake_eazita.server.messages[41].steps.append(Step(0, "DELIVERED", "0"))  # unchanged: nothing new
    r = run("poll", "--message", "eazita:42", "--json", "--db", str(db), env=env_for(fake_eazita.url))
    (outcome,) = json.loads(r.stdout)
    assert outcome["ok"] and outcome["rows_seen"] == 1 and outcome["new_events"] == 0
    assert fake_eazita.server.requests[-1]["messageid"] == "42"
    missing = run("poll", "--message", "nope", "--db", str(db), env=env_for(fake_eazita.url))
    assert missing.exit_code == 1 and "no message matches 'nope'" in missing.stderr


def test_poll_once_failure_explains_and_exits_1(tmp_path, fake_eazita) -> None:
    r = run("poll", "--once", "--db", str(tmp_path / "p.db"), env=env_for(fake_eazita.url, SMSMON_EAZITA_PASSWORD="nope-wrong"))
    assert r.exit_code == 1
    assert "poll_api_error" in r.stderr and "Invalid or disabled credentials" in r.stderr and "Eazita dashboard" in r.stderr
    assert "nope-wrong" not in r.stderr and KEY not in r.stderr


def test_poll_without_credentials_says_what_to_set_and_makes_no_database(tmp_path) -> None:
    r = run("poll", "--once", "--db", str(tmp_path / "p.db"), env={"SMSMON_CONFIG": "", "SMSMON_EAZITA_API_KEY": "",
                                                                   "SMSMON_ZECKTA_API_KEY": ""})
    assert r.exit_code == 1 and "SMSMON_EAZITA_API_KEY" in r.stderr
    assert not (tmp_path / "p.db").exists()


def test_serve_runs_the_configured_pollers(tmp_path, fake_eazita) -> None:
    zk = FakeZeckta("zk-key-123456789")
    zthread = InThread(zk)
    try:
        serve = Serve(tmp_path / "s.db", "--listen", "127.0.0.1:0",
                      env=env_for(fake_eazita.url, SMSMON_EAZITA_INTERVAL="1s", SMSMON_ZECKTA_URL=zthread.url,
                                  SMSMON_ZECKTA_API_KEY="zk-key-123456789"))
        serve.wait_for(r"polling eazita every 1 s")
        serve.wait_for(r"polling zeckta every 60 s")
        serve.wait_for(r"eazita: ok, 2 rows, 2 new events")
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.finish() == 0
        assert KEY not in serve.text and PASSWORD not in serve.text and "zk-key-123456789" not in serve.text
    finally:
        zthread.close()
    assert sqlite3.connect(tmp_path / "s.db").execute("SELECT count(*) FROM messages").fetchone() == (2,)


# ── config ──────────────────────────────────────────────────────────────────────
def test_config_shows_sources_and_masks_secrets(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[eazita]\ninterval = "45s"\n')
    r = run("config", "--config", str(cfg), "--json", env={"SMSMON_EAZITA_PASSWORD": "a-long-secret-value", "SMSMON_CONFIG": ""})
    shown = {row["setting"]: row for row in json.loads(r.stdout)}
    assert shown["eazita.interval"] == {"setting": "eazita.interval", "value": "45s", "source": f"file {cfg}"}
    assert shown["eazita.password"]["value"] == "<19 characters>" and shown["eazita.password"]["source"] == "env SMSMON_EAZITA_PASSWORD"
    assert "a-long-secret-value" not in r.stdout
    text = run("config", "--config", str(cfg), env={"SMSMON_CONFIG": ""}).stdout
    assert "eazita.interval" in text and "45s" in text and "default" in text


# ── simulate ────────────────────────────────────────────────────────────────────
def test_the_plan_is_deterministic_and_has_the_mix_asked_for() -> None:
    a = [(p.body, p.kind) for p in itertools.islice(plan(7, 50, Mix()), 2000)]
    b = [(p.body, p.kind) for p in itertools.islice(plan(7, 50, Mix()), 2000)]
    c = [(p.body, p.kind) for p in itertools.islice(plan(8, 50, Mix()), 2000)]
    assert a == b != c
    kinds = collections.Counter(k for _, k in a)
    assert kinds["duplicate"] and kinds["late"] and kinds["malformed"] and kinds["callback"] > 1500
    clean = collections.Counter(p.kind for p in itertools.islice(plan(7, 50, Mix(0, 0, 0, 0)), 2000))
    assert set(clean) == {"callback"}


def test_a_finite_plan_completes_every_lifecycle() -> None:
    sent = list(plan(3, 20, Mix(0, 0, 0, 0), total=300))
    finals = {json.loads(p.body)["message"]["uuid"] for p in sent
              if json.loads(p.body)["eventType"] not in ("MESSAGE_SUBMITTED", "MESSAGE_SENT")}
    uuids = {json.loads(p.body)["message"]["uuid"] for p in sent}
    assert len(sent) >= 300 and finals == uuids


async def test_simulated_traffic_into_the_real_listener(db_path) -> None:
    async with serving(db_path) as (_, url):
        report = await send(url + "/callbacks/zeckta", rate=400, count=400, seed=5, mix=Mix(0.05, 0.05, 0.02, 0.03))

    assert report.sent == 400 and report.errors == 0
    assert report.answers[200] + report.answers[400] == 400
    assert report.answers[400] == report.kinds["malformed"] > 0
    assert report.duplicates_acknowledged == report.kinds["duplicate"] > 0
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == report.answers[200] - report.duplicates_acknowledged
    assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == report.kinds["malformed"]
    flagged = conn.execute("SELECT count(*) FROM messages WHERE flags LIKE '%late_event%' OR flags LIKE '%regression_ignored%'").fetchone()[0]
    assert flagged > 0  # out-of-order arrivals were recorded as such


async def test_simulate_command(db_path) -> None:
    async with serving(db_path) as (_, url):
        r = await asyncio.to_thread(
            run, "simulate", "--target", url + "/callbacks/zeckta", "--count", "60", "--rate", "200", "--json")

    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["sent"] == 60 and "sent 60 callbacks" in r.stderr


def test_simulate_to_nowhere_fails_clearly() -> None:
    r = run("simulate", "--target", "http://127.0.0.1:1/callbacks/zeckta", "--count", "2")
    assert r.exit_code == 1 and "could not reach" in r.stderr and "smsmon serve" in r.stderr


@pytest.mark.parametrize("args,message", [(["--duplicates", "1.5"], "between 0 and 1"), (["--rate", "0"], "0.1")])
def test_simulate_rejects_bad_numbers(args, message) -> None:
    r = run("simulate", "--count", "1", *args)
    assert r.exit_code in (1, 2) and message in r.stderr
