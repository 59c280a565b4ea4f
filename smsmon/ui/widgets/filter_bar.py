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

PLACEHOLDER = "filter: text, status:failed provider:eazita dest:+233… error:101 network:Zong country:GH since:2h"
JUMP_HINT = ("jump in time: [b]until:[/] shows what was newest then (until:2h is two hours ago, until:2026-11-23T14:00,"
             " until:yesterday); [b]since:[/] starts a range (since:2026-11-23T13:00 until:2026-11-23T14:00)."
             " Enter applies, esc gives up.")


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
        yield Input(placeholder=PLACEHOLDER, id="filter-input", select_on_focus=False)
        yield Static(JUMP_HINT, id="filter-hint")
        yield Static(id="filter-status")

    def on_mount(self) -> None:
        self.query_one(Input).display = False
        self.query_one("#filter-hint").display = False
        self.show(self.text)

    def open(self, *, jump: bool = False) -> None:
        """Edit the filter; with `jump`, with an `until:` to complete and the ways to say a time."""
        box = self.query_one(Input)
        box.display = True
        value = self.text
        if jump:
            words = [w for w in value.split() if not w.startswith(("until:", "since:"))]
            value = " ".join([*words, "until:"])
        box.value = value
        box.cursor_position = len(value)
        self.query_one("#filter-hint").display = jump
        box.focus()

    def close(self) -> None:
        self.query_one(Input).display = False
        self.query_one("#filter-hint").display = False
        self.post_message(self.Closed())

    def show(self, text: str, error: str | None = None) -> None:
        """What the bar says: the filter in force, no filter, or what is wrong with the one typed."""
        self.text = text
        status = self.query_one("#filter-status", Static)
        if error:
            status.update(f"[b $error]✗ {escape(error)}[/]")
        elif text:
            status.update(f"[b]filter:[/] [b $accent]{escape(text)}[/]   (esc clears, / edits, t jumps in time)")
        else:
            status.update("[dim]no filter (/ filters, t jumps in time)[/]")

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
