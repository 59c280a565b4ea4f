"""The messages table: a page at a time, newest event first, coloured by outcome. It owns its
paging state (where the next page starts, whether one is loading) and asks for more with a
message; the app answers by appending rows.

Columns come by priority (status, message id, number, error, network, provider, time, then
events and flags) as the width allows, each as wide as its content (`plan`); ids too long for
their column are cut in the middle, so ids that differ only at the end stay distinct. The loaded
rows can be sorted by any column (`s`, or a click on its header): that sorts what is loaded, not
the database (the title says so); new pages and live updates keep the chosen order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from smsmon.ui.widgets.plain_table import PlainTable

from smsmon.present import plural
from smsmon.store.queries import Cursor, cursor
from smsmon.timeutil import UTC_ZONE, DisplayZone
from smsmon.ui.format import OUTCOME_CLASSES, middle_cut

FIRST_SLACK = 10  # rows beyond the terminal's height that an empty table takes before its first frame
NEAR_END = 10  # rows from the end of what is loaded at which the next page is asked for
PADDING = 2  # cells a column adds around its content (DataTable's cell padding, both sides)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    short: str  # the header when space is tight
    priority: int  # 0 first: what stays when the table is narrow
    cut: int = 0  # the narrowest its values may be cut to (0: never cut)


# In the order they are shown, left to right.
COLUMNS = [
    Column("when", "last event", "time", 6),
    Column("status", "status", "status", 0),
    Column("message", "message", "id", 1, cut=11),
    Column("to", "to", "to", 2),
    Column("error", "error", "err", 3),
    Column("network", "network", "net", 4, cut=7),
    Column("provider", "provider", "prov", 5),
    Column("events", "events", "ev", 7),
    Column("flags", "flags", "flags", 8, cut=10),
]
BY_KEY = {c.key: c for c in COLUMNS}


def plan(natural: dict[str, int], width: int) -> list[tuple[Column, int, str]]:
    """(column, width, header) of the columns that fit in `width` cells, in display order:
    columns join by priority at their narrowest (short header, values cut where allowed) while
    they fit; then, by priority again, each widens towards its content's width."""
    chosen: dict[str, int] = {}
    used = 0
    for col in sorted(COLUMNS, key=lambda c: c.priority):
        least = max(len(col.short), min(col.cut, natural[col.key]) if col.cut else natural[col.key])
        if used + least + PADDING > width:
            break
        chosen[col.key] = least
        used += least + PADDING
    for col in sorted((c for c in COLUMNS if c.key in chosen), key=lambda c: c.priority):
        want = max(natural[col.key], len(col.label))
        grow = min(want - chosen[col.key], width - used)
        if grow > 0:
            chosen[col.key] += grow
            used += grow
    return [(c, chosen[c.key], c.label if chosen[c.key] >= len(c.label) else c.short) for c in COLUMNS if c.key in chosen]


def sort_value(m: dict[str, Any], key: str) -> tuple[Any, ...] | None:
    """What a column sorts by; None for a missing value (those go last either way)."""
    value = {"when": m["last_event_at"], "status": m["status"], "message": m["provider_message_id"], "to": m["dest"],
             "error": m["error_code"], "network": m["network"], "provider": m["provider"], "events": m["events_count"],
             "flags": m["flags"]}[key]
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return (0, int(value), value)  # codes and ids in number order: 8 before 101
    return (0, value, "") if not isinstance(value, str) else (1, 0, value)


