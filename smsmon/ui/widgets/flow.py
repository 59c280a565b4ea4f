"""A line of facts that wraps between facts, never inside one: the summary and the health line.

Each fact is a piece of markup (theme variables allowed: `[$success]`), optionally with a
shorter form used when the long one does not fit on a line of its own. The facts are laid out
at the widget's real width when it renders, and its height is the number of lines they take, so
a narrow terminal gets more lines instead of facts running into each other or off the edge."""

from __future__ import annotations

from typing import Any, Sequence

from textual.content import Content
from textual.geometry import Size
from textual.widget import Widget

SEPARATOR = "   "

Fact = str | tuple[str, str]  # markup, or (markup, shorter markup)


def flow(facts: Sequence[Fact], width: int, separator: str = SEPARATOR) -> list[Content]:
    """Lay facts out in lines of at most `width` cells: a fact goes on the current line if it
    fits there, else it starts a new one; on a line of its own, a fact too long takes its short
    form, and is cut if even that is too long."""
    width = max(1, width)
    lines: list[Content] = []
    line: Content | None = None
    for fact in facts:
        long, short = (fact, fact) if isinstance(fact, str) else fact
        piece = Content.from_markup(long)
        if line is not None and line.cell_length + len(separator) + piece.cell_length <= width:
            line = line + separator + piece
            continue
        if line is not None:
            lines.append(line)
        if piece.cell_length > width:
            piece = Content.from_markup(short)
            if piece.cell_length > width:
                piece = piece.truncate(width, ellipsis=True)
        line = piece
    if line is not None:
        lines.append(line)
    return lines


class Flow(Widget):
    """Facts that wrap between facts (see `flow`)."""

    DEFAULT_CSS = """
    Flow {
        height: auto;
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.facts: list[Fact] = []

    def show(self, facts: Sequence[Fact]) -> None:
        if list(facts) == self.facts:
            return
        width = self.content_size.width
        lines_before = len(flow(self.facts, width)) if width else 0
        self.facts = list(facts)
        # A new layout only when the height changes: a layout of the whole screen costs tens of
        # milliseconds with a full table (measured under 500 callbacks/s), a repaint almost nothing.
        self.refresh(layout=not width or len(flow(self.facts, width)) != lines_before)

    @property
    def plain(self) -> str:
        """The text as laid out now (tests read it)."""
        return "\n".join(line.plain for line in flow(self.facts, self.content_size.width or 200))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(flow(self.facts, width)))

    def render(self) -> Content:
        return Content("\n").join(flow(self.facts, self.content_size.width))
