"""Dead letters: callbacks answered 400, with the reason and the body."""

from __future__ import annotations

import time
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from smsmon.ui.widgets.plain_table import PlainTable

from smsmon.present import plural
from smsmon.timeutil import UTC_ZONE, DisplayZone
from smsmon.ui.gateway import Gateway
from smsmon.ui.screens.base import SubScreen

SHOWN = 500
CONFIRM_S = 3.0  # R must be pressed again within this to replay them all
NONE = """[b]No dead letters.[/b] Every callback received so far was well formed.

A callback lands here when the listener answers it [b]400[/b]: a body that is not JSON or not a JSON
object, or one without [b]eventId[/b], [b]eventType[/b], [b]timestamp[/b] or [b]message.uuid[/b] (or with
them of the wrong type). It is kept with the reason, the sender's address and the body (up to
64 KiB), so that you can see what a provider or a proxy sent. Bodies over 64 KiB are answered
413 and not kept.

Once smsmon (or the provider) is fixed, [b]r[/b] replays the chosen one and [b]R[/b] all of them: a
callback that parses now becomes an event and leaves this list."""


class DeadLettersScreen(SubScreen):
    BINDINGS = [
        Binding("r", "replay", "Replay"),
        Binding("R", "replay_all", "Replay all"),
    ]

    class Replay(Message):
        """`r`, `R`: run these dead letters (None: all) through the parser again."""

        def __init__(self, screen: "DeadLettersScreen", ids: tuple[int, ...] | None) -> None:
            super().__init__()
            self.screen = screen
            self.ids = ids

    def __init__(self, gateway: Gateway, *, zone: DisplayZone = UTC_ZONE, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.gateway = gateway
        self.zone = zone
        self.letters: dict[str, dict[str, Any]] = {}
        self._all_asked = 0.0  # when R was pressed once (monotonic)

    def compose(self) -> ComposeResult:
        yield from self.header()
        yield PlainTable(id="letters", cursor_type="row", zebra_stripes=True)
        yield Static("", id="letter-body")
        yield from self.footer()

    def on_mount(self) -> None:
        self.sub_title = "dead letters: callbacks answered 400, kept with the reason"
        table = self.query_one(DataTable)
        for c in (f"received ({self.zone.label})", "from", "path", "reason"):
            table.add_column(c)
        self.load()

    def load(self) -> None:
        self.gateway.read(lambda r: r.dead_letters(limit=SHOWN), self._show, group="letters")

    def action_replay(self) -> None:
        table = self.query_one(DataTable)
        if not self.letters or table.cursor_row is None or table.cursor_row >= table.row_count:
            self.notify("no dead letter to replay")
            return
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        self.post_message(self.Replay(self, (int(str(key)),)))

    def action_replay_all(self) -> None:
        """Twice within CONFIRM_S: every dead letter of the database, not only those shown."""
        if not self.letters:
            self.notify("no dead letter to replay")
            return
        if time.monotonic() - self._all_asked > CONFIRM_S:
            self._all_asked = time.monotonic()
            self.notify("R again replays every dead letter in the database through the parser", timeout=CONFIRM_S)
            return
        self._all_asked = 0.0
        self.post_message(self.Replay(self, None))

    def _show(self, rows: list[dict[str, Any]]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.letters = {str(r["id"]): r for r in rows}
        for r in rows:
            table.add_row(self.zone.show(r["received_at"]), r["remote"] or "", r["path"], r["reason"], key=str(r["id"]))
        table.display = bool(rows)
        if not rows:
            self.query_one("#letter-body", Static).update("")
        self.sub_title = f"dead letters: {plural(len(rows), 'callback')} answered 400" + (
            f" (the newest {SHOWN:,})" if len(rows) >= SHOWN else "")
        if not rows:
            self.query_one("#letter-body", Static).update(NONE)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        r = self.letters.get(str(event.row_key.value))
        if r:
            body = r["body"] or "(empty body)"
            replayed = (f"[b]replayed[/b] {self.zone.show(r['replayed_at'])}: it still fails, with the reason above\n"
                        if r.get("replayed_at") else "")
            self.query_one("#letter-body", Static).update(
                f"[b]reason[/b] {escape(r['reason'])}\n{replayed}[b]body[/b] ({plural(len(body), 'character')})  "
                "[dim]r replays it, R all[/]\n" + escape(body[:3000]))
