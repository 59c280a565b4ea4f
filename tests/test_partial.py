"""A filter the maintained counts cannot answer (a number prefix, free text, a stored flag) is
counted from at most RAW_LIMIT messages; past that the figures say so instead of passing for
exact, in `smsmon stats` and on the main screen."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import datetime
from typing import Callable

import pytest
from click.testing import CliRunner

from smsmon import filters
from smsmon.cli import cli
from smsmon.sim.generate import fill
from smsmon.store import stats
from smsmon.store.reader import Reader
from smsmon.timeutil import UTC

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("partial") / "p.db"
    fill(path, messages=300, seed=2, days=1, now=NOW)
    return path


def test_a_small_scope_is_exact_and_a_large_one_says_it_is_partial(db, monkeypatch) -> None:
    with Reader(db) as r:
        f = r.localize(filters.parse("dest:+233*", NOW))
        exact = r.stats(f, now=NOW)
        assert not exact.partial and exact.messages > 60
        monkeypatch.setattr(stats, "RAW_LIMIT", 50)
        capped = r.stats(f, now=NOW)
    assert capped.partial and capped.messages == 50  # the first 50: their figures add up to what is said


def test_stats_command_says_the_figures_are_of_the_first_messages_only(db, monkeypatch) -> None:
    monkeypatch.setattr(stats, "RAW_LIMIT", 50)
    r = CliRunner().invoke(cli, ["stats", "--db", str(db), "--filter", "dest:+233*"])
    assert r.exit_code == 0, r.output
    assert "50 messages or more; the figures below are of the first 50 read" in r.stdout
    as_json = CliRunner().invoke(cli, ["stats", "--db", str(db), "--filter", "dest:+233*", "--json"])
    assert json.loads(as_json.stdout)["partial"] is True and json.loads(as_json.stdout)["limit"] == 50


def hold_reads(app, read: str, hold: Callable[[int | None], bool]) -> tuple[threading.Event, list[int | None]]:
    """The app's reads through the reader's method `read` whose limit `hold` picks wait until the
    event returned is set (a large count, held until the test has looked); the list gets the
    limit of every such read."""
    release = threading.Event()
    limits: list[int | None] = []
    reading = getattr(app.gateway.reader, read)

    def held(*args, limit=None, **kwargs):
        limits.append(limit)
        if hold(limit):
            assert release.wait(10)
        return reading(*args, limit=limit, **kwargs)

    setattr(app.gateway.reader, read, held)
    return release, limits


@contextlib.asynccontextmanager
async def counting_app(db, monkeypatch):  # type: ignore[no-untyped-def]
    """The app on the test file, counting at most 20 then 50 messages of a filter no count
    answers (RAW_FIRST, RAW_LIMIT), once its first screen is read: (app, pilot)."""
    from smsmon.ui.app import SmsmonApp
    from tests.test_app import until

    monkeypatch.setattr(stats, "RAW_FIRST", 20)
    monkeypatch.setattr(stats, "RAW_LIMIT", 50)
    app = SmsmonApp(db, now=lambda: NOW, show_clock=False)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1 and not app.busy)
        yield app, pilot


async def test_the_rows_of_a_number_prefix_show_before_its_figures_are_counted(db) -> None:
    from smsmon.ui.app import SmsmonApp
    from tests.test_app import table, text, until

    app = SmsmonApp(db, now=lambda: NOW, show_clock=False)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1 and not app.busy)
        release, _ = hold_reads(app, "stats", lambda limit: True)
        app.set_filter("dest:+233*")
        with Reader(db) as r:
            f = r.localize(filters.parse("dest:+233*", NOW))
            want = [m["id"] for m in r.iter_messages(f, now=NOW)]
            exact = r.stats(f, now=NOW)
        await until(pilot, lambda: table(app).row_count == min(len(want), 200))
        assert "counting the messages of this filter" in text(app.screen.query_one("#summary"))
        release.set()
        await until(pilot, lambda: f"{exact.messages:,} messages" in text(app.screen.query_one("#summary")))


async def test_a_large_prefix_shows_the_figures_of_its_first_messages_at_once_then_counts_on(db, monkeypatch) -> None:
    """Issue 11: at 10M events the figures of a number prefix take 0.7 s over RAW_LIMIT messages;
    the screen shows those of the first RAW_FIRST at once (tens of ms), says it counts on, and
    then shows RAW_LIMIT's."""
    from tests.test_app import text, until

    async with counting_app(db, monkeypatch) as (app, pilot):
        release, limits = hold_reads(app, "stats", lambda limit: limit == 50)
        summary = app.screen.query_one("#summary")
        app.set_filter("dest:+233*")
        await until(pilot, lambda: "figures of the first 20 messages only" in text(summary))
        assert "counting on to 50" in text(summary)
        release.set()
        await until(pilot, lambda: "figures of the first 50 messages only" in text(summary))
        assert "narrow the filter for exact ones" in text(summary)
        assert limits == [20, 50]


