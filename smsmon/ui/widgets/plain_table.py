"""PlainTable: a DataTable that shows a string cell as the text it is, and draws again only the
cells that changed.

DataTable reads a `str` cell as Rich markup: a message id of `[/x]oops` (a provider chooses its
ids) raised MarkupError and ended the app, and `[b]Zong` would have drawn in bold. Every table
of smsmon shows what providers and strangers send, so every one is a PlainTable. A ready-made
Text keeps its styles. (It is also faster: no markup to parse for each of 200 rows × 9 cells.)

DataTable keys its rendered cells by a count of every change to the table: one changed cell,
or a fresh page of the same rows, and every visible cell is rendered again through Rich
(measured at 200x60 under 500 callbacks/s: 100-146 ms per redraw, once a second, and a key
pressed meanwhile waits for it). `CellRenders` keys them by what they show instead: a cell is
rendered again only when its text, style, width or look (cursor, zebra stripe, focus) changed.
And a cell that is one line of text that fits (nearly all of them) is drawn directly from the
Text's segments (`_line_cell`), not through Rich's Padding and Styled renderables: the same
characters in the same styles, several times faster, which matters where every visible row is
new each second (the table following the newest under a flood of callbacks).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey

CELLS_KEPT = 10_000  # rendered cells kept (DataTable's own cache is this size)


def plain(value: Any) -> Any:
    """A cell as text, never markup: `str` and None become Text; Text and other renderables stay."""
    if value is None:
        return Text("")
    if isinstance(value, str):
        return Text(value)
    return value


def looks(value: Any) -> Any:
    """What decides how a Text cell is drawn: its characters and styles (two Text objects made
    from the same row each second are the same cell). None for anything else: see CellRenders."""
    if isinstance(value, Text):
        return (value.plain, value.style, tuple(value.spans), value.justify, value.overflow, value.no_wrap)
    return None


def line_segments(text: Text, console: Any) -> list[Segment]:
    """A one-line Text's segments, styled as Rich draws them, without Rich's wrapping pass."""
    if text.spans or not text.style:
        return list(text.render(console, end=""))
    # Text.render leaves a Text's own style to the wrapping pass, which makes it a span
    return [Segment(text.plain, console.get_style(text.style))] if text.plain else []


class CellRenders:
    """Stands in for DataTable's `_cell_render_cache` (a mapping it tests with `in`, reads,
    writes and clears). DataTable's key is (row key, column key, base style, cursor, hover,
    hover shown, update count, pseudo-classes); this one leaves out the update count and checks
    instead, at each lookup, that the cell still holds what was rendered, at the same width.
    Rendered lines carry their row and column index (for mouse clicks): a cell whose row moved
    (new rows came in above it) gets its lines with the new index, not rendered again."""

    def __init__(self, table: DataTable, size: int = CELLS_KEPT) -> None:
        self.table = table
        self.size = size
        self._entries: OrderedDict[tuple, tuple[Any, int, tuple[int, int], Any]] = OrderedDict()  # least recent first

    def _key(self, key: tuple) -> tuple:
        t = self.table
        return (*key[:6], *key[7:], t.show_cursor, t.cursor_type, t.fixed_rows, t.fixed_columns, t.cell_padding,
                t.header_height)

    def _now(self, row_key: Any, column_key: Any) -> tuple[Any, int, tuple[int, int]]:
        """What the cell shows, its width and its place, as they are now. A cell that is not a
        Text of a one-line row in a column (a number, a renderable that may change in place, a
        row label, a taller row) is told apart by DataTable's own rule, its count of changes."""
        t = self.table
        column = t.columns.get(column_key)
        if column is None:  # the row labels' column
            row = t._row_locations.get(row_key)
            return ("changes", t._update_count), t._row_label_column_width, (-1 if row is None else row, -1)
        if row_key is t._header_row_key:
            value, row, height = column.label, -1, t.header_height
        else:
            value, row, height = t._data[row_key][column_key], t._row_locations.get(row_key), t.rows[row_key].height
        look = looks(value) if height == 1 else None
        if look is None:
            look = ("changes", t._update_count)
        return look, column.get_render_width(t), (row, t._column_locations.get(column_key))

    def _put(self, key: tuple, entry: tuple[Any, int, tuple[int, int], Any]) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __contains__(self, key: tuple) -> bool:
        mine = self._key(key)
        entry = self._entries.get(mine)
        if entry is None:
            return False
        self._entries.move_to_end(mine)
        look, width, where, lines = entry
        try:
            now_look, now_width, now_where = self._now(key[0], key[1])
        except KeyError:
            return False
        if now_look != look or now_width != width:
            return False
        if now_where != where:  # the same cell in another row: the same lines, told their new place
            meta = Style.from_meta({"row": now_where[0], "column": now_where[1]})
            lines = [[Segment(s.text, s.style + meta if s.style else meta, s.control) for s in line] for line in lines]
            self._put(mine, (look, width, now_where, lines))
        return True

    def __getitem__(self, key: tuple) -> Any:
        return self._entries[self._key(key)][3]

    def __setitem__(self, key: tuple, lines: Any) -> None:
        self._put(self._key(key), (*self._now(key[0], key[1]), lines))

    def clear(self) -> None:
        """DataTable clears its caches on every change of rows; these entries check themselves."""

    def purge(self) -> None:
        """The styles changed (a theme, the CSS): everything is drawn again."""
        self._entries.clear()


