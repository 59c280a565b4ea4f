"""The live tail of events, newest first, one line each. Drawn line by line (Textual's line
API): a line is made once and kept while its event is on screen, so a refresh draws only the
new events (drawing every line four times a second took 13-62 ms at 200x60 under 500
callbacks/s, and a key pressed meanwhile waited)."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from smsmon.lifecycle import Status, outcome_of
from smsmon.timeutil import UTC_ZONE, DisplayZone
from smsmon.ui.format import OUTCOME_CLASSES, middle_cut
from smsmon.ui.widgets.plain_table import line_segments

SOURCE_LABEL = {"callback": "cb  ", "poll": "poll", "status_api": "api ", "import": "imp "}
ID_MIN = 11  # an id is never cut shorter than `3099fd…a9c1`


def event_outcome(event: dict[str, Any]) -> str:
    try:
        return outcome_of(event["provider"], Status(event["status"])).value
    except ValueError:
        return "UNKNOWN"


class EventStream(Widget):
    """Keeps the newest events and draws them at its current width when it renders (so a line
    is cut the same way whenever the events arrived, before or after layout)."""

    COMPONENT_CLASSES = {f"event-stream--{c}" for c in OUTCOME_CLASSES.values()}

    def __init__(self, keep: int = 200, *, zone: DisplayZone = UTC_ZONE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zone = zone
        self.items: deque[tuple[dict[str, Any] | int, datetime]] = deque(maxlen=keep)
        self._status_width = 0
        self._drawn: dict[int, tuple[Any, tuple[Any, ...], Strip]] = {}  # by id of an item: (the item, how, its line)

    def add(self, events: list[dict[str, Any]], skipped: int, now: datetime) -> None:
        if skipped:
            self.items.appendleft((skipped, now))
        for ev in events:
            self.items.appendleft((ev, now))
        self.refresh()

    def _line(self, item: dict[str, Any] | int, now: datetime, width: int, status_width: int) -> Text:
        """`18:03:21 DELIVERED  cb  016205e1…9e77`: the id gets what the width leaves, cut in the
        middle; flags follow where there is room."""
        if isinstance(item, int):
            line = Text(f"… {item:,} more", style="dim")
        else:
            line = Text(self.zone.clock(item["received_at"], now) + " ")
            style = self.get_component_rich_style(f"event-stream--{OUTCOME_CLASSES[event_outcome(item)]}", partial=True)
            line.append(f"{item['status']:<{status_width}}", style=style)
            if width - line.cell_len - 6 >= ID_MIN:  # the source, where it leaves the id room
                line.append(f" {SOURCE_LABEL.get(item['source'], item['source'])}")
            line.append(" ")
            mid = item["message_id"].partition(":")[2] or item["message_id"]
            flags = f" {item['flags']}" if item["flags"] else ""
            room = width - line.cell_len
            if flags and room - len(flags) < min(len(mid), ID_MIN):
                flags = ""  # whole, or not at all: the id comes first
            # Cut in the middle to what is left (the time's date can leave less than ID_MIN): an
            # id cut at its end as well read as another id.
            line.append(middle_cut(mid, max(1, room - len(flags))))
            if flags:
                line.append(flags, style="dim")
        line.truncate(width, overflow="ellipsis")
        return line

    def notify_style_update(self) -> None:
        self._drawn.clear()  # a theme or the CSS changed: the outcome colours too
        super().notify_style_update()

    def render_lines(self, crop: Region) -> list[Strip]:
        shown = list(self.items)[: self.size.height]
        self._status_width = max((len(i["status"]) for i, _ in shown if not isinstance(i, int)), default=0)
        self._drawn = {id(t): d for t in shown if (d := self._drawn.get(id(t))) is not None and d[0] is t}  # the rest left
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width, style = self.size.width, self.rich_style
        if y >= len(self.items):
            return Strip.blank(width, style)
        entry = self.items[y]
        item, now = entry
        how = (width, self._status_width, style)
        drawn = self._drawn.get(id(entry))
        if drawn is None or drawn[0] is not entry or drawn[1] != how:
            text = self._line(item, now, width, self._status_width)
            segments = Segment.apply_style(line_segments(text, self.app.console), style)
            drawn = (entry, how, Strip(segments).adjust_cell_length(width, style))
            self._drawn[id(entry)] = drawn
        return drawn[2]
