"""The app, driven with Pilot: every key path, on real SQLite files; demo with real ingest."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.content import Content
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Static

from smsmon.sim.generate import fill
from smsmon.store.backend import open_writer
from smsmon.store.writer import Writer
from smsmon.ui.app import SmsmonApp
from smsmon.ui.screens.insights import InsightsScreen
from smsmon.ui.screens.main import MainScreen
from smsmon.ui.screens.message import MessageScreen
from smsmon.ui.screens.dead_letters import DeadLettersScreen
from smsmon.ui.screens.help import HelpScreen
from smsmon.ui.widgets.flow import Flow
from tests.helpers import zevent

SIZE = (160, 45)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("app") / "seeded.db"
    fill(db, messages=400, seed=9, days=2)
    with Writer(db) as w:
        w.dead_letter(received_at="2026-11-23T10:00:00.000000Z", remote="127.0.0.1", path="/callbacks/zeckta",
                      reason="invalid_json: empty body", body=b"")
    return db


async def until(pilot: Any, condition, timeout: float = 10.0) -> None:
    """Wait for a condition with a deadline (never a bare sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await pilot.pause(0.02)


def table(app: SmsmonApp) -> DataTable:
    return app.screen.query_one("#messages", DataTable)


def cell(t: DataTable, row: int, key: str) -> str:
    """The text of a row's cell in the column `key` (columns come and go with the width)."""
    return str(t.get_cell_at(Coordinate(row, t.get_column_index(key))))


def text(widget: Any) -> str:
    """What a Static (or a Flow) shows, as plain text (Textual markup resolved, Rich renderables rendered)."""
    if isinstance(widget, Flow):
        return widget.plain
    visual = widget.visual
    if isinstance(visual, Content):
        return visual.plain
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


async def test_browse_shows_messages_offline_and_opens_one(seeded) -> None:
    app = SmsmonApp(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.refreshes >= 1 and table(app).row_count > 0)
        await until(pilot, lambda: table(app).row_count == 200)  # a page (a screenful first), never everything
        await pilot.pause(0.1)
        assert table(app).row_count == 200
        assert "OFFLINE" in text(app.screen.query_one("#health"))
        assert "delivery rate" in text(app.screen.query_one("#summary"))
        first = table(app).coordinate_to_cell_key(table(app).cursor_coordinate).row_key.value
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MessageScreen) and app.screen.detail is not None)
        assert app.screen.message_id == first
        shown = text(app.screen.query_one("#detail", Static))
        assert "Timeline" in shown and first.split(":")[1] in shown
        await pilot.press("c")
        assert json.loads(app.clipboard)["message"]["id"] == first
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_scrolling_down_loads_more_rows(seeded) -> None:
    app = SmsmonApp(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 200)
        table(app).move_cursor(row=195)
        await until(pilot, lambda: table(app).row_count > 200)
        ids = [str(k.value) for k in table(app).rows]
        assert len(ids) == len(set(ids))


