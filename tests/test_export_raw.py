"""Exports as tools expect them (issue 13): in JSON and NDJSON an event's `raw` is the payload as
the JSON object it is (`jq .raw.message.status` works); in CSV it stays text."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from smsmon.cli import cli
from smsmon.store.writer import Writer
from tests.helpers import eevent, zevent


def export(db: Path, fmt: str) -> str:
    r = CliRunner().invoke(cli, ["export", "--table", "events", "--format", fmt, "--db", str(db)], catch_exceptions=False)
    assert r.exit_code == 0
    return r.stdout


def test_raw_is_an_object_in_json_and_ndjson_and_text_in_csv(db_path: Path) -> None:
    with Writer(db_path) as w:
        w.apply([zevent("MESSAGE_FAILED", uuid="m1", event_id="e1"), eevent("DELIVERED")])
    lines = [json.loads(line) for line in export(db_path, "ndjson").splitlines()]
    assert lines[0]["raw"]["message"]["uuid"] == "m1" and lines[0]["raw"]["eventType"] == "MESSAGE_FAILED"
    assert lines[1]["raw"]["status"] == "DELIVERED" and lines[1]["raw"]["price"] == "0.003"  # as Eazita sent it
    assert json.loads(export(db_path, "json")) == lines
    (first, second) = list(csv.DictReader(io.StringIO(export(db_path, "csv"))))
    assert json.loads(first["raw"]) == lines[0]["raw"] and isinstance(first["raw"], str)
