"""Schema version 6 (issue 11): a database written by the smsmon before it (schema 5, the code of
a commit in this repository's history, run as it was) is upgraded with agg_cost_hour filled from
its messages, and the insights screen's costs, now read from it, are what that smsmon showed."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from smsmon import filters
from smsmon.store import aggregates, schema
from smsmon.store.backend import open_reader
from smsmon.store.writer import Writer
from smsmon.timeutil import parse_iso
from tests.helpers import rows, smsmon_at, zevent

V5_COMMIT = "17654633cf34c62fa41885023a4d383291566c52"  # the last commit that wrote schema version 5
NOW = "2026-11-23T12:00:00Z"
FILTERS = ("", "provider:eazita", "status:failed network:Zong,none", "since:2026-11-21T07:25:00Z")
PERIODS = (1, 24, 168)  # hours

# Written and read by the old code: the costs it showed, for each filter and period.
WRITE_V5 = """
import json, sys
from datetime import timedelta
sys.path.insert(0, sys.argv[1])
import smsmon.store.schema as schema
assert schema.SCHEMA_VERSION == 5, schema.__file__
from smsmon import filters
from smsmon.sim.generate import fill
from smsmon.store.backend import open_reader
from smsmon.timeutil import parse_iso
now = parse_iso(sys.argv[3])
fill(sys.argv[2], messages=500, seed=11, days=3, now=now)
out = {}
with open_reader(sys.argv[2]) as r:
    for text in json.loads(sys.argv[4]):
        for hours in json.loads(sys.argv[5]):
            d = r.insights_costs(filters.parse(text, now), period=timedelta(hours=hours), now=now)
            out[f"{text}|{hours}"] = {k: [{x: y for x, y in row.items() if x != "filter"} for row in v] for k, v in d.items()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def v5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A database written by smsmon at schema version 5 (its own code, from git), and its costs."""
    old = smsmon_at(V5_COMMIT, tmp_path_factory.mktemp("v5"))
    db = old / "v5.db"
    out = subprocess.run([sys.executable, "-c", WRITE_V5, str(old), str(db), NOW, json.dumps(FILTERS), json.dumps(PERIODS)],
                         check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(old)}, cwd=old)
    return db, json.loads(out.stdout)


def _by_key(rows_: list[dict], *key: str) -> dict:
    return {tuple(r[k] for k in key): r for r in rows_}


def test_a_v5_database_is_upgraded_and_shows_the_same_costs(v5: tuple[Path, dict], tmp_path: Path) -> None:
    old_db, shown = v5
    db = tmp_path / "upgraded.db"
    shutil.copy(old_db, db)
    assert rows(db, "PRAGMA user_version") == [(5,)]
    messages = rows(db, "SELECT * FROM messages ORDER BY id")
    with Writer(db):
        pass
    assert rows(db, "PRAGMA user_version") == [(6,)] == [(schema.SCHEMA_VERSION,)]
    assert rows(db, "SELECT * FROM messages ORDER BY id") == messages
    priced = rows(db, "SELECT count(*) FROM messages WHERE cost IS NOT NULL")[0][0]
    assert priced > 100 and rows(db, "SELECT sum(priced) FROM agg_cost_hour") == [(priced,)]
    now = parse_iso(NOW)
    compared = 0
    with open_reader(db) as r:
        for text in FILTERS:
            for hours in PERIODS:
                d = r.insights_costs(filters.parse(text, now), period=timedelta(hours=hours), now=now)
                before = shown[f"{text}|{hours}"]
                for name, key in (("cost_by_day", ("day", "provider")), ("cost_by_network", ("provider", "network"))):
                    got, want = _by_key(d[name], *key), _by_key(before[name], *key)
                    assert got.keys() == want.keys(), (text, hours, name)
                    for k, row in want.items():
                        assert got[k]["priced"] == row["priced"] and got[k].get("messages") == row.get("messages"), (text, k)
                        assert got[k]["cost"] == pytest.approx(row["cost"], abs=1e-6 * row["priced"]), (text, k)
                        compared += 1
    assert compared > 20


def test_the_writer_keeps_the_costs_of_an_upgraded_database(v5: tuple[Path, dict], tmp_path: Path) -> None:
    db = tmp_path / "upgraded.db"
    shutil.copy(v5[0], db)
    total = "SELECT sum(priced), sum(cost_micros) FROM agg_cost_hour"
    with Writer(db) as w:
        (before,) = rows(db, total)
        w.apply([zevent("MESSAGE_SENT", uuid="priced", event_id="p1", cost=0.0125)])
        w.apply([zevent("MESSAGE_DELIVERED", uuid="priced", event_id="p2", cost=0.0125)])  # moves it: counted once
    (after,) = rows(db, total)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 12_500)
    kept = sorted(rows(db, "SELECT * FROM agg_cost_hour WHERE priced != 0"))
    copy = tmp_path / "recount.db"
    shutil.copy(db, copy)
    conn = sqlite3.connect(copy)
    aggregates.rebuild_costs(conn)
    conn.commit()
    assert sorted(rows(conn, "SELECT * FROM agg_cost_hour")) == kept
    conn.close()
