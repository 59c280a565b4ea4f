"""Issue 12: the app at 80x24, 120x40 and 200x60; navigation; insights that open their messages;
the small things. Driven with Pilot on real SQLite files."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from smsmon.sim.generate import fill
from smsmon.store.writer import Writer
from smsmon.timeutil import UTC
from smsmon.ui import format as fmt
from smsmon.ui.app import SmsmonApp
from smsmon.ui.screens import help as helpscreen
from smsmon.ui.screens.dead_letters import DeadLettersScreen
from smsmon.ui.screens.filtered import FilteredScreen
from smsmon.ui.screens.insights import InsightsScreen
from smsmon.ui.screens.main import MainScreen
from smsmon.ui.screens.message import MessageScreen
from smsmon.ui.widgets.activity import buckets, second
from smsmon.ui.widgets.messages_table import COLUMNS, plan
from tests.helpers import zevent
from tests.test_app import cell, table, text, until

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SIZES = [(80, 24), (120, 40), (200, 60)]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("sizes") / "seeded.db"
    fill(db, messages=400, seed=9, days=1, now=NOW)
    return db


def frozen(db: Path) -> SmsmonApp:
    return SmsmonApp(db, now=lambda: NOW, show_clock=False)


def shown_keys(t: DataTable) -> list[str]:
    return [str(k.value) for k in t.columns]


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_size_keeps_the_important_columns_whole_and_nothing_collides(seeded, size) -> None:
    app = frozen(seeded)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.refreshes >= 1 and table(app).row_count > 0)
        t = table(app)
        keys = shown_keys(t)
        # by priority: status, message id, number, error, network, provider, time
        assert {"status", "message", "to", "error", "network", "provider"} <= set(keys), keys
        widths = sum(c.get_render_width(t) for c in t.columns.values())
        assert widths <= t.size.width, (widths, t.size.width)  # no column off the edge
        for i in range(t.row_count):
            assert "…" not in cell(t, i, "status") and "…" not in cell(t, i, "to")  # never cut
            assert cell(t, i, "network") != "Telen"
        ids = [cell(t, i, "message") for i in range(t.row_count)]
        assert len(set(ids)) == len(ids)  # cut in the middle: still distinct
        if size[0] == 80:
            assert any("…" in i and len(i) >= 11 for i in ids)
        if size[0] == 200:
            assert not any("…" in i for i in ids) and "flags" in keys
        width = size[0] - 2
        for flow in ("#summary", "#health"):
            lines = text(app.screen.query_one(flow)).splitlines()
            assert all(len(line) <= width for line in lines), (flow, lines)
        assert "delivery rate" in text(app.screen.query_one("#summary"))
        assert "OFFLINE" in text(app.screen.query_one("#health"))
        stream = app.screen.query_one("#stream")
        assert stream.display == (size[0] >= 120)  # the event stream collapses below 120 columns
        footer = {b.key for (_, b, _, _) in app.screen.active_bindings.values() if b.show}
        assert {"question_mark", "q"} <= footer


def test_columns_join_by_priority_and_take_their_contents_width() -> None:
    natural = {"when": 8, "status": 13, "message": 36, "to": 13, "error": 3, "network": 13, "provider": 6, "events": 1,
               "flags": 18}
    wide = plan(natural, 200)
    assert [c.key for c, _, _ in wide] == [c.key for c in COLUMNS]
    assert dict((c.key, w) for c, w, _ in wide)["message"] == 36
    narrow = {c.key: w for c, w, _ in plan(natural, 76)}
    assert list(narrow)[:2] == ["when", "status"] and narrow["status"] == 13 and narrow["to"] == 13
    assert 11 <= narrow["message"] < 36 and "flags" not in narrow
    tiny = {c.key for c, _, _ in plan(natural, 40)}
    assert tiny == {"status", "message"}  # the first two by priority, whole


def test_ids_are_cut_in_the_middle() -> None:
    a, b = "3099fdf5-ab99-454a-a901-e35cd47da9c1", "3099fdf5-ab99-454a-a901-e35cd47da9c2"
    assert fmt.middle_cut(a, 11) == "3099fd…a9c1" and fmt.middle_cut(a, 11) != fmt.middle_cut(b, 11)
    assert fmt.middle_cut("569399", 11) == "569399"


def test_a_clock_a_fraction_ahead_is_just_now() -> None:
    assert fmt.ago("2026-11-23T12:00:00.400000Z", NOW) == "just now"
    assert fmt.ago("2026-11-23T12:00:05.000000Z", NOW) == "in the future"
    assert fmt.ago("2026-11-23T11:59:30.000000Z", NOW) == "30s ago"


async def test_e_shows_and_hides_the_event_stream(seeded) -> None:
    app = frozen(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        stream = app.screen.query_one("#stream")
        assert not stream.display
        await pilot.press("e")
        assert stream.display
        await pilot.press("e")
        assert not stream.display


async def test_sort_by_key_and_header_says_it_sorts_what_is_loaded(seeded) -> None:
    app = frozen(seeded)
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: table(app).row_count == 200)
        t = table(app)
        newest = [cell(t, i, "when") for i in range(t.row_count)]
        await pilot.press("s")  # the first column: time, oldest loaded first
        assert [cell(t, i, "when") for i in range(t.row_count)] == sorted(newest)
        await pilot.press("s")  # then status
        statuses = [cell(t, i, "status") for i in range(t.row_count)]
        assert statuses == sorted(statuses)
        assert "200 loaded rows only, not the database" in str(t.border_title)
        await pilot.press("S")
        assert [cell(t, i, "status") for i in range(t.row_count)] == sorted(statuses, reverse=True)
        await pilot.click("#messages", offset=(80, 1))  # a header (to / error / network): sorts by it
        assert t.sort_key not in (None, "status")
        key = t.sort_key
        values = [cell(t, i, key) for i in range(t.row_count) if cell(t, i, key)]
        assert values == sorted(values, key=lambda v: (0, int(v), v) if v.isdigit() else (1, 0, v))


async def test_home_end_g_and_G(seeded) -> None:
    app = frozen(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: table(app).row_count == 200)
        t = table(app)
        await pilot.press("end")
        assert t.cursor_row == 199  # the oldest loaded, not a sideways scroll
        await until(pilot, lambda: t.row_count > 200)  # and the next page comes
        await pilot.press("home")
        assert t.cursor_row == 0 and t.scroll_x == 0
        await until(pilot, lambda: t.row_count == 200 and not app.busy)  # home also reads a fresh first page
        loaded = t.row_count
        await pilot.press("G")
        assert t.cursor_row == loaded - 1  # (then the next page loads below it)
        await pilot.press("g")
        assert t.cursor_row == 0


async def test_t_offers_until_and_since_to_jump_in_time(seeded) -> None:
    app = frozen(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        await pilot.press("t")
        box = app.screen.query_one("#filter-input", Input)
        assert box.has_focus and box.value == "until:"
        assert app.screen.query_one("#filter-hint").display and "since:" in text(app.screen.query_one("#filter-hint", Static))
        await pilot.press(*"6h", "enter")
        await until(pilot, lambda: app.filter_text == "until:6h" and table(app).row_count > 0)
        assert all(m["last_event_at"] < "2026-11-23T06:00" for m in table(app).data.values())


async def test_an_invalid_filter_wraps_so_the_allowed_values_show(seeded) -> None:
    app = frozen(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash", *"status:sleeping", "enter")
        status = app.screen.query_one("#filter-status", Static)
        assert status.size.height >= 3 and "stale" in text(status)  # the last allowed value, not cut off


def test_help_lists_exactly_the_keys_of_each_screen() -> None:
    for name, (heading, classes) in helpscreen.sections().items():
        body = helpscreen.text(name).split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
        listed = {k for line in body.splitlines() if line.startswith("| `") for k in line.split("|")[1].strip().strip("`").split("`, `")}
        bound = {helpscreen.NAMES.get(k, k) for k in helpscreen.keys_of(*classes)}
        extra = {k for k, _ in helpscreen.EXTRA.get(name, [])}
        assert listed == bound | extra, (name, listed ^ (bound | extra))
    everywhere = helpscreen.text().split("## On every screen", 1)[1]
    assert "`p`" in everywhere and "`r`" not in everywhere


async def test_help_opens_on_the_screen_it_was_asked_from(seeded) -> None:
    app = frozen(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MessageScreen) and app.screen.detail is not None)
        await pilot.press("question_mark")
        assert app.screen.first == "message"


async def test_the_empty_dead_letters_screen_says_what_would_put_one_there(tmp_path) -> None:
    db = tmp_path / "clean.db"
    with Writer(db) as w:
        w.apply([zevent(uuid="one")])
    app = frozen(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        await pilot.press("d")
        assert isinstance(app.screen, DeadLettersScreen)
        body = app.screen.query_one("#letter-body", Static)
        await until(pilot, lambda: "No dead letters" in text(body))
        assert "400" in text(body) and "eventType" in text(body) and not app.screen.query_one("#letters").display


async def test_plurals_in_the_summary(tmp_path) -> None:
    db = tmp_path / "one.db"
    with Writer(db) as w:
        w.apply([zevent(uuid="one")])
        w.dead_letter(received_at="2026-11-23T10:00:00.000000Z", remote="127.0.0.1", path="/callbacks/zeckta",
                      reason="invalid_json: empty body", body=b"")
    app = frozen(db)
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        summary = text(app.screen.query_one("#summary"))
        assert "1 message, 1 event" in summary and "1 dead letter" in summary and "dead letters" not in summary


@pytest.mark.parametrize("table_id", ["by-network", "by-country", "by-code", "by-status"])
async def test_an_insights_row_opens_exactly_its_messages_and_esc_comes_back(seeded, table_id) -> None:
    app = frozen(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InsightsScreen) and app.screen.data is not None)
        insights = app.screen
        rows = insights.data[table_id.replace("-", "_")]
        assert rows
        t = insights.query_one(f"#{table_id}", DataTable)
        t.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, FilteredScreen) and app.screen.loaded)
        shown = app.screen.query_one("#filtered", DataTable)
        assert shown.row_count == rows[0]["failed"]  # exactly the messages the row counted
        assert all(cell(shown, i, "status") in ("FAILED", "REJECTED", "UNDELIVERABLE", "EXPIRED") for i in range(shown.row_count))
        await pilot.press("escape")
        assert app.screen is insights


async def test_insights_say_failure_rates_and_costs_and_change_period(seeded) -> None:
    app = frozen(seeded)
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InsightsScreen) and app.screen.data is not None
                    and "cost_by_day" in app.screen.data)  # the costs fill in after the rest
        d = app.screen.data
        for r in d["by_network"]:
            assert r["rate"] == (r["failed"] / r["finished"] if r["finished"] else None)
        net = app.screen.query_one("#by-network", DataTable)
        assert "failure rate" in [str(c.label) for c in net.columns.values()]
        assert {r["provider"] for r in d["cost_by_day"]} == {"eazita", "zeckta"}
        assert "currency not given" in text(app.screen.query_one("#cost-note", Static))
        assert d["bucket"] == "hour" and len(d["series"]) in (24, 25) and d["series"][-1]["partial"]
        await pilot.press("w")
        await until(pilot, lambda: app.screen.data is not d and app.screen.data is not None)
        assert app.screen.data["bucket"] == "day"


def test_the_events_chart_fits_its_window_and_marks_the_partial_bucket() -> None:
    now = NOW + timedelta(seconds=0.5)
    fresh = Counter({second(NOW - timedelta(seconds=s)): 3 for s in range(12)})  # a demo's first 12 seconds
    size, counts = buckets(fresh, now, 40)
    assert size == 1 and len(counts) == 12 and counts[-1] == 3  # per second, not 29 empty minutes and a bar
    busy = Counter({second(NOW - timedelta(seconds=s)): 1 for s in range(0, 1800, 7)})
    size, counts = buckets(busy, now, 40)
    assert size == 60 and len(counts) == 30
    quiet = Counter({second(NOW - timedelta(seconds=30)): 1, second(NOW): 0})
    size, counts = buckets(quiet, now, 40)
    assert counts.count(1) == 1 and 0 in counts  # empty buckets stay 0 (drawn blank), a low one is a bar


def test_the_app_starts_without_plotext_or_textual_serve() -> None:
    code = "import sys, smsmon.ui.app, smsmon.cli; print(sorted(m for m in sys.modules if 'plotext' in m or 'textual_serve' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_demo_on_another_programs_database_says_so_before_drawing(tmp_path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    sqlite3.connect(other).executescript("CREATE TABLE notes(a); INSERT INTO notes VALUES (1);")
    r = subprocess.run([sys.executable, "-m", "smsmon", "demo", "--db", str(other)], capture_output=True, timeout=60,
                       env={"SMSMON_CONFIG": "", "PATH": "/usr/bin:/bin", "TERM": "xterm"})
    assert r.returncode == 1 and b"not an smsmon database" in r.stderr
    assert b"\x1b[?1049h" not in r.stdout + r.stderr  # the app never took the screen


async def test_insights_under_a_number_prefix_count_their_stale_messages_after_the_rest(seeded) -> None:
    """A filter the aggregates cannot answer: the insights screen shows its rows at once and says
    it is counting the stale messages, which it reads apart (4.2 s at 10M events), then the count."""
    import threading

    app = frozen(seeded)
    release = threading.Event()
    async with app.run_test(size=(200, 60)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        counting = app.gateway.reader.insights_stale

        def held(*args, **kwargs):  # the count, held until the test has looked
            assert release.wait(10)
            return counting(*args, **kwargs)

        app.gateway.reader.insights_stale = held
        app.set_filter("dest:+233*")
        await until(pilot, lambda: not app.busy)
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InsightsScreen) and app.screen.data is not None)
        title = app.screen.query_one("#stale-title", Static)
        assert "Stale messages: counting …" in text(title)
        assert not app.screen.query_one("#stale", DataTable).display  # nothing listed while it reads them
        release.set()
        await until(pilot, lambda: "counting" not in text(title))
        assert isinstance(app.screen.data["stale_count"], int)
        assert f"Stale messages: {app.screen.data['stale_count']:,}" in text(title)
        assert app.screen.query_one("#stale", DataTable).row_count == len(app.screen.data["stale"])
