"""A database written by the first release of smsmon (schema 2: payloads as text, events with
their message's columns) upgraded to today's (compressed payloads, compact stamps, aggregates)
loses nothing: every event's payload and fields, every message's facts, as that release's own
export wrote them (issue 11: half the bytes per event without losing anything shown)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smsmon.store import schema
from tests.helpers import rows, smsmon_at

ROOT = Path(__file__).parent.parent
FIRST_RELEASE = "2aa32b7c56acdc2c7ad27b3e94b0b26d0a6da301"

WRITE = """
import sys
from smsmon.sim.generate import fill
fill(sys.argv[1], messages=300, seed=7, days=2)
"""
EVENT_FIELDS = ("event_key", "message_id", "provider", "source", "event_type", "raw_status", "status", "error_code",
                "event_time", "received_at", "flags")
MESSAGE_FIELDS = ("id", "provider", "status", "raw_status", "outcome", "error_code", "dest", "network", "reference",
                  "first_event_at", "last_event_at", "events_count", "duplicates_count")


def _export(db: Path, table: str, env: dict[str, str], cwd: Path) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "smsmon", "export", "--table", table, "--format", "ndjson", "--db", str(db)],
                         capture_output=True, text=True, check=True, env=env, cwd=cwd)
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture(scope="module")
def first_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[dict]]:
    """A database the first release wrote, and its own export of it (events, messages)."""
    old = smsmon_at(FIRST_RELEASE, tmp_path_factory.mktemp("first"))
    db = old / "old.db"
    env = {**os.environ, "PYTHONPATH": str(old)}
    subprocess.run([sys.executable, "-c", WRITE, str(db)], check=True, capture_output=True, text=True, env=env, cwd=old)
    return db, _export(db, "events", env, old), _export(db, "messages", env, old)


def test_the_first_releases_database_upgrades_without_losing_a_payload_or_a_fact(first_release, tmp_path) -> None:
    old_db, old_events, old_messages = first_release
    db = tmp_path / "upgraded.db"
    shutil.copy(old_db, db)
    assert rows(db, "PRAGMA user_version")[0][0] < schema.SCHEMA_VERSION
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    events = _export(db, "events", env, ROOT)  # opening it upgrades it (it says so on stderr)
    assert rows(db, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
    assert len(events) == len(old_events) > 500
    new_by_key = {(e["message_id"], e["event_key"]): e for e in events}
    for old in old_events:
        new = new_by_key[(old["message_id"], old["event_key"])]
        assert {f: new[f] for f in EVENT_FIELDS} == {f: old[f] for f in EVENT_FIELDS}
        assert new["raw"] == json.loads(old["raw"])  # the payload, exactly: compressed and back
    messages = {m["id"]: m for m in _export(db, "messages", env, ROOT)}
    assert len(messages) == len(old_messages)
    for old in old_messages:
        assert {f: messages[old["id"]][f] for f in MESSAGE_FIELDS} == {f: old[f] for f in MESSAGE_FIELDS}