async def test_filter_applies_is_sticky_and_clears(seeded) -> None:
    app = SmsmonApp(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        await pilot.press("slash")
        assert app.screen.query_one("#filter-input", Input).has_focus
        await pilot.press(*"status:failed")
        await pilot.press("enter")
        await until(pilot, lambda: app.filter_text == "status:failed" and app.refreshes >= 2)
        await until(pilot, lambda: table(app).row_count > 0 and all(
            "FAILED" in cell(table(app), i, "status") for i in range(table(app).row_count)))
        assert "status:failed" in text(app.screen.query_one("#filter-status", Static))
        await pilot.press("i")  # the filter travels to other screens
        assert isinstance(app.screen, InsightsScreen) and "status:failed" in app.screen.sub_title
        await pilot.press("escape")
        await pilot.press("escape")  # clears it
        await until(pilot, lambda: app.filter_text == "")
        assert "no filter" in text(app.screen.query_one("#filter-status", Static))


async def test_an_invalid_filter_says_what_is_wrong(seeded) -> None:
    app = SmsmonApp(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"status:sleeping", "enter")
        status = text(app.screen.query_one("#filter-status", Static))
        assert "unknown value 'sleeping'" in status and app.filter_text == ""
        assert app.screen.query_one("#filter-input", Input).display  # still there to fix
        await pilot.press("escape")
        assert not app.screen.query_one("#filter-input", Input).display


async def test_every_screen_and_back(seeded) -> None:
    app = SmsmonApp(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        for key, screen in (("i", InsightsScreen), ("d", DeadLettersScreen), ("question_mark", HelpScreen)):
            await pilot.press(key)
            assert isinstance(app.screen, screen), key
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen), key
        await pilot.press("d")
        await until(pilot, lambda: app.screen.query_one(DataTable).row_count == 1)
        assert "invalid_json: empty body" in str(app.screen.query_one(DataTable).get_row_at(0))
        await pilot.press("escape", "i")
        await until(pilot, lambda: app.screen.data is not None)
        assert "Failures by error code" in text(app.screen.query_one("#by-code-title", Static))
        await pilot.press("escape", "q")
    assert app.return_code == 0


async def test_browse_follows_another_writer_and_pause_holds_updates(db) -> None:
    """On SQLite the app looks for new rows every second; on PostgreSQL the server announces them."""
    with open_writer(db) as w:
        w.apply([zevent(uuid="first")])

    app = SmsmonApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        with open_writer(db) as other:  # another process's writer, on the same database
            other.apply([zevent(uuid="second")])
        await until(pilot, lambda: table(app).row_count == 2)
        await pilot.press("p")
        assert app.paused and "PAUSED" in text(app.screen.query_one("#health"))
        with open_writer(db) as other:
            other.apply([zevent(uuid="third")])
        seen = app.refreshes
        await pilot.pause(1.5)  # longer than the browse check: nothing may change while paused
        assert table(app).row_count == 2 and app.refreshes == seen
        await pilot.press("p")
        await until(pilot, lambda: table(app).row_count == 3)


async def test_a_tick_that_fires_while_the_app_closes_does_nothing(db) -> None:
    """The timer can fire once more while Textual removes the screens' widgets (seen in CI on
    PostgreSQL, which redraws the health line from memory: it was gone and the tick raised
    NoMatches out of the app's exit)."""
    with open_writer(db) as w:
        w.apply([zevent(uuid="first")])
    app = SmsmonApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
    assert not app.main.query("HealthLine")  # closed: the widgets are gone
    app._health_at = 0.0  # a health redraw is due
    app._tick()  # the timer's late call: nothing to draw on, nothing raised


async def test_the_selected_row_stays_put_when_new_rows_arrive(db) -> None:
    with open_writer(db) as w:
        w.apply([zevent(uuid=f"m{i}", at=f"2026-11-23T10:00:{i:02d}Z") for i in range(20)])

    app = SmsmonApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 20)
        table(app).move_cursor(row=5)
        await pilot.pause(0.05)
        chosen = table(app).coordinate_to_cell_key(table(app).cursor_coordinate).row_key.value
        with open_writer(db) as other:
            other.apply([zevent(uuid="newest", at="2026-11-23T11:00:00Z")])
        await until(pilot, lambda: app.watermark == 21)
        assert table(app).cursor_row == 5
        assert table(app).coordinate_to_cell_key(table(app).cursor_coordinate).row_key.value == chosen
        assert "1 updated elsewhere" in str(table(app).border_title)
        await pilot.press("g")  # to the newest: it is there
        await until(pilot, lambda: table(app).row_count == 21 and cell(table(app), 0, "message").startswith("newest"))


async def test_rows_drawn_after_updates_and_new_rows_show_their_message_and_open_it(db) -> None:
    """The table keeps the cells it drew and draws again only what changed: what is on screen
    after an update and after new rows pushed the others down is the new truth, and a click on a
    line opens the message drawn on it (each drawn cell knows its row)."""
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid=f"m{i}", at=f"2026-11-23T10:00:{i:02d}Z") for i in range(8)])

    def drawn() -> list[tuple[str, set[Any]]]:
        """Each drawn row: its text, and the row index its cells carry for clicks."""
        t = table(app)
        lines = [t.render_line(y) for y in range(1, 1 + t.row_count)]  # below the header
        return [(line.text, {s.style.meta.get("row") for s in line if s.style and "row" in s.style.meta}) for line in lines]

    app = SmsmonApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 8)
        await pilot.pause(0.1)
        before = drawn()
        assert "SENT" in before[0][0] and "m7" in before[0][0]
        with open_writer(db) as other:  # the top row changes in place
            other.apply([zevent("MESSAGE_DELIVERED", uuid="m7", at="2026-11-23T10:01:00Z", event_id="d7")])
        await until(pilot, lambda: "DELIVERED" in drawn()[0][0])
        assert drawn()[1:] == before[1:]
        with open_writer(db) as other:  # new rows above push the others down, one changes as it moves
            other.apply([zevent("MESSAGE_DELIVERED", uuid="m3", at="2026-11-23T10:02:00Z", event_id="d3"),
                         zevent("MESSAGE_SENT", uuid="new", at="2026-11-23T10:03:00Z")])
        await until(pilot, lambda: table(app).row_count == 9)
        await pilot.pause(0.1)
        after = drawn()
        ids = [str(table(app).coordinate_to_cell_key(Coordinate(i, 0)).row_key.value) for i in range(9)]
        for i, (line, rows) in enumerate(after):
            assert ids[i].split(":")[1] in line and rows == {i}, (i, line, rows)  # its message, its index
        assert ["new", "m3", "m7"] == [i.split(":")[1] for i in ids[:3]]  # newest event first
        assert "DELIVERED" in after[1][0] and "DELIVERED" in after[2][0]
        assert all("DELIVERED" not in line for line, _ in after[3:])
        await pilot.click("#messages", offset=(30, 2 + 4))  # the fifth drawn row (below the border and the header)
        await until(pilot, lambda: table(app).cursor_row == 4)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MessageScreen))
        assert app.screen.message_id == ids[4]


