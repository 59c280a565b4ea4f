"""`smsmon prune` and `smsmon alerts` as a user runs them (issue 14)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from smsmon.cli import cli
from smsmon.sim.generate import fill
from tests.helpers import rows


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ops") / "g.db"
    fill(path, messages=1500, seed=6, days=10)
    return path


@pytest.fixture
def db(generated, tmp_path) -> Path:
    path = tmp_path / "p.db"
    shutil.copy(generated, path)
    return path


def test_prune_dry_run_then_for_real(db) -> None:
    before = rows(db, "SELECT count(*) FROM messages")[0][0]
    r = run("prune", "--older-than", "5d", "--dry-run", "--db", str(db))
    assert r.exit_code == 0 and r.stderr.startswith("would remove ") and " older than 5d (before 20" in r.stderr
    assert rows(db, "SELECT count(*) FROM messages")[0][0] == before
    would = int(r.stderr.split()[2].replace(",", ""))
    assert 0 < would < before
    r = run("prune", "--older-than", "5d", "--db", str(db))
    assert r.exit_code == 0 and r.stderr.startswith(f"removed {would:,} messages (") and "gave back " in r.stderr
    assert rows(db, "SELECT count(*) FROM messages")[0][0] == before - would
    r = run("prune", "--older-than", "5d", "--db", str(db), "--json")
    assert json.loads(r.stdout)["messages"] == 0


def test_prune_takes_the_retention_setting_and_says_how_old_otherwise(db) -> None:
    r = run("prune", "--db", str(db), "--dry-run", env={"SMSMON_RETENTION": "8d"})
    assert r.exit_code == 0 and "older than 8d" in r.stderr
    r = run("prune", "--db", str(db))
    assert r.exit_code == 2 and "say how old: --older-than 90d" in r.stderr
    r = run("prune", "--older-than", "soon", "--db", str(db))
    assert r.exit_code == 2 and "not a duration" in r.stderr
    r = run("prune", "--older-than", "1d", "--db", str(db.with_name("none.db")))
    assert r.exit_code == 1 and r.stderr.startswith("error: no database at") and not db.with_name("none.db").exists()


def test_a_full_vacuum_shrinks_the_file_at_once(db) -> None:
    size = db.stat().st_size
    r = run("prune", "--older-than", "3d", "--vacuum", "full", "--db", str(db), "--json")
    out = json.loads(r.stdout)
    assert out["vacuum"] == "full" and out["file_bytes"] < size * 0.6 and out["pages_freed"] > 0


def test_alerts_lists_every_rule_and_checks(db) -> None:
    r = run("alerts", "--db", str(db))
    assert r.exit_code == 0 and r.stdout.count(" off ") == 6 and "0 firing" in r.stderr
    env = {"SMSMON_ALERTS_STALE_ABOVE": "0", "SMSMON_ALERTS_SILENCE_AFTER": "30d", "SMSMON_ALERTS_DELIVERY_RATE_BELOW": "1%"}
    r = run("alerts", "--db", str(db), "--check", env=env)
    assert r.exit_code == 1 and "FIRING  stale " in r.stdout and "ok      silence" in r.stdout
    assert "ok      delivery_rate" in r.stdout and "1 firing" in r.stderr
    r = run("alerts", "--db", str(db), "--json", env=env)
    out = json.loads(r.stdout)
    assert [a["rule"] for a in out["firing"]] == ["stale"] and len(out["rules"]) == 6


def test_alerts_send_test_reaches_the_command(tmp_path) -> None:
    out = tmp_path / "got.json"
    script = tmp_path / "n.py"
    script.write_text(f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())\n")
    r = run("alerts", "--send-test", env={"SMSMON_ALERTS_COMMAND": f"{sys.executable} {script}"})
    assert r.exit_code == 0 and "command " in r.stderr and ": ok" in r.stderr
    assert json.loads(out.read_text())["state"] == "test"
    r = run("alerts", "--send-test", env={"SMSMON_ALERTS_COMMAND": "/no/such/notifier"})
    assert r.exit_code == 1 and "FAILED" in r.stderr
    r = run("alerts", "--send-test")
    assert r.exit_code == 1 and "nowhere to send" in r.stderr


@pytest.mark.parametrize("command", ["prune", "alerts", "bench months"])
def test_the_new_commands_have_help_and_are_in_the_readme(command: str) -> None:
    r = run(*command.split(), "--help")
    assert r.exit_code == 0 and "Usage:" in r.stdout
    assert f"smsmon {command}" in (Path(__file__).parent.parent / "README.md").read_text()


@pytest.mark.postgres
def test_prune_and_alerts_on_postgresql(generated, pg_server) -> None:
    """The same commands with --db postgresql://...: what would go, what went, the rules."""
    from smsmon.store.pg.copy import copy_sqlite
    from tests.conftest import schema_url

    db = schema_url(pg_server)
    copy_sqlite(generated, db)
    before = rows(db, "SELECT count(*) FROM messages")[0][0]
    r = run("prune", "--older-than", "5d", "--dry-run", "--db", db.reveal())
    assert r.exit_code == 0 and r.stderr.startswith("would remove ")
    would = int(r.stderr.split()[2].replace(",", ""))
    assert 0 < would < before and rows(db, "SELECT count(*) FROM messages")[0][0] == before
    r = run("prune", "--older-than", "5d", "--db", db.reveal())
    assert r.exit_code == 0 and r.stderr.startswith(f"removed {would:,} messages (") and "PostgreSQL's autovacuum" in r.stderr
    assert rows(db, "SELECT count(*) FROM messages")[0][0] == before - would
    env = {"SMSMON_ALERTS_STALE_ABOVE": "0", "SMSMON_ALERTS_SILENCE_AFTER": "30d"}
    r = run("alerts", "--db", db.reveal(), "--check", env=env)
    assert r.exit_code == 1 and "FIRING  stale " in r.stdout and "ok      silence" in r.stdout and "1 firing" in r.stderr
