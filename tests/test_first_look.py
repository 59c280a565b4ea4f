"""The first screen's rows are read while Textual loads (issue 11: launch to rows), and the app
shows them with its first frame, through the same Reader it then keeps using."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from smsmon.lifecycle import WATCH_WINDOW
from smsmon.sim.generate import fill
from smsmon.timeutil import UTC
from smsmon.ui.app import SmsmonApp
from smsmon.ui.first_look import FirstLook, app_reader
from tests.test_app import table

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
    async with app.run_test(size=(160, 40)):
        assert app.refreshes >= 1 and table(app).row_count == min(120, 200)  # there at the first frame
        assert app.gateway.reader is look.reader  # one connection, not two
        assert app.first_look is None  # used once


async def test_a_first_look_of_a_file_that_is_not_a_database_leaves_the_error_to_the_app(tmp_path) -> None:
    bad = tmp_path / "not.db"
    bad.write_bytes(b"this is not SQLite" * 100)
    look = FirstLook(app_reader(bad, window=WATCH_WINDOW, region=None), lambda: NOW, live=False)
    deadline = time.monotonic() + 10
    while not look.finished:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert look.take() is None  # nothing to show; the app's own read says what is wrong