class PlainTable(DataTable):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if hasattr(self, "_cell_render_cache"):  # DataTable's, replaced: see CellRenders
            self._cell_render_cache = CellRenders(self)  # type: ignore[assignment]

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int, cursor: bool = False,
                     hover: bool = False) -> Any:
        if row_index < 0 or column_index < 0:  # the header, row labels
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        key = (row_key, column_key, base_style, cursor, hover, self._show_hover_cursor, self._update_count,
               self._pseudo_class_state)  # DataTable's own key of a rendered cell
        if key in self._cell_render_cache:
            return self._cell_render_cache[key]
        lines = self._line_cell(row_key, column_key, row_index, column_index, base_style, width, cursor, hover)
        if lines is None:  # not one line of text that fits: rendered (and kept) DataTable's way
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        self._cell_render_cache[key] = lines
        return lines

    def _line_cell(self, row_key: Any, column_key: Any, row_index: int, column_index: int, base_style: Style,
                   width: int, cursor: bool, hover: bool) -> list[list[Segment]] | None:
        """The lines DataTable would render for a one-line Text that fits its column (padding,
        text, the rest blank; row and column in each segment's meta, for clicks), or None for
        anything else (wrapped, labelled or fixed rows, tabs, justified or cut text): those go
        DataTable's way."""
        row = self.rows.get(row_key)
        cell = self._data.get(row_key, {}).get(column_key)
        pad = self.cell_padding
        if (row is None or row.height != 1 or self._labelled_row_exists or row_index < self.fixed_rows
                or column_index < self.fixed_columns or not isinstance(cell, Text)):
            return None
        text = cell.plain
        if "\n" in text or "\t" in text or cell.justify not in (None, "default") or cell_len(text) > width - 2 * pad:
            return None
        component, post = self._get_styles_to_render_cell(
            False, False, False, hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
        pre = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component
        blank = pre + post
        line = [Segment(" " * pad, blank)] if pad else []
        line += [Segment(s.text, pre + s.style + post if s.style else blank) for s in line_segments(cell, self.app.console)]
        rest = width - 2 * pad - cell_len(text)
        if rest > 0:
            line.append(Segment(" " * rest, blank))
        if pad:
            line.append(Segment(" " * pad, blank))
        return [line]

    def _update_dimensions(self, new_rows: Any) -> None:
        """DataTable measures every cell of every new row through Rich, for columns as wide as
        their content (30 ms for a page of 200 rows, each second while the table follows live
        data). Where every column has its width set and every new row is one line, there is
        nothing to measure: only the scrollable size is worked out."""
        if self.columns and not any(c.auto_width for c in self.columns.values()):
            rows = [self.rows.get(k) for k in new_rows]
            if all(r is None or (r.height == 1 and not r.auto_height and r.label is None) for r in rows):
                new_rows = ()
        super()._update_dimensions(new_rows)

    def notify_style_update(self) -> None:
        if isinstance(self._cell_render_cache, CellRenders):
            self._cell_render_cache.purge()
        super().notify_style_update()

    def add_row(self, *cells: Any, **kwargs: Any) -> Any:
        return super().add_row(*(plain(c) for c in cells), **kwargs)

    def update_cell(self, row_key: Any, column_key: Any, value: Any, **kwargs: Any) -> None:
        super().update_cell(row_key, column_key, plain(value), **kwargs)

    def update_cells(self, changes: list[tuple[Any, Any, Any]]) -> None:
        """(row key, column key, value) of many cells at once, drawn again in one refresh:
        `update_cell` refreshes the widget for each (1,275 cells a second under 500 callbacks/s
        cost 50 ms in refreshes alone). The column widths stay as they are."""
        for row_key, column_key, value in changes:
            row_key = row_key if isinstance(row_key, RowKey) else RowKey(row_key)
            column_key = column_key if isinstance(column_key, ColumnKey) else ColumnKey(column_key)
            if row_key not in self._row_locations or column_key not in self._column_locations:
                raise CellDoesNotExist(f"No cell exists for row_key={row_key!r}, column_key={column_key!r}.")
            self._data[row_key][column_key] = plain(value)
        if changes:
            self._update_count += 1
            self.refresh()

    def update_cell_at(self, coordinate: Any, value: Any, **kwargs: Any) -> None:
        super().update_cell_at(coordinate, plain(value), **kwargs)
