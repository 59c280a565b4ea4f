"""Dead letters: callbacks answered 400, with the reason and the body."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from smsmon.timeutil import UTC_ZONE, DisplayZone
from smsmon.ui.gateway import Gateway
from smsmon.ui.screens.base import SubScreen

SHOWN = 500


class DeadLettersScreen(SubScreen):
    def __init__(self, gateway: Gateway, *, zone: DisplayZone = UTC_ZONE, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.gateway = gateway
        self.zone = zone
        self.letters: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield from self.header()
        yield DataTable(id="letters", cursor_type="row", zebra_stripes=True)
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
        if not rows:
            self.query_one("#letter-body", Static).update("No dead letters: every callback so far was well formed.")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        r = self.letters.get(str(event.row_key.value))
        if r:
            body = r["body"] or "(empty body)"
            self.query_one("#letter-body", Static).update(f"[b]body[/b] ({len(body):,} characters)\n" + body[:3000])
