"""The demo and the simulator never write into real data, and everything simulated says so
(issue 13). Real files, the real writer, the real demo ingest (listener, pollers, fakes)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from smsmon import config
from smsmon.cli import cli
from smsmon.errors import NotSmsmonDatabase, SmsmonError
from smsmon.ingest.listener import ListenerConfig
from smsmon.sim.demo import DemoIngest, demo_database, refuse_real_data
from smsmon.sim.generate import fill
from smsmon.sim.sender import Mix, send
from smsmon.store.origin import inspect
from smsmon.store.writer import Writer
from tests.helpers import callback, rows, run_in_terminal, zevent
from tests.test_listener import serving


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner(env=env).invoke(cli, list(args), catch_exceptions=False)


def digest(path: Path) -> str:
    """The database's bytes and its write-ahead log's (the -shm index is a reader's scratch space)."""
    return hashlib.sha256(b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())).hexdigest()


@pytest.fixture
def real_db(tmp_path: Path) -> Path:
    """A database of real traffic: a callback, as `serve` stores it."""
    path = tmp_path / "prod.db"
    with Writer(path) as w:
        w.apply([zevent("MESSAGE_DELIVERED", uuid="real-1", event_id="r1")])
    return path


def settings_for(db: Path, **env: str):
    return config.load(env=env, config_file=os.devnull, flags={"db": str(db)})


# ── what may be written ─────────────────────────────────────────────────────────
def test_real_data_is_refused_and_new_empty_or_demo_files_are_not(tmp_path: Path, real_db: Path) -> None:
    with pytest.raises(SmsmonError, match=r"prod.db holds data that is not from a demo \(1 messages\): the demo never"):
        refuse_real_data(real_db)
    empty = tmp_path / "empty.db"
    empty.touch()
    refuse_real_data(empty)
    refuse_real_data(tmp_path / "new.db")
    Writer(tmp_path / "schema-only.db").close()  # an smsmon database with nothing in it
    refuse_real_data(tmp_path / "schema-only.db")
    fill(tmp_path / "generated.db", messages=20)
    assert inspect(tmp_path / "generated.db").kind == "demo"
    refuse_real_data(tmp_path / "generated.db")
    (tmp_path / "notes.db").write_text("not a database")
    with pytest.raises(NotSmsmonDatabase):
        refuse_real_data(tmp_path / "notes.db")


async def test_the_demo_ingest_refuses_real_data_and_writes_nothing(real_db: Path) -> None:
    before = digest(real_db)
    ingest = DemoIngest(settings_for(real_db), ListenerConfig(port=0))
    with pytest.raises(SmsmonError, match="not from a demo"):
        await ingest.start()
    assert digest(real_db) == before