async def test_the_event_stream_draws_new_events_on_top_of_the_ones_it_drew(db) -> None:
    from smsmon.ui.widgets.event_stream import EventStream

    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid=f"s{i}", at=f"2026-11-23T10:00:{i:02d}Z") for i in range(3)])
    app = SmsmonApp(db)
    async with app.run_test(size=(200, 60)) as pilot:
        stream = app.screen.query_one("#stream", EventStream)

        def drawn() -> list[str]:
            return [line.strip() for y in range(stream.size.height) if (line := stream.render_line(y).text.strip())]

        await until(pilot, lambda: len(drawn()) == 3)
        first = drawn()
        assert [line.split()[-1] for line in first] == ["s2", "s1", "s0"] and all("SENT" in line for line in first)
        with open_writer(db) as other:
            other.apply([zevent("MESSAGE_DELIVERED", uuid="s1", at="2026-11-23T10:01:00Z", event_id="d1"),
                         zevent("MESSAGE_UNDELIVERABLE", uuid="s0", at="2026-11-23T10:01:01Z", event_id="u0")])
        await until(pilot, lambda: len(drawn()) == 5)
        now = drawn()
        assert [line.split()[-1] for line in now] == ["s0", "s1", "s2", "s1", "s0"]
        assert "UNDELIVERABLE" in now[0] and "DELIVERED" in now[1] and all("SENT" in line for line in now[2:])
        assert all(len(line) <= stream.size.width for line in now)


@pytest.mark.parametrize("size", [(120, 40), (200, 60)])
async def test_an_event_s_flags_show_whole_or_not_at_all(db, size) -> None:
    """A narrow stream cuts the id in the middle and leaves out flags it has no room for; it
    never cuts the end of a line (an id cut twice looked like another id)."""
    from smsmon.ui.widgets.event_stream import EventStream

    uuid = "364e433f-f7c8-42f4-a02c-c8284c717095"
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_DELIVERED", uuid=uuid, at="2026-11-23T10:00:05Z", event_id="a")])
        w.apply([zevent("MESSAGE_SUBMITTED", uuid=uuid, at="2026-11-23T10:00:01Z", event_id="b")])  # late_event
    app = SmsmonApp(db)
    async with app.run_test(size=size) as pilot:
        stream = app.screen.query_one("#stream", EventStream)
        await until(pilot, lambda: "SUBMITTED" in stream.render_line(0).text)
        late = stream.render_line(0).text.rstrip()
        shown_id = late.removesuffix(" late_event").split()[-1]
        assert shown_id[:3] == uuid[:3] and shown_id[-2:] == uuid[-2:]  # cut in the middle only
        assert len(late) <= stream.size.width
        if size[0] == 200:  # room for the flag and a readable id
            assert late.endswith(" late_event") and uuid[:6] in shown_id and uuid[-4:] in shown_id
        else:
            assert "late" not in late  # no room: left out, not cut


async def test_rows_left_for_after_the_first_frame_stay_before_the_next_page(seeded) -> None:
    """An empty table takes a screenful of a page first and the rest after the first frame; a
    page that comes meanwhile goes after all of them."""
    app = SmsmonApp(seeded)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: table(app).row_count == 200)
        t = table(app)
        rows = list(t.data.values())
        t.clear()
        t.replace(rows[:150], t.now)
        assert 0 < t.row_count < 150  # a screenful now
        t.append(rows[150:], t.now)  # the next page, before the first frame
        assert [str(k.value) for k in t.rows] == [m["id"] for m in rows]
        await pilot.pause(0.1)
        assert [str(k.value) for k in t.rows] == [m["id"] for m in rows]


