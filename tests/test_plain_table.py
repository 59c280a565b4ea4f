"""PlainTable draws a one-line cell itself (`_line_cell`) and keeps cells drawn across the
table's updates (`CellRenders`): what is on screen must be what DataTable would draw."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from smsmon.ui.widgets.plain_table import PlainTable

# Eight one-line cells that fit a column of 14 (12 inside its padding), drawn directly...
DIRECT = [
    "plain", "", "x" * 12, "日本語 wide", "[b]mark[/b]", "e\u0301 combining",
    Text("DELIVERED", style="bold green"),
    Text("SENT", style="yellow") + Text(" stale", style="dim italic"),
]
# ... and the cells DataTable draws: a tab, two lines, too wide for the column (cut by Rich).
CELLS = DIRECT + ["tab\there", "two\nlines", "far too long for its column", "x" * 13]
WIDTH = 14


class One(App):
    def compose(self) -> ComposeResult:
        yield PlainTable(cursor_type="row", zebra_stripes=True)


def visual(lines: Any) -> list[list[tuple[str, str, dict]]]:
    """Each character of each line with its look: the style's description and its meta."""
    return [[(ch, str(s.style), s.style.meta if s.style else {}) for s in line for ch in s.text] for line in lines]


async def test_a_cell_drawn_directly_looks_exactly_as_datatable_draws_it() -> None:
    app = One()
    async with app.run_test(size=(80, 20)) as pilot:
        t = app.query_one(PlainTable)
        t.add_column("a", key="a", width=WIDTH)
        for i, c in enumerate(CELLS):
            t.add_row(c, key=f"r{i}")
        await pilot.pause()
        direct = 0
        for row in range(len(CELLS)):
            for cursor in (False, True):
                base = t._get_row_style(row, t.rich_style)
                mine = t._line_cell(t._row_locations.get_key(row), t._column_locations.get_key(0), row, 0, base,
                                    WIDTH, cursor, False)
                t._cell_render_cache.purge()
                theirs = DataTable._render_cell(t, row, 0, base, WIDTH, cursor=cursor)
                t._cell_render_cache.purge()
                if mine is not None:
                    direct += 1
                    assert visual(mine) == visual(theirs), (CELLS[row], cursor)
        assert direct == 2 * len(DIRECT)  # with and without the cursor
