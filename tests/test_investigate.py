"""Investigating a message tells the whole truth (issue 10): real time to deliver, consistent
advice, every fact, times in the zone people think in, numbers as people type them, a clock
that cannot pin a message, what to look at next, copies that arrive. Each rule is also checked
for every arrival order of the same events."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import re
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from smsmon import catalogue, filters, present
from smsmon.cli import cli
from smsmon.lifecycle import fold
from smsmon.store.backend import open_reader, open_writer
from smsmon.timeutil import UTC_ZONE, DisplayZone, fmt, now_utc
from smsmon.providers import eazita, zeckta
from tests.helpers import DATA, KARACHI, NOW, arg, callback, eevent, report_row, rows, zevent


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env={"SMSMON_CONFIG": "", **(env or {})})


def at(minutes: float) -> str:
    return fmt(NOW - timedelta(minutes=minutes))


def orders(events: list) -> list[list]:
    return [list(p) for p in itertools.permutations(events)]


async def until(pilot: Any, condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await pilot.pause(0.02)


# ── 1. time to deliver ───────────────────────────────────────────────────────────
def test_a_delivery_without_a_known_send_time_has_no_time_to_deliver(db) -> None:
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_DELIVERED", uuid="only-final", at=NOW - timedelta(minutes=5))])
        w.apply([zevent("MESSAGE_SENT", uuid="sent", event_id="s1", at=NOW - timedelta(minutes=10)),
                 zevent("MESSAGE_DELIVERED", uuid="sent", event_id="d1", at=NOW - timedelta(minutes=9))])
    with open_reader(db) as r:
        assert r.message("zeckta:only-final")["deliver_seconds"] is None
        assert r.message("zeckta:sent")["deliver_seconds"] == 60.0
        s = r.stats()
    assert s.median_seconds == pytest.approx(60.0, rel=0.05) == s.p90_seconds  # the unknown one is left out, not a 0 (to within the histogram's 5 %)
    out = run("show", "only-final", "--db", arg(db)).stdout
    assert "time to deliver  unknown: no send time is known" in out and "0.0s" not in out


def test_time_to_deliver_is_the_same_in_every_arrival_order() -> None:
    events = [zevent("MESSAGE_SUBMITTED", uuid="m", event_id="a", at=NOW - timedelta(seconds=30)),
              zevent("MESSAGE_SENT", uuid="m", event_id="b", at=NOW - timedelta(seconds=20)),
              zevent("MESSAGE_DELIVERED", uuid="m", event_id="c", at=NOW - timedelta(seconds=5))]
    results = {(s.sent_at, s.deliver_seconds) for s in map(fold, orders(events))}
    assert results == {(fmt(NOW - timedelta(seconds=30)), 25.0)}
    # Only the later steps reported, in any order: still no invented zero.
    assert {fold(o).deliver_seconds for o in orders(events[2:])} == {None}


def test_an_eazita_row_keeps_both_its_facts_sent_and_done(db, tmp_path) -> None:
    seed = tmp_path / "seed.ndjson"  # Eazita's own sample response, as one NDJSON line
    seed.write_text(json.dumps(json.loads((DATA / "eazita_sample_response.json").read_text())) + "\n")
    r = run("import", str(seed), "--db", arg(db), "--timezone", "Asia/Karachi")
    assert r.exit_code == 0, r.stderr
    with open_reader(db) as reader:
        sent = reader.message("eazita:569399")  # SENT at 19:10:24, its status at 19:10:27, Karachi time
        assert sent["sent_at"] == "2018-03-25T14:10:24.000000Z" and sent["final_at"] == "2018-03-25T14:10:27.000000Z"
        assert sent["deliver_seconds"] is None  # not delivered: no time to deliver at all
        assert reader.timeline("eazita:569399")[0]["sent_at"] == "2018-03-25T14:10:24.000000Z"
        delivered = reader.message("eazita:564581")  # sent and done in the same second
        assert delivered["deliver_seconds"] == 0.0 and delivered["sent_at"] == delivered["final_at"]
    out = run("show", "eazita:569399", "--db", arg(db)).stdout
    assert re.search(r"sent +2018-03-25 14:10:24", out) and "after the first event" not in out


def test_eazita_rows_in_any_order_give_the_same_send_time() -> None:
    rows = [eevent("PENDING", sent="2026/11/23 16:50:00", done="2026/11/23 16:50:05"),
            eevent("DELIVERED", sent="2026/11/23 16:50:00", done="2026/11/23 16:51:00")]
    assert {(s.sent_at, s.deliver_seconds) for s in map(fold, orders(rows))} == {("2026-11-23T11:50:00.000000Z", 60.0)}


def test_every_fact_shown_is_the_same_in_every_arrival_order(make_db) -> None:
    """Rules 1, 3, 5 and 6 together, through the real writer and what `show` and the app print:
    send time and time to deliver, attempts, units and segments, the number as typed without +,
    a duplicate, a clock from next year: every arrival order gives the same facts and figures."""
    typed = "233551234000"  # without the +, as Zeckta may send it
    events = [zevent("MESSAGE_SUBMITTED", uuid="ord", event_id="a", at=NOW - timedelta(seconds=30), dest=typed),
              zevent("MESSAGE_SENT", uuid="ord", event_id="b", at=NOW - timedelta(seconds=20), dest=typed, attempts=2, segments=2),
              zevent("MESSAGE_SENT", uuid="ord", event_id="b", at=NOW - timedelta(seconds=20), dest=typed, attempts=2, segments=2),
              zevent("MESSAGE_DELIVERED", uuid="ord", event_id="c", at=NOW - timedelta(seconds=5), dest=typed, units=2),
              zevent("MESSAGE_READ", uuid="ord", event_id="d", at=NOW + timedelta(days=365), dest=typed)]
    seen = set()
    every = orders(events)
    for i, order in enumerate([every[0], every[-1], *random.Random(5).sample(every, 22)]):  # 24 of the 120 orders
        db = make_db()
        with open_writer(db) as w:
            for ev in order:  # one commit per arrival, as callbacks come
                w.apply([ev])
        with open_reader(db) as r:
            m = r.message("zeckta:ord", now=NOW)
            figures = r.stats(now=NOW)
        seen.add((tuple(present.facts(m)), figures.median_seconds, figures.outcomes.get("delivered")))
    assert len(seen) == 1, seen
    facts = dict(next(iter(seen))[0])
    assert facts["to"] == "+233551234000" and facts["time to deliver"] == "25.0s after it was sent"
    assert facts["final"].startswith("2026-11-23 11:59:55")  # the delivery, not the read from next year
    assert facts["events"] == "4 stored, 1 duplicates acknowledged"


# ── 2. advice that agrees with the status ────────────────────────────────────────
def test_code_0_on_a_failed_message_means_no_code_given(db) -> None:
    entry = catalogue.explain_error("eazita", "0", failed=True)
    assert entry is not None and entry.title == "No code given" and "Nothing to do" not in entry.action
    assert catalogue.explain_error("eazita", "0").title == "No error"  # on a queued or delivered one it is what it says
    with open_writer(db) as w:
        w.apply([eevent("NOT_ALLOWED", message_id=7, error_code="0")])
    shown = run("show", "eazita:7", "--db", arg(db)).stdout
    assert "Error code 0: No code given" in shown and "No error" not in shown
    stats = run("stats", "--db", arg(db)).stdout
    assert re.search(r"eazita +0 +No code given", stats)


def test_explain_an_undocumented_code_does_not_claim_it_is_documented() -> None:
    out = run("explain", "999").stdout
    assert "not a code either provider documents" in out and "meaning: documented" not in out


@pytest.mark.parametrize("typed,suggested", [("DELIVERD", "DELIVERED"), ("UNDELIVERABL", "UNDELIVERABLE"), ("poll_timout", "poll_timeout")])
def test_explain_suggests_the_closest_codes(typed: str, suggested: str) -> None:
    r = run("explain", typed)
    assert r.exit_code == 0 and "Did you mean" in r.stdout and suggested in r.stdout
    data = json.loads(run("explain", typed, "--json").stdout)
    assert suggested in data[0]["suggestions"]


def test_negative_api_codes_need_no_double_dash() -> None:
    r = run("explain", "-2", "--provider", "eazita")
    assert r.exit_code == 0 and "Invalid or disabled credentials" in r.stdout
    assert run("explain", "--provider", "eazita", "-7").exit_code == 0


# ── 3. every fact, the same everywhere ───────────────────────────────────────────
def test_every_fact_the_provider_gave_is_shown(db) -> None:
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="f", event_id="s", at=NOW - timedelta(minutes=3), segments=2, units=2.5,
                        attempts=3, cost=0.042)])
    out = run("show", "f", "--db", arg(db)).stdout
    for label, value in (("segments", "2"), ("units", "2.5"), ("attempts", "3"), ("country", r"Ghana \(\+233\)"),
                         ("cost", r"0\.042 \(currency not given by the provider\)")):
        assert re.search(rf"\n  {label} +{value}\n", out), label


def test_the_cli_and_the_app_use_the_same_words(db) -> None:
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_DELIVERED", uuid="w", event_id="x", at=NOW - timedelta(minutes=3), attempts=2)])
    with open_reader(db) as r:
        detail = r.detail("zeckta:w")
    cli_text = run("show", "w", "--db", arg(db)).stdout
    for label, text in present.facts(detail["message"], UTC_ZONE):
        assert text in cli_text, (label, text)  # the app's DetailView draws exactly these (present.facts)


# ── 4. times in the zone people think in ─────────────────────────────────────────
def test_times_are_shown_in_the_display_zone_and_json_stays_utc(db) -> None:
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="tz", event_id="t", at="2026-11-23T10:00:00.000000Z")])
    env = {"SMSMON_DISPLAY_TIMEZONE": "Asia/Karachi"}
    out = run("show", "tz", "--db", arg(db), env=env).stdout
    assert "times in Asia/Karachi" in out and "2026-11-23 15:00:00.000" in out and "event time (Asia/Karachi)" in out
    data = json.loads(run("show", "tz", "--json", "--db", arg(db), env=env).stdout)
    assert data["message"]["first_event_at"] == "2026-11-23T10:00:00.000000Z"
    assert DisplayZone.parse("local").label.startswith("local")
    bad = run("stats", "--db", arg(db), env={"SMSMON_DISPLAY_TIMEZONE": "Mars/Olympus"})
    assert bad.exit_code == 1 and "display_timezone" in bad.stderr


# ── 5. phone numbers as people type them ─────────────────────────────────────────
def test_numbers_are_stored_in_e164_and_found_however_typed(db) -> None:
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="no-plus", event_id="p", dest="233245550000")])
    with open_reader(db) as r:
        m = r.message("zeckta:no-plus")
        assert m["dest"] == "+233245550000" and m["country_code"] == "233"  # counted in failures by country
        assert json.loads(r.timeline("zeckta:no-plus")[0]["raw"])["message"]["dest"] == "233245550000"  # raw as sent
    found = run("show", "0245550000", "--db", arg(db), env={"SMSMON_DEFAULT_REGION": "GH"})
    assert found.exit_code == 0 and "zeckta:no-plus" in found.stdout
    unset = run("show", "0245550000", "--db", arg(db))
    assert unset.exit_code == 1 and "default_region" in unset.stderr
    with open_reader(db, region="GH") as r:
        assert [m["id"] for m in r.page(filters.parse("dest:0245550000", NOW))] == ["zeckta:no-plus"]
        assert [m["id"] for m in r.page(filters.parse("dest:024*", NOW))] == ["zeckta:no-plus"]
        assert [m["id"] for m in r.page(filters.parse("02455", NOW))] == ["zeckta:no-plus"]
    assert run("stats", "--filter", "dest:0245550000", "--db", arg(db)).exit_code == 1  # says default_region


# ── 6. one bad clock cannot pin a message ────────────────────────────────────────
def _arrived(event_type: str, uuid: str, event_id: str, *, at: Any, received: Any) -> Any:
    return zeckta.parse_callback(json.dumps(callback(event_type, uuid=uuid, event_id=event_id, at=at)).encode(),
                                 received_at=received)


def test_an_event_from_the_future_counts_at_its_arrival(db) -> None:
    skewed = [_arrived("MESSAGE_SENT", "skewed", "a", at=NOW - timedelta(minutes=3), received=NOW),
              _arrived("MESSAGE_DELIVERED", "skewed", "b", at=NOW + timedelta(days=365), received=NOW)]  # a year ahead
    later = NOW + timedelta(hours=1)
    with open_writer(db) as w:
        w.apply(skewed)
        w.apply([_arrived("MESSAGE_SENT", "later", "c", at=later, received=later)])
    two_hours_on = NOW + timedelta(hours=2)
    with open_reader(db) as r:
        assert [m["id"] for m in r.page(now=two_hours_on)] == ["zeckta:later", "zeckta:skewed"]  # not pinned on top
        recent = filters.parse("since:90m", two_hours_on)
        assert [m["id"] for m in r.page(recent, now=two_hours_on)] == ["zeckta:later"]  # nor inside since: forever
        m = r.message("zeckta:skewed")
        assert m["last_event_at"] == fmt(NOW) and m["status"] == "DELIVERED" and "clock_skew" in m["flags"]
    assert {fold(o).last_event_at for o in orders(skewed)} == {fmt(NOW)}  # whatever the arrival order


# ── 7. what the investigation needs next ─────────────────────────────────────────
def test_show_offers_the_next_steps(db) -> None:
    now = now_utc()

    def local(minutes_ago: int) -> str:
        return (now - timedelta(minutes=minutes_ago)).astimezone(KARACHI).strftime("%Y/%m/%d %H:%M:%S")

    with open_writer(db) as w:
        w.apply([eazita.row_event(report_row("FAILED", message_id=i, error_code="101", gsm="+923001112233", sent=local(i + 10),
                                             done=local(i)), tz=KARACHI, received_at=now) for i in range(1, 5)])
        w.apply([zevent("MESSAGE_SENT", uuid="open", event_id="o")])
    out = run("show", "eazita:1", "--db", arg(db)).stdout
    assert "4 messages with the same provider, status and error code" in out
    assert "smsmon stats --filter 'provider:eazita status:failed error:101 since:24h network:Zong'" in out
    assert "Other messages to +923001112233" in out and "eazita:4" in out
    opened = run("show", "open", "--db", arg(db)).stdout
    assert "ask the provider now with  smsmon poll --message zeckta:open" in opened


def test_an_event_id_finds_its_message_among_many(db) -> None:
    with open_writer(db) as w:
        for chunk in range(3):  # more than one Bloom block of 4,096 events
            w.apply([zevent("MESSAGE_SENT", uuid=f"m{chunk}-{i}", event_id=f"ev-{chunk}-{i}") for i in range(2000)])
    for event_id, message in (("ev-0-7", "zeckta:m0-7"), ("ev-2-1999", "zeckta:m2-1999")):
        r = run("show", event_id, "--json", "--db", arg(db))
        assert r.exit_code == 0 and json.loads(r.stdout)["message"]["id"] == message
    assert run("show", "ev-9-9", "--db", arg(db)).exit_code == 1


def test_the_event_id_filters_keep_their_format_on_disk(db) -> None:
    """A file's filters are read by every later smsmon: each block's bits are exactly those of
    the documented hash (the two little-endian 64-bit halves of a key's 16-byte BLAKE2b, h2 made
    odd, positions (h1 + i * h2) % BITS for i < 7), however a commit spans the blocks."""
    from hashlib import blake2b

    from smsmon.store import keyindex

    keys: dict[int, list[str]] = {}
    with open_writer(db) as w:
        for chunk in range(3):  # the third commit spans blocks 0 and 1
            w.apply([zevent("MESSAGE_SENT", uuid=f"f{chunk}-{i}", event_id=f"fmt-{chunk}-{i}") for i in range(2000)])
    for event_id, key in rows(db, "SELECT id, event_key FROM events"):
        keys.setdefault(event_id // keyindex.BLOCK, []).append(key)
    stored = {block: bytes(bloom) for block, bloom in rows(db, "SELECT block, bloom FROM event_key_blocks")}
    assert sorted(stored) == [0, 1]
    for block, block_keys in keys.items():
        expected = bytearray(keyindex.BITS // 8)
        for key in block_keys:
            digest = blake2b(key.encode(), digest_size=16).digest()
            h1, h2 = int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1
            for i in range(7):
                p = (h1 + i * h2) % keyindex.BITS
                expected[p // 8] |= 1 << (p % 8)
        assert stored[block] == bytes(expected)


def test_an_event_id_in_the_filter_finds_its_message_and_one_that_arrives_later(db) -> None:
    uuid_key = "4075b658-81d8-4f66-8da4-eb88ac4592b6"  # as Zeckta's eventIds look
    with open_writer(db) as w:
        for chunk in range(3):
            w.apply([zevent("MESSAGE_SENT", uuid=f"m{chunk}-{i}", event_id=f"event-{chunk}-{i:06d}-x") for i in range(2000)])
        w.apply([zevent("MESSAGE_DELIVERED", uuid="target", event_id=uuid_key)])
    with open_reader(db) as r:
        page = r.page(filters.parse(uuid_key, NOW))
        assert [m["id"] for m in page] == ["zeckta:target"]
        assert r.stats(filters.parse(uuid_key, NOW)).messages == 1
        later = filters.parse("event-9-000001-x", NOW)
        assert r.page(later) == []  # not yet: the reader remembers what it read, and reads what comes after
        with open_writer(db) as w:
            w.apply([zevent("MESSAGE_SENT", uuid="late", event_id="event-9-000001-x")])
        assert [m["id"] for m in r.page(later)] == ["zeckta:late"]
    r = run("stats", "--filter", uuid_key, "--json", "--db", arg(db))
    assert r.exit_code == 0 and json.loads(r.stdout)["messages"] == 1



def test_an_event_key_smsmon_made_is_free_text_in_the_filter_and_finds_its_message(db) -> None:
    with open_writer(db) as w:
        w.apply([eevent("DELIVERED", message_id=9001)])
    with open_reader(db) as r:
        (key,) = [e["event_key"] for e in r.timeline("eazita:9001")]
        assert key.startswith("ez:")
        assert [m["id"] for m in r.page(filters.parse(key, NOW))] == ["eazita:9001"]
    with pytest.raises(filters.FilterError, match="unknown filter field 'ez'"):
        filters.parse("ez:DELIVRD", NOW)  # not a key: still a mistyped field


# ── 8. copy that arrives ─────────────────────────────────────────────────────────
def _fake_tool(folder: Path, name: str) -> Path:
    """A stand-in for xclip or tmux that keeps what it was given (and its arguments)."""
    out = folder / f"{name}.out"
    tool = folder / name
    tool.write_text(f"#!/bin/sh\necho \"$@\" > {out}.args\ncat > {out}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return out


def test_copy_goes_to_tmux_and_the_system_clipboard(tmp_path, monkeypatch) -> None:
    from smsmon.ui.clipboard import copy_confirmed

    tmux_out, xclip_out = _fake_tool(tmp_path, "tmux"), _fake_tool(tmp_path, "xclip")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    went = copy_confirmed('{"a": 1}')
    assert "tmux's paste buffer (prefix ] pastes it)" in went and "the X clipboard (xclip)" in went
    assert tmux_out.read_text() == '{"a": 1}' and "load-buffer" in Path(f"{tmux_out}.args").read_text()
    assert xclip_out.read_text() == '{"a": 1}'
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("TMUX")
    assert copy_confirmed("x") == []  # nowhere confirmed: the app then offers a file


async def test_the_message_screen_copies_saves_opens_the_same_failure_and_hides_r_offline(db, tmp_path, monkeypatch) -> None:
    from smsmon.ui.app import SmsmonApp
    from smsmon.ui.screens.main import MainScreen
    from smsmon.ui.screens.message import MessageScreen
    from smsmon.ui.widgets.messages_table import MessagesTable

    with open_writer(db) as w:
        w.apply([eevent("FAILED", message_id=i, error_code="103", done=f"2026/11/23 16:5{i}:00") for i in range(1, 4)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    monkeypatch.delenv("TMUX", raising=False)
    app = SmsmonApp(db)
    notes: list[str] = []
    monkeypatch.setattr(app, "notify", lambda message, **kw: notes.append(str(message)))
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        app.post_message(MessagesTable.Opened("eazita:1"))
        await until(pilot, lambda: isinstance(app.screen, MessageScreen) and app.screen.detail is not None)
        assert app.screen.check_action("ask_provider", ()) is False  # browsing: no provider to ask, no key offered
        await pilot.press("c")
        assert any("press s to save it" in n for n in notes)
        await pilot.press("s")
        saved = json.loads((tmp_path / "smsmon-eazita-1.json").read_text())
        assert saved["message"]["id"] == "eazita:1"
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, MainScreen) and "error:103" in app.filter_text)
        assert app.filter_text.startswith("provider:eazita status:failed")
