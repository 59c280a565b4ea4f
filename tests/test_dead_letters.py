"""Dead letters you can act on (issue 13): kept with their headers, listed, read, and replayed
through the parser after a fix. One that parses now becomes an event (idempotent) and leaves the
dead letters; one that still fails stays with its new reason. Real listener, writer, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp
from click.testing import CliRunner

from smsmon import config
from smsmon.cli import cli
from smsmon.ingest.listener import ListenerConfig
from smsmon.ingest.replay import replay
from smsmon.ingest.runtime import Ingest
from smsmon.store.backend import open_writer
from tests.helpers import arg, callback, rows, zevent
from tests.test_listener import TOKEN, serving


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def refused_yesterday(writer: Any) -> None:
    """Dead letters as an older smsmon left them: a callback its parser refused that this one
    accepts, one already stored (Zeckta retried it after the 400), and two that nothing parses."""
    good = json.dumps(callback("MESSAGE_DELIVERED", uuid="late-fix", event_id="fixed-1")).encode()
    stored = json.dumps(callback("MESSAGE_SENT", uuid="m-dup", event_id="dup-1")).encode()
    for i, (body, headers) in enumerate([
        (good, json.dumps({"Content-Type": "application/json"})),
        (stored, None),  # from before smsmon kept headers
        (b'{"eventId": "x", "eventType": "MESSAGE_SENT"}', None),
        # not UTF-8: kept exactly, so that a replay sees what came (with U+FFFD for the byte it would parse)
        (json.dumps(callback(uuid="bad-utf8", event_id="u8", src="CAF_")).encode().replace(b"CAF_", b"CAF\xe9"), None),
    ]):
        writer.dead_letter(received_at=f"2026-11-23T10:00:0{i}.000000Z", remote="203.0.113.9", path="/callbacks/zeckta",
                           reason="invalid_payload: an older parser refused it", body=body, headers=headers)


def test_replay_turns_what_parses_now_into_events_and_keeps_what_does_not(db) -> None:
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="m-dup", event_id="dup-1")])
        refused_yesterday(w)
    result = replay(db, ids=None, since=None)
    assert [(r.id, r.message_id, r.event_key, r.duplicate) for r in result.events] == [
        (1, "zeckta:late-fix", "fixed-1", False), (2, "zeckta:m-dup", "dup-1", True)]
    assert [i for i, _ in result.failed] == [3, 4]
    assert result.failed[0][1] == "invalid_payload: missing required field `timestamp`"
    assert result.failed[1][1].startswith("invalid_json: ")  # the bytes as they came, not a repaired copy
    assert rows(db, "SELECT id, reason LIKE 'invalid_%', replayed_at IS NOT NULL FROM dead_letters") == [(3, 1, 1), (4, 1, 1)]
    # The event keeps the time it was received, and says where it came from.
    assert rows(db, "SELECT event_key, source, received_at FROM events WHERE event_key = 'fixed-1'") == [
        ("fixed-1", "replay", "2026-11-23T10:00:00.000000Z")]
    assert rows(db, "SELECT count(*) FROM events WHERE event_key = 'dup-1'") == [(1,)]
    assert replay(db).events == []  # again: nothing more to do; the failing ones fail again
    assert rows(db, "SELECT count(*) FROM forward_outbox") == [(0,)]  # forwarding was not asked for


def test_a_replayed_callback_is_forwarded_where_forwarding_is_on(db) -> None:
    with open_writer(db) as w:
        refused_yesterday(w)
    replay(db, ids=[1], forward=True)
    assert rows(db, "SELECT message_id, content_type FROM forward_outbox") == [("zeckta:late-fix", "application/json")]


def test_the_cli_lists_shows_and_replays(db) -> None:
    with open_writer(db) as w:
        refused_yesterday(w)
    r = run("dead-letters", "list", "--db", str(db))
    assert r.exit_code == 0 and r.stdout.count("203.0.113.9") == 4 and "invalid_payload: an older parser" in r.stdout
    assert "4 dead letters" in r.stderr
    listed = json.loads(run("dead-letters", "list", "--json", "--since", "2026-11-23T10:00:02Z", "--db", str(db)).stdout)
    assert [d["id"] for d in listed] == [4, 3]
    r = run("dead-letters", "show", "1", "--db", str(db))
    assert r.exit_code == 0 and "Content-Type: application/json" in r.stdout and '"eventId": "fixed-1"' in r.stdout
    r = run("dead-letters", "show", "2", "--db", str(db))
    assert "Headers (not kept: received before smsmon kept them)" in r.stdout
    r = run("dead-letters", "replay", "--id", "1", "--id", "3", "--id", "99", "--db", str(db))
    assert r.exit_code == 1
    assert "#1: stored zeckta:late-fix (event fixed-1)" in r.stderr
    assert "#3: still refused: invalid_payload: missing required field `timestamp`" in r.stderr
    assert "#99: no such dead letter" in r.stderr
    assert "replayed 2 dead letters: 1 new event, 0 stored already, 1 still refused" in r.stderr
    r = run("dead-letters", "replay", "--id", "99", "--db", arg(db))  # only unknown ids: nothing is replayed
    assert r.exit_code == 1 and "#99: no such dead letter" in r.stderr and "replayed 0 dead letters" in r.stderr
    assert rows(db, "SELECT id FROM dead_letters ORDER BY id") == [(2,), (3,), (4,)]
    r = run("dead-letters", "show", "3", "--db", arg(db))
    assert "replayed" in r.stdout and "missing required field `timestamp`" in r.stdout
    r = run("dead-letters", "replay", "--all", "--json", "--db", str(db))
    out = json.loads(r.stdout)
    assert r.exit_code == 1 and [e["event_key"] for e in out["events"]] == ["dup-1"] and len(out["failed"]) == 2
    assert run("dead-letters", "replay", "--db", str(db)).exit_code == 2  # say which
    r = run("dead-letters", "show", "1", "--db", str(db))
    assert r.exit_code == 1 and "no dead letter #1" in r.stderr


async def test_a_live_replay_goes_through_the_running_writer_and_forwards(db) -> None:
    """What the app's dead-letters screen calls under `watch`: the ingest's own writer."""
    async with serving(db, token=TOKEN) as (_, url), aiohttp.ClientSession() as s:
        async with s.post(f"{url}/callbacks/zeckta/{TOKEN}", data=b'{"eventId": "z"}',
                          headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
    with open_writer(db) as w:
        refused_yesterday(w)
    settings = config.load(env={}, config_file=os.devnull, flags={"db": str(db), "forward.url": "http://127.0.0.1:9/"})
    ingest = Ingest(settings, listener=ListenerConfig(host="127.0.0.1", port=0), pollers=False)
    await ingest.start()
    try:
        result = await ingest.replay_dead_letters(ids=(2,))
        assert [(r.id, r.event_key) for r in result.events] == [(2, "fixed-1")]
        assert ingest.committer.last_event_id == rows(db, "SELECT max(id) FROM events")[0][0]  # followers hear of it
        result = await ingest.replay_dead_letters()
        assert [r.event_key for r in result.events] == ["dup-1"] and [i for i, _ in result.failed] == [1, 4, 5]
    finally:
        await ingest.stop()
    assert sorted(rows(db, "SELECT message_id FROM forward_outbox")) == [("zeckta:late-fix",), ("zeckta:m-dup",)]


async def _replay_on_screen(app, pilot) -> None:
    from smsmon.ui.screens.dead_letters import DeadLettersScreen
    from textual.widgets import DataTable

    from tests.test_app import until

    await until(pilot, lambda: app.refreshes >= 1)
    await pilot.press("d")
    assert isinstance(app.screen, DeadLettersScreen)
    await until(pilot, lambda: app.screen.query_one(DataTable).row_count == 4)
    await pilot.press("r")  # the newest first: #4, which nothing parses
    await until(pilot, lambda: any("still refused" in n.message for n in app._notifications))
    assert any("1 still refused" in n.message for n in app._notifications)
    await pilot.press("R")  # once: it asks for a second R
    await until(pilot, lambda: any("R again replays every dead letter" in n.message for n in app._notifications))
    assert app.screen.query_one(DataTable).row_count == 4
    await pilot.press("R")
    await until(pilot, lambda: app.screen.query_one(DataTable).row_count == 2)  # #1 and #2 parse now: they leave


async def test_the_dead_letters_screen_replays_one_and_all_when_browsing(db) -> None:
    from smsmon.ui.app import SmsmonApp

    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="m-dup", event_id="dup-1")])
        refused_yesterday(w)
    app = SmsmonApp(db, forward=True)  # forward.url set: what becomes an event waits in the outbox for serve
    async with app.run_test(size=(120, 40)) as pilot:
        await _replay_on_screen(app, pilot)
        assert any("1 new event, 1 stored already, 2 still refused" in n.message for n in app._notifications)
        await pilot.press("escape", "q")
    assert rows(db, "SELECT source FROM events WHERE event_key = 'fixed-1'") == [("replay",)]
    assert rows(db, "SELECT id FROM dead_letters ORDER BY id") == [(3,), (4,)]
    assert rows(db, "SELECT message_id FROM forward_outbox") == [("zeckta:late-fix",)]  # not the duplicate


async def test_the_dead_letters_screen_replays_through_the_live_writer(db) -> None:
    from smsmon.ui.app import SmsmonApp

    with open_writer(db) as w:
        refused_yesterday(w)
    settings = config.load(env={}, config_file=os.devnull, flags={"db": arg(db), "forward.url": "http://127.0.0.1:9/"})
    app = SmsmonApp(db, ingest=Ingest(settings, listener=ListenerConfig(host="127.0.0.1", port=0), pollers=False))
    async with app.run_test(size=(120, 40)) as pilot:
        await _replay_on_screen(app, pilot)
        await pilot.press("escape")
        from tests.test_app import until

        # The outbox the replay filled (its target never answers), on the health line.
        await until(pilot, lambda: "forward: 2 waiting, forward_connect_error" in str(app.main.query_one("#health").render()))
        await pilot.press("q")
    assert sorted(rows(db, "SELECT message_id FROM forward_outbox")) == [("zeckta:late-fix",), ("zeckta:m-dup",)]
