"""`smsmon export` as the tools that read it expect: every value as stored, whatever it holds
(commas, quotes, line breaks, other scripts), `raw` as the JSON object the provider sent, one
line per row in NDJSON, and the same rows in every format."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from smsmon.cli import cli
from smsmon.providers import eazita, zeckta
from smsmon.sim.generate import fill
from smsmon.store.backend import open_reader, open_writer
from tests.helpers import KARACHI, NOW, arg, callback, report_row

AWKWARD = 'Acme, "Ltd"\nline two; ünï €'


def export(db: Path, *args: str) -> str:
    r = CliRunner().invoke(cli, ["export", "--db", arg(db), *args], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def db(module_db) -> Path:
    path = module_db
    fill(path, messages=200, seed=9, days=1)
    pretty = json.dumps(callback("MESSAGE_DELIVERED", uuid="pretty", src=AWKWARD), indent=2).encode()
    with open_writer(path) as w:
        w.apply([zeckta.parse_callback(pretty, received_at=NOW),
                 eazita.row_event(report_row("DELIVERED", message_id=4242, network=AWKWARD, reference='r,"1"'),
                                  tz=KARACHI, received_at=NOW)])
    return path


def reference_rows(db: Path) -> list[dict]:
    """The messages as the app reads them, the reference every format must agree with."""
    with open_reader(db) as r:
        return list(r.iter_messages(now=NOW))


def test_ndjson_and_json_hold_every_value_as_stored(db) -> None:
    expected = reference_rows(db)
    nd = [json.loads(line) for line in export(db, "--format", "ndjson").splitlines()]
    whole = json.loads(export(db, "--format", "json"))
    assert nd == whole
    assert len(nd) == len(expected) > 200
    # the order and every public column (stale is computed at export time, so compare the rest)
    for got, want in zip(nd, expected):
        assert {k: v for k, v in got.items() if k != "stale"} == {k: want[k] for k in got if k != "stale"}
        assert isinstance(got["stale"], bool)
    awkward = next(m for m in nd if m["id"] == "zeckta:pretty")
    assert awkward["src"] == AWKWARD


def test_csv_reads_back_to_the_same_values(db) -> None:
    nd = [json.loads(line) for line in export(db, "--format", "ndjson").splitlines()]
    rows = list(csv.DictReader(io.StringIO(export(db, "--format", "csv"), newline="")))
    assert len(rows) == len(nd)

    def as_text(v: object) -> str:
        return "" if v is None else str(v)

    for got, want in zip(rows, nd):
        assert got == {k: as_text(v) for k, v in want.items()}
    eaz = next(r for r in rows if r["id"] == "eazita:4242")
    assert eaz["network"] == AWKWARD and eaz["reference"] == 'r,"1"'


def test_raw_is_the_object_the_provider_sent_one_line_per_event(db) -> None:
    lines = export(db, "--table", "events", "--format", "ndjson").splitlines()
    events = [json.loads(line) for line in lines]
    with open_reader(db) as r:
        assert len(events) == r.latest_event_id()
    pretty = next(e for e in events if e["message_id"] == "zeckta:pretty")
    assert isinstance(pretty["raw"], dict) and pretty["raw"]["message"]["src"] == AWKWARD
    row = next(e for e in events if e["message_id"] == "eazita:4242")
    assert row["raw"]["network"] == AWKWARD
    assert all(isinstance(e["raw"], dict) for e in events)


def test_csv_events_carry_raw_as_text(db) -> None:
    rows = list(csv.DictReader(io.StringIO(export(db, "--table", "events", "--format", "csv"), newline="")))
    pretty = next(r for r in rows if r["message_id"] == "zeckta:pretty")
    assert json.loads(pretty["raw"])["message"]["src"] == AWKWARD


def test_a_filter_exports_exactly_its_messages_and_their_events(db) -> None:
    with open_reader(db) as r:
        from smsmon import filters

        f = filters.parse("status:failed", NOW + timedelta(hours=1))
        want = [m["id"] for m in r.iter_messages(f, now=NOW)]
    got = [json.loads(line)["id"] for line in export(db, "--format", "ndjson", "--filter", "status:failed").splitlines()]
    assert got == want and got
    events = [json.loads(line) for line in export(db, "--table", "events", "--format", "ndjson", "--filter",
                                                   "status:failed").splitlines()]
    assert {e["message_id"] for e in events} == set(want)
