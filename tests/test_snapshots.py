"""How each screen looks, on a deterministic database with a frozen clock (pytest-textual-snapshot).

What made pictures differ between runs, and is now fixed in the app: the table's automatic column
widths (computed lazily, so before or after the screenshot) and event lines cut at a width read
before layout.

After a deliberate change to the look: `pytest tests/test_snapshots.py --snapshot-update`, then
review the new SVGs in tests/__snapshots__/ by eye before committing them."""

from __future__ import annotations

import asyncio
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
SIZE = (150, 42)
# A fixed path: the offline health line shows it.
DB = Path(tempfile.gettempdir()) / "smsmon-snapshot-tests" / "snapshots.db"


@pytest.fixture(scope="module", autouse=True)
def database():
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


def test_main_screen(snap_compare) -> None:
    assert snap_compare(app(), terminal_size=SIZE, run_before=loaded)


def test_filtered(snap_compare) -> None:
    async def before(pilot) -> None:  # type: ignore[no-untyped-def]
        await loaded(pilot)
        await pilot.press("slash", *"status:not_delivered", "enter")
        await settle(pilot, lambda: pilot.app.filter_text == "status:not_delivered" and pilot.app.refreshes >= 2)

    assert snap_compare(app(), terminal_size=SIZE, run_before=before)


def test_message_screen(snap_compare) -> None:
    async def before(pilot) -> None:  # type: ignore[no-untyped-def]
        await loaded(pilot)
        await pilot.press("enter")
        await settle(pilot, lambda: getattr(pilot.app.screen, "detail", None) is not None)

    assert snap_compare(app(), terminal_size=SIZE, run_before=before)


@pytest.mark.parametrize("key", ["i", "d", "question_mark"], ids=["insights", "dead-letters", "help"])
def test_other_screens(snap_compare, key) -> None:
    async def before(pilot) -> None:  # type: ignore[no-untyped-def]
        await loaded(pilot)
        await pilot.press(key)
        await pilot.pause(1.0)

    assert snap_compare(app(), terminal_size=SIZE, run_before=before)
