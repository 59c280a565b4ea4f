"""The filter bar: `/` opens an input for the filter language; a valid filter is posted up as
FilterBar.Changed, an invalid one says what is wrong in place and stays open to be fixed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from rich.markup import escape
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static

from smsmon import filters
from smsmon.errors import FilterError
from smsmon.filters import Filter

PLACEHOLDER = "filter: text, status:failed provider:eazita dest:+233… error:101 network:Zong since:2h"


class FilterBar(Vertical):
    class Changed(Message):
        def __init__(self, bar: "FilterBar", filter: Filter) -> None:
            super().__init__()
            self.bar = bar
            self.filter = filter

        @property
        def control(self) -> "FilterBar":
            return self.bar

    class Closed(Message):
        """The input closed (submitted or given up): focus may go back to the table."""

    def __init__(self, clock: Callable[[], datetime], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.text = ""

    def compose(self) -> ComposeResult:
        yield Input(placeholder=PLACEHOLDER, id="filter-input")
        yield Static(id="filter-status")

    def on_mount(self) -> None:
        self.query_one(Input).display = False
        self.show(self.text)

    def open(self) -> None:
        box = self.query_one(Input)
        box.display = True
        box.value = self.text
        box.focus()

    def close(self) -> None:
        self.query_one(Input).display = False
        self.post_message(self.Closed())

    def show(self, text: str, error: str | None = None) -> None:
        """What the bar says: the filter in force, no filter, or what is wrong with the one typed."""
        self.text = text
        status = self.query_one("#filter-status", Static)
        if error:
            status.update(f"[b $error]✗ {escape(error)}[/]")
        elif text:
            status.update(f"[b]filter:[/] [b $accent]{escape(text)}[/]   (esc clears, / edits)")
        else:
            status.update("[dim]no filter (/ to filter)[/]")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            parsed = filters.parse(event.value, self.clock())
        except FilterError as exc:
            self.show(self.text, str(exc))
            return
        self.close()
        self.show(parsed.source)
        self.post_message(self.Changed(self, parsed))

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.query_one(Input).has_focus:
            event.stop()
            self.close()
            self.show(self.text)
