"""How each screen looks, on a deterministic database with a frozen clock (pytest-textual-snapshot).

What made pictures differ between runs, and is now fixed in the app: the table's automatic column
widths (computed lazily, so before or after the screenshot) and event lines cut at a width read
before layout.

After a deliberate change to the look: `pytest tests/test_snapshots.py --snapshot-update`, then
review the new SVGs in tests/__snapshots__/ by eye before committing them."""

from __future__ import annotations

import asyncio
import fcntl
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from smsmon.sim.generate import fill
from smsmon.store.writer import Writer
from smsmon.timeutil import UTC
from smsmon.ui.app import SmsmonApp

pytest.importorskip("pytest_textual_snapshot")

FROZEN = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
# A fixed path: the offline health line shows it.
DB = Path(tempfile.gettempdir()) / "smsmon-snapshot-tests" / "snapshots.db"


@pytest.fixture(scope="module", autouse=True)
def database():
    # Two runs of the suite at once (on one machine) would share the fixed path: one at a time.
    lock = open(Path(tempfile.gettempdir()) / "smsmon-snapshot-tests.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield from _database()
    finally:
        lock.close()


def _database():
    shutil.rmtree(DB.parent, ignore_errors=True)
    DB.parent.mkdir(parents=True)
    fill(DB, messages=300, seed=3, days=1, now=FROZEN)
    with Writer(DB) as w:
        w.dead_letter(received_at="2026-11-23T11:58:00.000000Z", remote="203.0.113.9", path="/callbacks/zeckta",
                      reason="invalid_payload: missing required field `eventType`", body=b'{"eventId": "x"}')
    yield
    shutil.rmtree(DB.parent, ignore_errors=True)


def app() -> SmsmonApp:
    return SmsmonApp(DB, now=lambda: FROZEN, show_clock=False)


def at_rest(app: SmsmonApp) -> bool:
    """Nothing left to draw: no refresh or page load running."""
    return not app.busy


async def settle(pilot, condition) -> None:  # type: ignore[no-untyped-def]
    """Wait (with a deadline, never a bare sleep) for the condition, then for the app to be at rest."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not (condition() and at_rest(pilot.app)):
        assert loop.time() < deadline, "the app did not settle"
        await pilot.pause(0.05)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.2)


async def loaded(pilot) -> None:  # type: ignore[no-untyped-def]
    await settle(pilot, lambda: pilot.app.refreshes >= 1)


SIZES = {"80x24": (80, 24), "120x40": (120, 40), "200x60": (200, 60)}


async def press_and_settle(pilot, *keys: str, condition=lambda: True) -> None:  # type: ignore[no-untyped-def]
    await loaded(pilot)
    await pilot.press(*keys)
    await settle(pilot, condition)


def screen_data(pilot) -> bool:  # type: ignore[no-untyped-def]
    """The screen's data read, with the insights' costs (which fill in after the rest)."""
    data = getattr(pilot.app.screen, "data", None)
    return data is not None and (type(pilot.app.screen).__name__ != "InsightsScreen" or "cost_by_day" in data)


async def opened_from_insights(pilot) -> None:  # type: ignore[no-untyped-def]
    await press_and_settle(pilot, "i", condition=lambda: screen_data(pilot))
    pilot.app.screen.query_one("#by-network").focus()
    await pilot.press("enter")
    await settle(pilot, lambda: getattr(pilot.app.screen, "loaded", False))


SCREENS = {
    "main": loaded,
    "filtered": lambda pilot: press_and_settle(pilot, "slash", *"status:not_delivered", "enter",
                                              condition=lambda: pilot.app.filter_text == "status:not_delivered"
                                              and pilot.app.refreshes >= 2),
    "message": lambda pilot: press_and_settle(pilot, "enter", condition=lambda: getattr(pilot.app.screen, "detail", None)
                                              is not None),
    "insights": lambda pilot: press_and_settle(pilot, "i", condition=lambda: screen_data(pilot)),
    "opened": opened_from_insights,
    "dead-letters": lambda pilot: press_and_settle(pilot, "d", condition=lambda: bool(pilot.app.screen.letters)),
    "help": lambda pilot: press_and_settle(pilot, "question_mark"),
}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("screen", list(SCREENS))
def test_every_screen_at_every_size(snap_compare, screen, size) -> None:
    assert snap_compare(app(), terminal_size=SIZES[size], run_before=SCREENS[screen])