async def test_insights_under_a_large_prefix_show_its_first_messages_at_once_then_count_on(db, monkeypatch) -> None:
    """Issue 11: as the summary line, the insights screen shows the figures of the newest
    RAW_FIRST messages at once, says it counts on, then shows RAW_LIMIT's; the costs say which
    messages they are of, and the stale messages are counted once, not again for each look."""
    from smsmon.ui.screens.insights import InsightsScreen
    from tests.test_app import text, until

    async with counting_app(db, monkeypatch) as (app, pilot):
        release, limits = hold_reads(app, "insights_period", lambda limit: limit == 50)
        stale_reads = []
        reading_stale = app.gateway.reader.insights_stale
        app.gateway.reader.insights_stale = lambda *a, **k: stale_reads.append(1) or reading_stale(*a, **k)
        app.set_filter("dest:+233*")
        await pilot.press("i")
        head = lambda: text(app.screen.query_one("#insights-head"))  # noqa: E731
        await until(pilot, lambda: isinstance(app.screen, InsightsScreen) and "figures of the newest 20 messages only" in head())
        assert "counting on to 50" in head()
        await until(pilot, lambda: "(of the newest 20 messages only)" in text(app.screen.query_one("#cost-network-title")))
        await until(pilot, lambda: "counting …" not in text(app.screen.query_one("#stale-title")))
        release.set()
        await until(pilot, lambda: "figures of the newest 50 messages only" in head())
        assert "narrow the filter for exact ones" in head()
        assert "first bar: read in part" in text(app.screen.query_one("#rate-caption"))
        await until(pilot, lambda: "(of the newest 50 messages only)" in text(app.screen.query_one("#cost-network-title")))
        assert "counting …" not in text(app.screen.query_one("#stale-title"))  # kept from the first look
        assert limits == [20, 50] and stale_reads == [1]


async def test_an_insights_screen_left_before_its_figures_come_starts_no_second_look(db, monkeypatch) -> None:
    """A look delivered after its screen has gone must not start the next (its read would cancel
    the reads of the screen now showing, which then stays on "loading …")."""
    from smsmon.ui.screens.insights import InsightsScreen
    from smsmon.ui.screens.main import MainScreen
    from tests.test_app import text, until

    async with counting_app(db, monkeypatch) as (app, pilot):
        held = [True]
        release, limits = hold_reads(app, "insights_period", lambda limit: held.pop() if held else False)  # the first read only
        app.set_filter("dest:+233*")
        await pilot.press("i")
        await until(pilot, lambda: limits == [20])
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        release.set()
        await pilot.press("i")  # a new screen: its own first look, then its second
        head = lambda: text(app.screen.query_one("#insights-head"))  # noqa: E731
        await until(pilot, lambda: isinstance(app.screen, InsightsScreen) and "figures of the newest 50 messages" in head())
        assert limits == [20, 20, 50]


