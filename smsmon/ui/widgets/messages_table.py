"""The messages table: a page at a time, newest event first, coloured by outcome. It owns its
paging state (where the next page starts, whether one is loading) and asks for more with a
message; the app answers by appending rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from smsmon.store.queries import Cursor, cursor
from smsmon.timeutil import UTC_ZONE, DisplayZone
from smsmon.ui.format import OUTCOME_CLASSES, short_id

# (label, key, width): fixed widths, so the table looks the same however the rows arrived, and
# updating a cell never re-measures a column.
COLUMNS = [("last event", "when", 16), ("status", "status", 19), ("provider", "provider", 8), ("message", "message", 22),
           ("to", "to", 14), ("error", "error", 5), ("network", "network", 8), ("events", "events", 6), ("flags", "flags", 30)]
NEAR_END = 10  # rows from the end of what is loaded at which the next page is asked for


class MessagesTable(DataTable):
    COMPONENT_CLASSES = {f"messages-table--{c}" for c in OUTCOME_CLASSES.values()}

    class NeedMore(Message):
        """The cursor is near the end of what is loaded: the page after `after`, please."""

        def __init__(self, table: "MessagesTable", after: Cursor) -> None:
            super().__init__()
            self.table = table
            self.after = after

        @property
        def control(self) -> "MessagesTable":
            return self.table

    class Opened(Message):
        """Enter on a row: open that message."""

        def __init__(self, message_id: str) -> None:
            super().__init__()
            self.message_id = message_id

    def __init__(self, *, zone: DisplayZone = UTC_ZONE, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.zone = zone
        self.next_after: Cursor | None = None  # where the next page starts; None: nothing more to load
        self.fetching = False
        self.waiting = 0  # messages updated outside what is shown, since the last full refresh

    def on_mount(self) -> None:
        for label, key, width in COLUMNS:
            if key == "when":
                label = f"{label} ({self.zone.label})"
                width = max(width, len(label))
            self.add_column(label, key=key, width=width)

    def outcome_style(self, outcome: str) -> Style:
        return self.get_component_rich_style(f"messages-table--{OUTCOME_CLASSES.get(outcome, 'unknown')}", partial=True)

    def cells(self, m: dict[str, Any], now: datetime) -> list[Any]:
        style = self.outcome_style(m["outcome"])
        status = Text(m["status"], style=style + Style(dim=True) if m["stale"] else style)
        if m["stale"]:
            status.append(" stale", style="dim italic")
        return [self.zone.clock(m["last_event_at"], now), status, m["provider"], short_id(m["provider_message_id"]), m["dest"] or "",
                m["error_code"] or "", m["network"] or "", str(m["events_count"]), (m["flags"] or "").replace(",", " ")]

    @property
    def following(self) -> bool:
        """At the top: new rows come in above and the view follows them."""
        return self.row_count == 0 or (self.cursor_row <= 0 and self.scroll_y == 0)

    def replace(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """A fresh first page; the selected message stays selected if it is still there."""
        keep = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value if self.row_count else None
        at_top = self.following
        self.clear()
        for m in rows:
            self.add_row(*self.cells(m, now), key=m["id"])
        self.next_after = cursor(rows[-1]) if rows else None
        self.fetching = False
        self.waiting = 0
        if keep and not at_top and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), scroll=True)
        self._title()

    def append(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """The next page; if the cursor is still near the end (the user kept going while it
        loaded), ask for the one after."""
        self.fetching = False
        for m in rows:
            if m["id"] not in self.rows:
                self.add_row(*self.cells(m, now), key=m["id"])
        self.next_after = cursor(rows[-1]) if rows else None
        self._title()
        self._maybe_more()

    def update_rows(self, changed: dict[str, dict[str, Any]], now: datetime) -> None:
        """Rows on screen update in place; the others are counted as waiting elsewhere."""
        for mid, m in changed.items():
            if mid in self.rows:
                old = self.get_row(mid)
                for (_, key, _), before, cell in zip(COLUMNS, old, self.cells(m, now)):
                    if str(before) != str(cell) or getattr(before, "style", None) != getattr(cell, "style", None):
                        self.update_cell(mid, key, cell)  # only what changed: each call costs a layout
            else:
                self.waiting += 1
        self._title()

    def _title(self) -> None:
        more = f" · {self.waiting} updated elsewhere: g for the newest" if self.waiting else ""
        self.border_title = f"messages, newest event first ({self.row_count:,} loaded{more})"

    def _maybe_more(self) -> None:
        if not self.fetching and self.next_after is not None and self.cursor_row >= self.row_count - NEAR_END:
            self.fetching = True
            self.post_message(self.NeedMore(self, self.next_after))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._maybe_more()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.Opened(str(event.row_key.value)))

    def to_newest(self) -> None:
        self.move_cursor(row=0)
        self.scroll_home(animate=False)
