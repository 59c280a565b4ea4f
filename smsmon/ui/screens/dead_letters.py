"""Dead letters: callbacks answered 400, with the reason and the body."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from smsmon.ui.widgets.plain_table import PlainTable

from smsmon.present import plural
from smsmon.timeutil import UTC_ZONE, DisplayZone
from smsmon.ui.gateway import Gateway
from smsmon.ui.screens.base import SubScreen

SHOWN = 500
NONE = """[b]No dead letters.[/b] Every callback received so far was well formed.

A callback lands here when the listener answers it [b]400[/b]: a body that is not JSON or not a JSON
object, or one without [b]eventId[/b], [b]eventType[/b], [b]timestamp[/b] or [b]message.uuid[/b] (or with
them of the wrong type). It is kept with the reason, the sender's address and the body (up to
64 KiB), so that you can see what a provider or a proxy sent. Bodies over 64 KiB are answered
413 and not kept."""


class DeadLettersScreen(SubScreen):
    def __init__(self, gateway: Gateway, *, zone: DisplayZone = UTC_ZONE, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.gateway = gateway
        self.zone = zone
        self.letters: dict[str, dict[str, Any]] = {}

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
        self.gateway.read(lambda r: r.dead_letters(limit=SHOWN), self._show, group="letters")

    def _show(self, rows: list[dict[str, Any]]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.letters = {str(r["id"]): r for r in rows}
        for r in rows:
            table.add_row(self.zone.show(r["received_at"]), r["remote"] or "", r["path"], r["reason"], key=str(r["id"]))
        table.display = bool(rows)
        self.sub_title = f"dead letters: {plural(len(rows), 'callback')} answered 400" + (
            f" (the newest {SHOWN:,})" if len(rows) >= SHOWN else "")
        if not rows:
            self.query_one("#letter-body", Static).update(NONE)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        r = self.letters.get(str(event.row_key.value))
        if r:
            body = r["body"] or "(empty body)"
            self.query_one("#letter-body", Static).update(
                f"[b]reason[/b] {escape(r['reason'])}\n[b]body[/b] ({plural(len(body), 'character')})\n" + escape(body[:3000]))