async def test_watch_on_a_port_in_use_ends_before_drawing_the_main_screen(tmp_path) -> None:
    import socket

    from smsmon import config
    from smsmon.ingest.listener import ListenerConfig
    from smsmon.ingest.runtime import Ingest

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        settings = config.load(env={"SMSMON_CONFIG": ""}, flags={"db": tmp_path / "w.db"})
        ingest = Ingest(settings, listener=ListenerConfig(host="127.0.0.1", port=busy.getsockname()[1]), pollers=False)
        app = SmsmonApp(settings.db, ingest=ingest)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.return_code is not None)
            said = " ".join(str(r) for r in app._exit_renderables)  # printed once the app has ended
            assert app.return_code == 1 and "cannot listen" in said
            assert not app.main.is_mounted  # never drawn: the error is all the user sees
    finally:
        busy.close()


async def test_an_empty_database_says_how_to_get_data_in(tmp_path) -> None:
    db = tmp_path / "empty.db"
    Writer(db).close()

    app = SmsmonApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        empty = app.screen.query_one("#empty", Static)
        assert empty.display and "smsmon demo" in text(empty) and "smsmon simulate" in text(empty)


async def test_the_command_palette_offers_screens_and_filters(seeded) -> None:
    app = SmsmonApp(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        await pilot.press("ctrl+p")
        await pilot.press(*"not delivered")
        from textual.command import CommandList

        await until(pilot, lambda: bool(app.screen.query(CommandList)) and app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await until(pilot, lambda: app.filter_text == "status:not_delivered")


async def test_demo_starts_and_shows_live_traffic(tmp_path) -> None:
    from smsmon import config
    from smsmon.ingest.listener import ListenerConfig
    from smsmon.sim.demo import DemoIngest

    settings = config.load(env={"SMSMON_CONFIG": ""}, flags={"db": tmp_path / "demo.db"})

    app = SmsmonApp(settings.db, ingest=DemoIngest(settings, ListenerConfig(port=0)))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count >= 5, timeout=20)
        health = text(app.screen.query_one("#health"))
        assert "LIVE" in health and "/callbacks/zeckta" in health
        await until(pilot, lambda: {"eazita", "zeckta"} <= {cell(table(app), i, "provider") for i in range(table(app).row_count)},
                    timeout=20)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MessageScreen) and app.screen.detail is not None)
        await pilot.press("r")  # ask the provider: the demo has pollers for both
        await pilot.press("escape", "q")

    conn = sqlite3.connect(tmp_path / "demo.db")
    assert conn.execute("SELECT count(DISTINCT source) FROM events").fetchone()[0] >= 2  # callbacks and polls


async def test_keys_typed_into_the_filter_are_text_not_commands(seeded) -> None:
    app = SmsmonApp(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        await pilot.press("slash", *"provider:eazita dpiq?", "backspace", "backspace", "backspace", "backspace", "backspace",
                          "backspace", "enter")
        await until(pilot, lambda: app.filter_text == "provider:eazita")
        assert isinstance(app.screen, MainScreen) and not app.paused and app.return_code is None


async def test_browsing_postgresql_reads_nothing_until_a_commit_is_announced(db) -> None:
    """SQLite announces nothing, so browsing asks for the newest event id every second; from
    PostgreSQL the app hears of each commit (LISTEN/NOTIFY) and reads nothing while all is quiet."""
    from smsmon.database import PostgresUrl

    with open_writer(db) as w:
        w.apply([zevent(uuid="first")])
    app = SmsmonApp(db)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: table(app).row_count == 1)
        reads = []
        reader = app.gateway.reader
        latest, dashboard = reader.latest_event_id, reader.dashboard
        reader.latest_event_id = lambda: reads.append("latest") or latest()  # type: ignore[method-assign]
        reader.dashboard = lambda *a, **k: reads.append("dashboard") or dashboard(*a, **k)  # type: ignore[method-assign]
        await pilot.pause(2.5)  # quiet: over two of SQLite's browse checks
        assert (reads == []) is isinstance(db, PostgresUrl), reads
        reads.clear()
        with open_writer(db) as other:
            other.apply([zevent(uuid="second")])
        await until(pilot, lambda: table(app).row_count == 2)
        assert "dashboard" in reads
