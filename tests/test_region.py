"""default_region reads local-format numbers wherever data enters: callbacks, polls, imports,
and `poll --message`. Without it a local number is kept as sent (and cannot be guessed)."""

from __future__ import annotations

import json

import aiohttp
from click.testing import CliRunner

from smsmon.cli import cli
from smsmon.sim.servers import Step
from tests.helpers import callback, report_row, rows
from tests.test_listener import post, serving
from tests.test_poller import world


async def test_a_callback_to_a_local_number_is_stored_in_e164_with_a_region(db_path) -> None:
    async with serving(db_path, region="GH") as (_, url), aiohttp.ClientSession() as s:
        status, _ = await post(s, url + "/callbacks/zeckta", callback(uuid="gh", dest="0241234567"))
    assert status == 200
    assert rows(db_path, "SELECT dest FROM messages") == [("+233241234567",)]


async def test_without_a_region_a_local_number_is_kept_as_sent(db_path) -> None:
    async with serving(db_path) as (_, url), aiohttp.ClientSession() as s:
        status, _ = await post(s, url + "/callbacks/zeckta", callback(uuid="x", dest="0241234567"))
    assert status == 200
    assert rows(db_path, "SELECT dest FROM messages") == [("0241234567",)]


async def test_a_polled_report_to_a_local_number_is_stored_in_e164(db_path) -> None:
    async with world(db_path) as w:
        w["eazita"].region = "PK"
        w["ez"].add(569399, [Step(0, "SUBMIT"), Step(2, "DELIVERED")], gsm="03001234567")
        w["clock"].t += 5
        outcome = await w["eazita"].poll_once()
    assert outcome.ok
    assert rows(db_path, "SELECT dest FROM messages") == [("+923001234567",)]


def test_import_reads_local_numbers_in_the_configured_region(tmp_path) -> None:
    db = tmp_path / "r.db"
    lines = tmp_path / "in.ndjson"
    lines.write_text(json.dumps(callback(uuid="a", dest="0241234567")) + "\n"
                     + json.dumps(report_row(message_id=7, gsm="0241234568")) + "\n")
    result = CliRunner().invoke(cli, ["import", str(lines), "--db", str(db)], env={"SMSMON_DEFAULT_REGION": "GH"})
    assert result.exit_code == 0, result.output
    assert sorted(rows(db, "SELECT dest FROM messages")) == [("+233241234567",), ("+233241234568",)]


def test_poll_message_finds_a_local_number_in_the_configured_region(tmp_path) -> None:
    db = tmp_path / "r.db"
    lines = tmp_path / "in.ndjson"
    lines.write_text(json.dumps(callback(uuid="a", dest="+233241234567")) + "\n")
    assert CliRunner().invoke(cli, ["import", str(lines), "--db", str(db)]).exit_code == 0
    env = {"SMSMON_ZECKTA_API_KEY": "k" * 20, "SMSMON_ZECKTA_URL": "http://127.0.0.1:9"}
    without = CliRunner().invoke(cli, ["poll", "--message", "0241234567", "--db", str(db)], env=env)
    assert without.exit_code != 0 and "default_region" in without.output
    # With the region the number resolves to the message; the (unreachable) provider is then asked.
    asked = CliRunner().invoke(cli, ["poll", "--message", "0241234567", "--db", str(db), "--json"],
                               env={**env, "SMSMON_DEFAULT_REGION": "GH"})
    assert "default_region" not in asked.output
    assert json.loads(asked.stdout)[0]["provider"] == "zeckta"
