"""Whatever a provider or a stranger puts in a field is shown as it is, never read as Textual
or Rich markup: a message id of `[/x]oops` once ended the app with a MarkupError, and a network
of `[b]Zong` would have drawn in bold. Every screen that shows such a field is opened here."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from smsmon.providers import eazita, zeckta
from smsmon.store.writer import Writer
from smsmon.timeutil import UTC, zone
from smsmon.ui.app import SmsmonApp
from tests.helpers import callback, report_row
from tests.test_app import until

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
UUID, SRC, NETWORK, CODE, REASON = "[/x]oops", "[b]ACME", "[red]Zong", "[/e]", "[/reason] bad [b]"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("markup") / "m.db"
    body = json.dumps(callback("MESSAGE_FAILED", uuid=UUID, src=SRC, at="2026-11-23T11:58:00.000000Z")).encode()
    with Writer(path) as w:
        w.apply([zeckta.parse_callback(body, received_at=NOW),
                 eazita.row_event(report_row("FAILED", message_id=777, network=NETWORK, error_code=CODE,
                                             reference="[i]ref", sent="2026/11/23 16:50:00", done="2026/11/23 16:51:00"),
                                  tz=zone("Asia/Karachi"), received_at=NOW)])
        w.dead_letter(received_at="2026-11-23T11:59:00.000000Z", remote="[/remote]", path="/callbacks/[/p]",
                      reason=REASON, body=b'{"x": "[/body]"}')
    return path


def screen_text(app: SmsmonApp) -> str:
    """The whole screen as a person reads it (from the SVG Textual saves)."""
    svg = app.export_screenshot()
    lines = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return html.unescape("".join(re.sub(r"<[^>]+>", "", line) for line in lines)).replace("\xa0", " ")


async def test_every_screen_shows_markup_as_text(db) -> None:
    app = SmsmonApp(db, now=lambda: NOW, show_clock=False)
    async with app.run_test(size=(200, 50)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1 and not app.busy)
        shown = screen_text(app)
        assert UUID in shown and NETWORK in shown and CODE in shown
        app.main.table.focus()
        row = next(i for i in range(app.main.table.row_count)
                   if str(app.main.table.coordinate_to_cell_key((i, 0)).row_key.value) == f"zeckta:{UUID}")
        app.main.table.move_cursor(row=row)
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "MessageScreen" and UUID in screen_text(app))
        assert SRC in screen_text(app)
        await pilot.press("escape")
        await pilot.press("i")
        await until(pilot, lambda: type(app.screen).__name__ == "InsightsScreen" and not app.busy)
        await pilot.pause(0.5)
        assert CODE in screen_text(app) or NETWORK in screen_text(app)
        await pilot.press("escape")
        await pilot.press("d")
        await until(pilot, lambda: type(app.screen).__name__ == "DeadLettersScreen" and REASON in screen_text(app))
        assert "[/remote]" in screen_text(app) and "/callbacks/[/p]" in screen_text(app)
    assert app.return_code in (None, 0)


async def test_the_message_screen_saves_and_notifies_a_markup_id_as_text(db, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = SmsmonApp(db, now=lambda: NOW, show_clock=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.refreshes >= 1 and not app.busy)
        app.post_message(app.main.table.Opened(f"zeckta:{UUID}"))
        await until(pilot, lambda: type(app.screen).__name__ == "MessageScreen" and UUID in screen_text(app))
        await pilot.press("s")  # save: the notification names the message
        await until(pilot, lambda: any(tmp_path.iterdir()))
        await pilot.pause(0.2)
    assert app.return_code in (None, 0)
    saved = list(tmp_path.iterdir())
    assert [p.name for p in saved] == ["smsmon-zeckta---x-oops.json"]  # in this folder, whatever the id holds
    assert json.loads(saved[0].read_text())["message"]["id"] == f"zeckta:{UUID}"
