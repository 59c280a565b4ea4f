"""The first screen's rows are read while Textual loads (issue 11: launch to rows), and the app
shows them with its first frame, through the same Reader it then keeps using."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from smsmon.lifecycle import WATCH_WINDOW
from smsmon.sim.generate import fill
from smsmon.timeutil import UTC
from smsmon.ui.app import SmsmonApp
from smsmon.ui.first_look import FirstLook, app_reader
from tests.test_app import table, until

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("first") / "f.db"
    fill(path, messages=120, seed=5, days=1, now=NOW)
    return path


def ready(look: FirstLook) -> FirstLook:
    deadline = time.monotonic() + 10
    while look.take() is None:
        assert time.monotonic() < deadline, "the first look never finished"
        time.sleep(0.01)
    return look


async def test_the_first_frame_has_the_rows_read_before_textual_started(db) -> None:
    look = ready(FirstLook(app_reader(db, window=WATCH_WINDOW, region=None), lambda: NOW, live=False))
    app = SmsmonApp(db, now=lambda: NOW, show_clock=False, first_look=look)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1)
        assert table(app).row_count >= 40  # a screenful with the main screen's first frame...
        await until(pilot, lambda: table(app).row_count == 120)  # ... and the rest of the page after it
        assert app.refreshes == 1  # from the one read
        assert app.gateway.reader is look.reader  # one connection, not two
        assert app.first_look is None  # used once


class SlowLook(FirstLook):
    """A first look still reading when the app mounts (a cold cache, a slow disk)."""

    def __init__(self, *args, **kwargs) -> None:
        self.go = threading.Event()
        self.reads = 0
        super().__init__(*args, **kwargs)

    def _read(self, live: bool) -> None:
        self.go.wait(10)
        self.reads += 1
        super()._read(live)


async def test_a_first_look_still_reading_at_mount_is_waited_for_not_read_again(db) -> None:
    look = SlowLook(app_reader(db, window=WATCH_WINDOW, region=None), lambda: NOW, live=False)
    app = SmsmonApp(db, now=lambda: NOW, show_clock=False, first_look=look)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause(0.3)
        assert app.refreshes == 0 and not app._held  # nothing read meanwhile: the look is under way
        await pilot.press("question_mark")  # and the app answers keys meanwhile
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        look.go.set()
        await until(pilot, lambda: table(app).row_count == 120)
        assert app.refreshes == 1 and look.reads == 1


async def test_a_first_look_of_a_file_that_is_not_a_database_leaves_the_error_to_the_app(tmp_path) -> None:
    bad = tmp_path / "not.db"
    bad.write_bytes(b"this is not SQLite" * 100)
    look = FirstLook(app_reader(bad, window=WATCH_WINDOW, region=None), lambda: NOW, live=False)
    deadline = time.monotonic() + 10
    while not look.finished:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert look.take() is None  # nothing to show; the app's own read says what is wrong


async def test_the_collector_the_command_line_turned_off_for_start_up_is_back_once_the_rows_show(db, monkeypatch) -> None:
    """`smsmon.cli.main` starts every command with the cyclic collector off (start-up makes
    some 70,000 lasting objects it would walk again and again); the app turns it back on once it has drawn its
    first rows: a long-running watch must not pile up cyclic garbage."""
    import gc

    import smsmon.ui.app

    monkeypatch.setattr(smsmon.ui.app, "GC_BACK_S", 600.0)  # not the fallback: the first frame turns it on
    gc.disable()
    try:
        look = ready(FirstLook(app_reader(db, window=WATCH_WINDOW, region=None), lambda: NOW, live=False))
        app = SmsmonApp(db, now=lambda: NOW, show_clock=False, first_look=look)
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: app.refreshes >= 1)
            await until(pilot, gc.isenabled)  # once the first rows are drawn
    finally:
        gc.enable()
        gc.unfreeze()


def test_commands_other_than_the_app_run_with_the_collector_on(tmp_path, capsys) -> None:
    import gc

    import click

    from smsmon.cli import cli, main

    seen: list[bool] = []

    @cli.command("probe-collector", hidden=True)
    def probe() -> None:
        seen.append(gc.isenabled())

    try:
        with pytest.raises(SystemExit) as exit_:
            main(["probe-collector"])
        assert exit_.value.code == 0 and seen == [True]
        assert gc.isenabled()  # and after, whatever happened
        for name in ("web", "serve", "export"):  # web serves the app to browsers for days: not the app itself
            gc.disable()
            cli.get_command(click.Context(cli), name)
            assert gc.isenabled(), name
        gc.disable()
        cli.get_command(click.Context(cli), "browse")
        assert not gc.isenabled()  # the app turns it on once it has drawn
    finally:
        gc.enable()
        cli.commands.pop("probe-collector", None)
