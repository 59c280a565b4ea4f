"""PlainTable: a DataTable that shows a string cell as the text it is.

DataTable reads a `str` cell as Rich markup: a message id of `[/x]oops` (a provider chooses its
ids) raised MarkupError and ended the app, and `[b]Zong` would have drawn in bold. Every table
of smsmon shows what providers and strangers send, so every one is a PlainTable. A ready-made
Text keeps its styles. (It is also faster: no markup to parse for each of 200 rows × 9 cells.)
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable


def plain(value: Any) -> Any:
    """A cell as text, never markup: `str` and None become Text; Text and other renderables stay."""
    if value is None:
        return Text("")
    if isinstance(value, str):
        return Text(value)
    return value


class PlainTable(DataTable):
    def add_row(self, *cells: Any, **kwargs: Any) -> Any:
        return super().add_row(*(plain(c) for c in cells), **kwargs)

    def update_cell(self, row_key: Any, column_key: Any, value: Any, **kwargs: Any) -> None:
        super().update_cell(row_key, column_key, plain(value), **kwargs)

    def update_cell_at(self, coordinate: Any, value: Any, **kwargs: Any) -> None:
        super().update_cell_at(coordinate, plain(value), **kwargs)