class MessagesTable(PlainTable):
    COMPONENT_CLASSES = {f"messages-table--{c}" for c in OUTCOME_CLASSES.values()}
    BINDINGS = [
        Binding("home,g", "newest", "Newest", show=False),
        Binding("end,G", "oldest", "Oldest loaded", show=False),
        Binding("s", "sort", "Sort", show=False),
        Binding("S", "sort_reverse", "Reverse", show=False),
    ]

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

    class NewestWanted(Message):
        """Home or `g`: back to the newest message, and a fresh first page."""

        def __init__(self, table: "MessagesTable") -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> "MessagesTable":
            return self.table

    def __init__(self, *, zone: DisplayZone = UTC_ZONE, flt: Any = None, **kwargs: Any) -> None:
        """`flt`: the filter of a table that shows one (opened from insights); None: the app's."""
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.zone = zone
        self.filter = flt
        self.next_after: Cursor | None = None  # where the next page starts; None: nothing more to load
        self.fetching = False
        self.waiting = 0  # messages updated outside what is shown, since the last full refresh
        self.data: dict[str, dict[str, Any]] = {}  # the loaded rows, by id, in page order
        self.natural = {c.key: 0 for c in COLUMNS}  # the widest value seen per column (only grows)
        self.layout_now: list[tuple[Column, int, str]] = []
        self.sort_key: str | None = None
        self.sort_reverse = False
        self.now: datetime | None = None
        # The width the screen expects this table to have, before the first layout gives the real
        # one: rows handed over then are drawn in the very first frame (a fill after the first
        # layout cost 100-140 ms from launch to rows, measured); a wrong guess only lays out again.
        self.expected_width = 0
        self._later: list[dict[str, Any]] = []  # rows of the first fill still to add (see _fill)

    # ── columns ──────────────────────────────────────────────────────────────
    def texts(self, m: dict[str, Any], now: datetime) -> dict[str, str]:
        status = m["status"] + (" stale" if m["stale"] else "")
        return {"when": self.zone.clock(m["last_event_at"], now), "status": status, "message": m["provider_message_id"],
                "to": m["dest"] or "", "error": m["error_code"] or "", "network": m["network"] or "",
                "provider": m["provider"], "events": str(m["events_count"]), "flags": (m["flags"] or "").replace(",", " ")}

    def _measure(self, rows: list[dict[str, Any]], now: datetime) -> None:
        for m in rows:
            for key, text in self.texts(m, now).items():
                if len(text) > self.natural[key]:
                    self.natural[key] = len(text)

    def _width(self) -> int:
        return max(0, (self.size.width or self.expected_width) - self.styles.scrollbar_size_vertical)

    def _relayout(self) -> bool:
        """Columns for the current width and content; True when they changed (then every row
        is drawn again)."""
        wanted = plan(self.natural, self._width()) if self._width() else self.layout_now
        if wanted == self.layout_now and len(self.columns) == len(wanted):
            return False
        self.layout_now = wanted
        self.clear(columns=True)
        for col, width, header in wanted:
            if col.key == "when":  # the zone, named as fully as the width allows
                header = next(h for h in (f"{col.label} ({self.zone.label})", f"time ({self.zone.label})", self.zone.label,
                                          col.short) if len(h) <= width)
            self.add_column(header, key=col.key, width=width)
        return True

    def on_resize(self) -> None:
        keep = self._cursor_id()
        if self.now is not None and self._relayout():
            self._fill(keep)

    def outcome_style(self, outcome: str) -> Style:
        return self.get_component_rich_style(f"messages-table--{OUTCOME_CLASSES.get(outcome, 'unknown')}", partial=True)

    def cells(self, m: dict[str, Any], now: datetime) -> list[Any]:
        texts = self.texts(m, now)
        out: list[Any] = []
        for col, width, _ in self.layout_now:
            text = texts[col.key]
            if col.key == "status":
                style = self.outcome_style(m["outcome"])
                cell = Text(m["status"], style=style + Style(dim=True) if m["stale"] else style)
                if m["stale"]:
                    cell.append(" stale", style="dim italic")
                out.append(cell)
            elif len(text) > width:
                out.append(middle_cut(text, width) if col.key == "message" else text[: width - 1] + "…")
            else:
                out.append(text)
        return out

    # ── rows ─────────────────────────────────────────────────────────────────
    def _cursor_id(self) -> str | None:
        if not self.row_count:
            return None
        return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    def _ordered(self) -> list[dict[str, Any]]:
        rows = list(self.data.values())
        if self.sort_key is None:
            return rows
        keyed = [(sort_value(m, self.sort_key), m) for m in rows]
        present = sorted((k, i, m) for i, (k, m) in enumerate(keyed) if k is not None)
        if self.sort_reverse:
            present.sort(key=lambda t: t[0], reverse=True)
        return [m for _, _, m in present] + [m for k, m in keyed if k is None]

    def _fill(self, keep: str | None) -> None:
        if not self.layout_now:
            return  # not laid out yet (rows handed over before the first frame): the first resize fills it
        now = self.now or datetime.now()
        scroll_y = self.scroll_y
        rows = self._ordered()
        # An empty table takes first the rows a screen can show, the rest once they are drawn:
        # at launch the first frame waits for no more than it shows (a page of 200 rows cost
        # 30-40 ms before the first frame).
        now_rows = self.app.size.height + FIRST_SLACK if not self.row_count and keep is None else len(rows)
        self._later = rows[now_rows:]
        self.clear()
        for m in rows[:now_rows]:
            self.add_row(*self.cells(m, now), key=m["id"])
        if self._later:
            self.call_after_refresh(self._flush_later)
        if keep and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), scroll=False)
            self.scroll_to(y=scroll_y, animate=False, immediate=True)
        self._title()

    def _flush_later(self) -> None:
        """The rows of the first fill that were left for after the first frame."""
        later, self._later = self._later, []
        if later:
            now = self.now or datetime.now()
            for m in later:
                if m["id"] not in self.rows and m["id"] in self.data:
                    self.add_row(*self.cells(m, now), key=m["id"])
            self._title()

    @property
    def following(self) -> bool:
        """At the top: new rows come in above and the view follows them."""
        return self.row_count == 0 or (self.cursor_row <= 0 and self.scroll_y == 0)

    def replace(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """A fresh first page; the selected message stays selected if it is still there."""
        keep = None if self.following else self._cursor_id()
        self.now = now
        self.data = {m["id"]: m for m in rows}
        self._measure(rows, now)
        self._relayout()
        self.next_after = cursor(rows[-1]) if rows else None
        self.fetching = False
        self.waiting = 0
        self._fill(keep)

    def append(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """The next page; if the cursor is still near the end (the user kept going while it
        loaded), ask for the one after."""
        self.fetching = False
        self.now = now
        self._flush_later()  # the new page goes after them
        new = [m for m in rows if m["id"] not in self.data]
        self.data.update((m["id"], m) for m in new)
        self._measure(new, now)
        keep = self._cursor_id()
        if self._relayout() or self.sort_key is not None or not self.layout_now:
            self._fill(keep)  # new widths, or new rows to put in their sorted places
        else:
            for m in new:
                self.add_row(*self.cells(m, now), key=m["id"])
        self.next_after = cursor(rows[-1]) if rows else None
        self._title()
        self._maybe_more()

    def update_rows(self, changed: dict[str, dict[str, Any]], now: datetime) -> None:
        """Rows on screen update in place; the others are counted as waiting elsewhere."""
        self.now = now
        self._flush_later()
        cells: list[tuple[str, str, Any]] = []
        for mid, m in changed.items():
            if mid in self.rows:
                self.data[mid] = m
                old = self.get_row(mid)
                for (col, _, _), before, cell in zip(self.layout_now, old, self.cells(m, now)):
                    if str(before) != str(cell) or getattr(before, "style", None) != getattr(cell, "style", None):
                        cells.append((mid, col.key, cell))  # only what changed
            else:
                self.waiting += 1
        self.update_cells(cells)
        self._title()

    def _title(self) -> None:
        loaded = plural(self.row_count, "loaded row") if self.sort_key else f"{self.row_count:,} loaded"
        if self.sort_key is not None:
            arrow = "↓" if self.sort_reverse else "↑"
            title = f"messages by {BY_KEY[self.sort_key].label} {arrow}: the {loaded} only, not the database (s next, S reverse)"
        else:
            title = f"{'messages' if self.filter is None else 'these messages'}, newest event first ({loaded})"
        if self.waiting:
            title += f" · {self.waiting:,} updated elsewhere: g for the newest"
        self.border_title = title

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

    # ── keys and clicks ──────────────────────────────────────────────────────
    def to_newest(self) -> None:
        self.move_cursor(row=0)
        self.scroll_home(animate=False)

    def action_newest(self) -> None:
        self.to_newest()
        if self.sort_key is None:
            self.post_message(self.NewestWanted(self))

    def action_oldest(self) -> None:
        self._flush_later()
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)
            self.scroll_end(animate=False)

    def sort_by(self, key: str | None, reverse: bool = False) -> None:
        """Sort the loaded rows by a column (None: as loaded, newest event first)."""
        self.sort_key, self.sort_reverse = key, reverse
        self._fill(self._cursor_id())
        self.to_newest()

    def action_sort(self) -> None:
        """`s`: by the next shown column; after the last, back to newest first."""
        keys = [c.key for c, _, _ in self.layout_now]
        if self.sort_key not in keys:
            self.sort_by(keys[0] if keys else None)
        elif keys.index(self.sort_key) + 1 < len(keys):
            self.sort_by(keys[keys.index(self.sort_key) + 1])
        else:
            self.sort_by(None)

    def action_sort_reverse(self) -> None:
        """`S`: the other way round (unsorted: oldest loaded first)."""
        if self.sort_key is None:
            self.sort_by("when")
        else:
            self.sort_by(self.sort_key, not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header: sort by it; again: the other way; a third time: as loaded."""
        event.stop()
        key = str(event.column_key.value)
        if self.sort_key != key:
            self.sort_by(key)
        elif not self.sort_reverse and key != "when":
            self.sort_by(key, reverse=True)
        else:
            self.sort_by(None)