async def test_the_demo_marks_its_database_and_every_event_says_it_is_simulated(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    settings = settings_for(db, SMSMON_FORWARD_URL="http://127.0.0.1:9/my-app")  # from the environment: not used
    ingest = DemoIngest(settings, ListenerConfig(port=0))
    await ingest.start()
    try:
        ingest.run_pollers()
        assert ingest.forwarder is None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {s for (s,) in rows(db, "SELECT DISTINCT source FROM events")} < {
                "sim:callback", "sim:poll"}:
            await asyncio.sleep(0.1)
    finally:
        await ingest.stop()
    sources = {s for (s,) in rows(db, "SELECT DISTINCT source FROM events")}
    assert {"sim:callback", "sim:poll"} <= sources and all(s.startswith("sim:") for s in sources), sources
    assert inspect(db).kind == "demo" and rows(db, "SELECT count(*) FROM forward_outbox") == [(0,)]
    refuse_real_data(db)  # a demo may run on it again


def test_the_demo_database_is_temporary_unless_given_on_the_command_line(tmp_path: Path, real_db: Path) -> None:
    said: list[str] = []
    env_settings = config.load(env={"SMSMON_DB": str(real_db)}, config_file=os.devnull)
    with demo_database(env_settings, said.append) as s:
        temporary = s.db
        assert temporary != real_db and temporary.parent.exists() and s.sources["db"] == "demo (temporary)"
        Writer(temporary).close()
    assert not temporary.parent.exists()
    assert said == [f"demo: a temporary database at {temporary}, deleted when the demo ends (--db FILE keeps one)",
                    f"demo: deleted its temporary database {temporary}"]
    with demo_database(settings_for(tmp_path / "kept.db")) as s:
        assert s.db == tmp_path / "kept.db"
    with pytest.raises(SmsmonError, match="not from a demo"):
        with demo_database(settings_for(real_db)):
            pass


def test_demo_with_db_on_real_data_refuses_in_one_line(real_db: Path) -> None:
    before = digest(real_db)
    r = subprocess.run([sys.executable, "-m", "smsmon", "demo", "--db", str(real_db)], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "holds data that is not from a demo" in r.stderr
    assert digest(real_db) == before


def test_smsmon_db_never_makes_the_demo_write_into_that_file(real_db: Path) -> None:
    """`SMSMON_DB=prod.db smsmon demo` (the issue's finding): prod.db stays as it was, whether
    the demo refuses it or, as its --help says, runs on a temporary database instead."""
    before = digest(real_db)
    out = run_in_terminal([sys.executable, "-m", "smsmon", "demo"], {**os.environ, "SMSMON_DB": str(real_db)}, 20,
                          ready="LIVE")
    assert digest(real_db) == before, out[-2000:]
    assert "not from a demo" in out or "deleted its temporary database" in out, out[-2000:]


# ── sim generate ────────────────────────────────────────────────────────────────
def test_sim_generate_needs_append_for_data_and_more_for_real_data(tmp_path: Path, real_db: Path) -> None:
    db = tmp_path / "g.db"
    assert run("sim", "generate", "--messages", "30", "--db", str(db)).exit_code == 0
    assert inspect(db).kind == "demo"
    r = run("sim", "generate", "--messages", "30", "--db", str(db))
    assert r.exit_code == 1 and "holds data already (30 messages, simulated): add --append" in r.stderr
    assert run("sim", "generate", "--messages", "30", "--seed", "2", "--append", "--db", str(db)).exit_code == 0
    assert inspect(db).kind == "demo" and inspect(db).messages == 60

    before = digest(real_db)
    for extra in ([], ["--append"]):
        r = run("sim", "generate", "--messages", "30", *extra, "--db", str(real_db))
        assert r.exit_code == 1 and digest(real_db) == before
    assert "holds real traffic (1 messages), not a demo's" in r.stderr and "--allow-real-data" in r.stderr
    r = run("sim", "generate", "--messages", "30", "--append", "--allow-real-data", "--db", str(real_db))
    assert r.exit_code == 0 and inspect(real_db).kind == "real"
    assert rows(real_db, "SELECT source, count(*) > 0 FROM events GROUP BY 1 ORDER BY 1") == [
        ("callback", 1), ("sim:callback", 1), ("sim:poll", 1)]
    r = run("sim", "generate", "--messages", "30", "--db", str(real_db), env={"SMSMON_DB": str(real_db)})
    assert r.exit_code == 1  # the environment chooses no differently


def test_a_demo_database_that_receives_real_data_is_a_demo_one_no_more(db) -> None:
    """On either store: new, then a demo's, then real once a real event comes."""
    from smsmon.store.backend import inspect_origin, open_writer

    assert inspect_origin(db).kind == "new"
    refuse_real_data(db)
    fill(db, messages=10)
    assert inspect_origin(db).kind == "demo"
    refuse_real_data(db)
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="real", event_id="x1")])
    found = inspect_origin(db)
    assert found.kind == "real" and found.messages == 11
    with pytest.raises(SmsmonError, match="holds data that is not from a demo"):
        refuse_real_data(db)


def test_a_real_callback_refused_or_replayed_makes_a_demo_database_real_and_is_never_called_simulated(tmp_path: Path) -> None:
    from smsmon.ingest.replay import replay

    body = json.dumps(callback("MESSAGE_SENT", uuid="real-one", event_id="r1")).encode()
    sim_headers = json.dumps({"Content-Type": "application/json", "X-Smsmon-Simulated": "1"})
    db = tmp_path / "d.db"
    fill(db, messages=10)
    with Writer(db) as w:  # what the demo's own malformed callbacks leave: still a demo database
        w.dead_letter(received_at="2026-11-23T10:00:00.000000Z", remote="127.0.0.1", path="/callbacks/zeckta",
                      reason="invalid_payload: an older parser refused it", body=body.replace(b"r1", b"s1").replace(
                          b"real-one", b"sim-one"), headers=sim_headers)
    assert inspect(db).kind == "demo"
    with Writer(db) as w:  # a callback no simulator sent: real traffic, though refused
        w.dead_letter(received_at="2026-11-23T10:00:01.000000Z", remote="203.0.113.9", path="/callbacks/zeckta",
                      reason="invalid_payload: an older parser refused it", body=body,
                      headers=json.dumps({"Content-Type": "application/json"}))
    assert inspect(db).kind == "real"
    replay(db)
    assert sorted(rows(db, "SELECT event_key, source FROM events WHERE source LIKE '%replay'")) == [
        ("r1", "replay"), ("s1", "sim:replay")]


# ── simulated callbacks into a real listener ───────────────────────────────────
async def test_simulated_callbacks_say_so_in_a_real_database_and_in_show(db_path: Path) -> None:
    async with serving(db_path) as (_, url):
        report = await send(url + "/callbacks/zeckta", rate=200, count=30, seed=3, mix=Mix(0, 0, 0, 0))
        assert report.answers[200] == 30
    assert rows(db_path, "SELECT DISTINCT source FROM events") == [("sim:callback",)]
    (mid,) = rows(db_path, "SELECT id FROM messages LIMIT 1")[0]
    shown = run("show", mid, "--db", str(db_path))
    assert shown.exit_code == 0 and "sim:callback" in shown.stdout
    assert {e["source"] for e in json.loads(run("show", mid, "--json", "--db", str(db_path)).stdout)["events"]} == {"sim:callback"}
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM meta").fetchone() == (0,)  # a real database stays one
