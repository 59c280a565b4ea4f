"""The messages of one filter, opened from a row of the insights screen: the same table as the
main screen's (enter opens a message, pages load as you scroll, s sorts), over exactly the
messages the row counted; esc goes back to insights."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from rich.markup import escape
from textual.app import ComposeResult
from textual.widgets import Static

from smsmon.filters import Filter
from smsmon.timeutil import UTC_ZONE, DisplayZone
from smsmon.ui.gateway import Gateway
from smsmon.ui.screens.base import SubScreen
from smsmon.ui.widgets.messages_table import MessagesTable

PAGE = 200


class FilteredScreen(SubScreen):
    def __init__(self, title: str, flt: Filter, gateway: Gateway, clock: Callable[[], datetime], *,
                 zone: DisplayZone = UTC_ZONE, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.title_text = title
        self.filter = flt
        self.gateway = gateway
        self.clock = clock
        self.zone = zone
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield from self.header()
        yield Static(id="filtered-head")
        yield MessagesTable(id="filtered", zone=self.zone, flt=self.filter)
        yield from self.footer()

    def on_mount(self) -> None:
        self.sub_title = self.title_text
        self.query_one("#filtered-head", Static).update(
            f"[b]{escape(self.title_text)}[/]: [b $accent]{escape(self.filter.source)}[/]\n[dim](the same filter works on the main screen: /;"
            " esc goes back to insights)[/]")
        table = self.query_one(MessagesTable)
        table.focus()
        now = self.clock()
        self.gateway.read(lambda r: r.page(self.filter, limit=PAGE, now=now), lambda rows: self._show(rows, now), group="filtered")

    def _show(self, rows: list[dict[str, Any]], now: datetime) -> None:
        self.query_one(MessagesTable).replace(rows, now)
        self.loaded = True
