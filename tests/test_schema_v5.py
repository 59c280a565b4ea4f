"""Schema version 5 (issue 13): a database written by the smsmon before it (schema 4, the code
of a commit in this repository's history, run as it was) is upgraded with its data intact, and
then takes the outbox, dead letters' headers and the demo mark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smsmon.store import schema
from smsmon.store.origin import inspect
from smsmon.store.writer import Writer
from tests.helpers import rows, smsmon_at, zevent

ROOT = Path(__file__).parent.parent
V4_COMMIT = "91968557ccdcdc425d952cfc9ce4336600dff853"  # the last commit that wrote schema version 4

WRITE_V4 = """
import sys
sys.path.insert(0, sys.argv[1])
import smsmon.store.schema as schema
assert schema.SCHEMA_VERSION == 4, schema.__file__
from smsmon.sim.generate import fill
from smsmon.store.writer import Writer
fill(sys.argv[2], messages=300, seed=7, days=2)
w = Writer(sys.argv[2])
w.dead_letter(received_at="2026-11-23T10:00:00.000000Z", remote="203.0.113.9", path="/callbacks/zeckta",
              reason="invalid_payload: missing required field `eventType`", body=b'{"eventId": "old"}')
w.close()
"""


@pytest.fixture(scope="module")
def v4_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database written by smsmon at schema version 4 (its own code, from git)."""
    old = smsmon_at(V4_COMMIT, tmp_path_factory.mktemp("v4"))
    db = old / "v4.db"
    subprocess.run([sys.executable, "-c", WRITE_V4, str(old), str(db)], check=True, capture_output=True, text=True,
                   env={**os.environ, "PYTHONPATH": str(old)}, cwd=old)
    return db


def _stats(db: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "smsmon", "stats", "--json", "--db", str(db), *args], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)


def test_a_v4_database_is_upgraded_with_its_data(v4_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "upgraded.db"
    shutil.copy(v4_db, db)
    assert rows(db, "PRAGMA user_version") == [(4,)]
    before = rows(db, "SELECT id, status, events_count, flags FROM messages ORDER BY id")
    events = rows(db, "SELECT id, event_key, source FROM events ORDER BY id")
    with Writer(db) as w:
        assert not w.demo  # schema 4 knew no demo mark
    assert rows(db, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]  # 5, and what came after
    assert rows(db, "SELECT id, status, events_count, flags FROM messages ORDER BY id") == before
    assert rows(db, "SELECT id, event_key, source FROM events ORDER BY id") == events
    assert rows(db, "SELECT reason, headers, body_bytes, replayed_at FROM dead_letters") == [
        ("invalid_payload: missing required field `eventType`", None, None, None)]
    assert rows(db, "SELECT count(*) FROM forward_outbox") == rows(db, "SELECT count(*) FROM meta") == [(0,)]
    assert rows(db, "PRAGMA foreign_key_check") == [] and rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert inspect(db).kind == "real"  # its data is not marked as a demo's: the demo leaves it alone


def test_the_upgraded_database_reads_the_same_and_takes_the_new_rows(v4_db: Path, tmp_path: Path) -> None:
    db, reference = tmp_path / "upgraded.db", tmp_path / "reference.db"
    shutil.copy(v4_db, db)
    shutil.copy(v4_db, reference)
    before = _stats(reference)  # this smsmon's figures of the same data
    with Writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="after-upgrade", event_id="new-1")], forward=["application/json"])
        w.dead_letter(received_at="2026-11-24T10:00:00.000000Z", remote="203.0.113.9", path="/callbacks/zeckta",
                      reason="invalid_json: invalid JSON", body=b"{", headers='{"User-Agent": "Zeckta"}')
    after = _stats(db)
    assert after["messages"] == before["messages"] + 1 and after["outcomes"]["IN_FLIGHT"] == before["outcomes"]["IN_FLIGHT"] + 1
    assert rows(db, "SELECT message_id FROM forward_outbox") == [("zeckta:after-upgrade",)]
    assert rows(db, "SELECT headers FROM dead_letters WHERE id = 2") == [('{"User-Agent": "Zeckta"}',)]


def test_deleting_an_event_takes_its_outbox_row(db) -> None:
    """For `smsmon prune` (issue 14): an outbox row never outlives its event (both stores)."""
    from smsmon.store.backend import open_writer

    with open_writer(db) as w:
        w.apply([zevent(uuid="a", event_id="a1"), zevent(uuid="b", event_id="b1")], forward=["", "application/json"])
        w.run(lambda w: w.conn.execute("DELETE FROM events WHERE event_key = 'a1'"))
    assert rows(db, "SELECT message_id, content_type FROM forward_outbox") == [("zeckta:b", "application/json")]
