"""PlainTable draws a one-line cell itself (`_line_cell`) and keeps cells drawn across the
table's updates (`CellRenders`): what is on screen must be what DataTable would draw."""

from __future__ import annotations

from typing import Any

import random

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.geometry import Region
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


# A differential test (first written by a reviewer as a fuzz): a PlainTable and a DataTable given
# the same random operations draw the same lines: characters, styles and click targets (meta).
SIDE_W, SIDE_H = 50, 14
STYLES = ["", "bold", "red", "on blue", "italic green"]
WORDS = ["a", "bb", "ccc dd", "eeeeeeeee", "", "ffffffffffffffffff", "日本"]
OPERATIONS = ["add", "add", "update", "update", "number", "sort", "remove", "cursor", "hover", "zebra", "cursor_type",
              "show_cursor", "fixed_rows", "fixed_columns", "padding", "label", "tall", "header", "clear", "clear_columns"]


class Plain(PlainTable):
    can_focus = False


class Data(DataTable):
    can_focus = False


class SideBySide(App):
    CSS = f"DataTable {{ width: {SIDE_W}; height: {SIDE_H}; }}"

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Plain(id="plain")
            yield Data(id="data")


def random_cell(rng: random.Random) -> Text:
    word = rng.choice(WORDS)
    cell = Text(word, style=rng.choice(STYLES))
    if word and rng.random() < 0.3:
        cell.stylize("underline", 0, 1)
    return cell


def drawn(table: DataTable) -> list[list[tuple[str, str, tuple]]]:
    return [[(s.text, str(s.style), tuple(sorted((s.style.meta if s.style else {}).items()))) for s in strip]
            for strip in table.render_lines(Region(0, 0, SIDE_W, SIDE_H))]


async def drive(seed: int, steps: int = 120) -> None:
    rng = random.Random(seed)
    app = SideBySide()
    async with app.run_test(size=(2 * SIDE_W + 4, SIDE_H + 2)) as pilot:
        tables = (app.query_one("#plain", DataTable), app.query_one("#data", DataTable))
        keys: list[str] = []
        columns = 0

        def both(do: Any) -> None:
            for t in tables:
                do(t)

        def add_columns() -> None:
            nonlocal columns
            columns = rng.randint(1, 3)
            widths = [rng.choice([None, 4, 8, 12]) for _ in range(columns)]
            both(lambda t: [t.add_column(f"c{i}", key=f"c{i}", width=widths[i]) for i in range(columns)])

        add_columns()
        for step in range(steps):
            op = rng.choice(OPERATIONS)
            column = f"c{rng.randrange(columns)}"
            if op in ("add", "label", "tall"):
                key, cells = f"r{step}", [random_cell(rng) for _ in range(columns)]
                extra = {"label": {"label": f"L{step}"}, "tall": {"height": 2}}.get(op, {})
                both(lambda t: t.add_row(*cells, key=key, **extra))
                keys.append(key)
            elif op in ("update", "number") and keys:  # a number is not a Text: DataTable formats it
                key, value = rng.choice(keys), random_cell(rng) if op == "update" else rng.choice([1.5, 3, 1000])
                both(lambda t: t.update_cell(key, column, value))
            elif op == "sort" and keys:
                reverse = rng.random() < 0.5
                both(lambda t: t.sort(column, key=str, reverse=reverse))
            elif op == "remove" and keys:
                key = rng.choice(keys)
                keys.remove(key)
                both(lambda t: (setattr(t, "fixed_rows", min(t.fixed_rows, len(keys))), t.remove_row(key)))
            elif op in ("cursor", "hover") and keys:
                at = Coordinate(rng.randrange(len(keys)), rng.randrange(columns))
                for t in tables:
                    if op == "cursor":
                        t.move_cursor(row=at.row, column=at.column)
                    else:
                        t._set_hover_cursor(True)
                        t.hover_coordinate = at
            elif op in ("zebra", "show_cursor"):
                attribute = "zebra_stripes" if op == "zebra" else "show_cursor"
                both(lambda t: setattr(t, attribute, not getattr(t, attribute)))
            elif op in ("cursor_type", "fixed_rows", "fixed_columns", "padding", "header"):
                attribute, value = {"cursor_type": ("cursor_type", rng.choice(["cell", "row", "column", "none"])),
                                    "fixed_rows": ("fixed_rows", min(rng.randint(0, 2), len(keys))),
                                    "fixed_columns": ("fixed_columns", rng.randint(0, 1)),
                                    "padding": ("cell_padding", rng.randint(0, 2)),
                                    "header": ("header_height", rng.randint(1, 2))}[op]
                both(lambda t: setattr(t, attribute, value))
            elif op in ("clear", "clear_columns"):
                both(lambda t: (setattr(t, "fixed_rows", 0), t.clear(columns=op == "clear_columns")))
                keys = []
                if op == "clear_columns":
                    add_columns()
            await pilot.pause()
            assert drawn(tables[0]) == drawn(tables[1]), f"seed {seed}, step {step} ({op}): drawn otherwise"


@pytest.mark.parametrize("seed", range(3))
async def test_random_operations_draw_what_datatable_draws(seed: int) -> None:
    await drive(seed)