def test_a_read_no_longer_wanted_is_stopped_by_sqlite_and_the_next_one_runs(db, monkeypatch) -> None:
    """Issue 11 asks for raw scans that are bounded and cancellable: the app's reads share one
    connection, so a count whose filter has just been changed would keep the new filter's rows
    waiting for as long as it takes (0.7 s at 10M events). A read whose asker says it is no longer
    wanted stops within STOP_CHECK_STEPS of SQLite's steps; one still wanted is not disturbed."""
    from smsmon.store import reader as reader_module
    from smsmon.errors import ReadStopped

    monkeypatch.setattr(reader_module, "STOP_CHECK_STEPS", 100)  # this file is small: look often
    with Reader(db) as r:
        f = r.localize(filters.parse("dest:+233*", NOW))
        plain = r.stats(f, now=NOW)
        asked: list[bool] = []
        with r.stoppable(lambda: asked.append(True) or False):  # wanted throughout
            assert r.stats(f, now=NOW) == plain
        assert asked  # it was asked
        with r.stoppable(lambda: True), pytest.raises(ReadStopped):
            r.stats(f, now=NOW)
        assert r.stats(f, now=NOW) == plain  # the connection goes on, without the question


async def test_an_insights_read_that_fails_stops_saying_it_is_loading_or_counting_on(db, monkeypatch) -> None:
    """A read of the insights screen failing (the database gone or locked; the app's
    notification says why): the screen no longer says it is loading, or counting on; also when
    the second look fails while another screen is on top of it; and never about figures of
    another period than the one that failed."""
    import threading

    from smsmon.errors import StoreUnavailable
    from smsmon.ui.screens.insights import InsightsScreen
    from tests.test_app import text, until

    async with counting_app(db, monkeypatch) as (app, pilot):
        reading = app.gateway.reader.insights_period
        fail = {"limits": {50}}
        go_on = threading.Event()
        go_on.set()

        def failing(*args, limit=None, **kwargs):
            if limit in fail["limits"]:
                assert go_on.wait(10)
                raise StoreUnavailable("database /tmp/x.db unavailable: disk I/O error")
            return reading(*args, limit=limit, **kwargs)

        app.gateway.reader.insights_period = failing
        app.set_filter("dest:+233*")
        await pilot.press("i")
        insights = app.screen
        head = lambda: text(insights.query_one("#insights-head"))  # noqa: E731
        await until(pilot, lambda: isinstance(insights, InsightsScreen) and "counting on failed" in head())
        assert "figures of the newest 20 messages only" in head() and "counting on to" not in head()

        go_on.clear()  # the second look of the next period fails while help is on top
        await pilot.press("w")
        await until(pilot, lambda: "the last 7 days" in insights.sub_title or "counting on to 50" in head())
        await until(pilot, lambda: "2026-11-16" in head() and "counting on to 50" in head())
        await pilot.press("question_mark")
        await until(pilot, lambda: app.screen is not insights)
        go_on.set()
        await until(pilot, lambda: "counting on failed" in head())
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is insights)

        fail["limits"] = {20}  # now the first look of the next period fails: it says so, not "counting on failed"
        await pilot.press("w")
        await until(pilot, lambda: "could not read the last hour" in head())
        assert "figures of" not in head()


async def test_leaving_insights_while_its_reads_are_out_ends_nothing_and_the_next_screen_reads(db, monkeypatch) -> None:
    """Found by a new user pressing `i` then `esc` quickly: a result arriving after the screen
    had left the stack, before its widgets went, found none to draw in, and the app ended
    ("internal error: NoMatches"). Now what arrives for a screen that has gone is dropped, its
    reads are cancelled, and a new insights screen reads on its own."""
    from smsmon.ui.screens.insights import InsightsScreen
    from smsmon.ui.screens.main import MainScreen
    from tests.test_app import text, until

    async with counting_app(db, monkeypatch) as (app, pilot):
        release, _ = hold_reads(app, "insights_costs", lambda limit: True)  # the costs wait
        answered: list[int] = []
        reading = app.gateway.reader.insights_costs
        app.gateway.reader.insights_costs = lambda *a, **k: (reading(*a, **k), answered.append(1))[0]
        await pilot.press("i")
        first = app.screen
        await until(pilot, lambda: isinstance(first, InsightsScreen) and first.data is not None)  # its figures shown, costs out
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        release.set()  # the costs come back for a screen that has gone
        await until(pilot, lambda: answered == [1])
        # what a result arriving between the pop and the unmount does (too quick to time here):
        first._show_costs(first.data, {"cost_by_day": [], "cost_by_network": [], "costs_partial": False})
        first.read_failed(first._reading)
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InsightsScreen) and app.screen is not first
                    and "messages by their latest event" in text(app.screen.query_one("#insights-head")))
        assert app.is_running
