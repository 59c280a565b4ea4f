"""Events received over the last half hour, as bars under a label that gives the scale.

The window fits the data: a demo's first minute is drawn per second, a busy half hour per
minute (the bucket is the smallest of BUCKETS_S whose bars fit the width). Bars start at 0, so
a quiet bucket is a low bar and an empty one draws nothing; the bucket still filling (the one
holding now) is drawn in a lighter style, as partial, instead of looking like a drop."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from rich.text import Text
from textual.widget import Widget

from smsmon.timeutil import UTC

WINDOW = timedelta(minutes=30)
BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300)
MIN_BARS = 10  # a window is never shorter than this many buckets: a first event is not a whole chart
BLOCKS = " ▁▂▃▄▅▆▇█"


def second(dt: datetime) -> str:
    """The key of a second, as the store's times start: `2026-11-23T12:00:05`."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


def buckets(per_second: Counter, now: datetime, columns: int) -> tuple[int, list[int]]:
    """(bucket seconds, counts oldest first, the last one the bucket holding now)."""
    now = now.astimezone(UTC)
    seen = [k for k, n in per_second.items() if n and k >= second(now - WINDOW)]
    epoch = int(now.timestamp())
    oldest = _epoch(min(seen)) if seen else epoch
    columns = max(1, columns)

    def needed(size: int) -> int:
        return (epoch - epoch % size - (oldest - oldest % size)) // size + 1

    size = next((b for b in BUCKETS_S if max(MIN_BARS, needed(b)) <= columns), BUCKETS_S[-1])
    n = min(columns, max(MIN_BARS, needed(size)), -(-int(WINDOW.total_seconds()) // size))
    last_start = epoch - epoch % size
    counts = [0] * n
    for key, count in per_second.items():
        t = _epoch(key)
        i = n - 1 - (last_start - (t - t % size)) // size
        if 0 <= i < n:
            counts[i] += count
    return size, counts


def _epoch(key: str) -> int:
    return int(datetime.fromisoformat(key).replace(tzinfo=UTC).timestamp())


def unit(size: int) -> str:
    return {1: "second", 60: "minute"}.get(size, f"{size} s" if size < 60 else f"{size // 60} min")


def window_text(size: int, n: int) -> str:
    seconds = size * n
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


class Activity(Widget):
    """A label line and bars (the rest of the height)."""

    COMPONENT_CLASSES = {"activity--bar", "activity--partial", "activity--label"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.per_second: Counter = Counter()
        self.now: datetime | None = None

    def show(self, per_second: Counter, now: datetime) -> None:
        self.per_second, self.now = per_second, now
        self.refresh()

    def describe(self, width: int) -> tuple[str, list[int]]:
        if self.now is None:
            return "events received", []
        size, counts = buckets(self.per_second, self.now, width)
        if not any(counts):
            return f"no events received in the last {window_text(60, 30)}", counts
        u, win, top, now = unit(size), window_text(size, len(counts)), max(counts), counts[-1]
        labels = (f"events per {u}, last {win}: max {top:,}, now {now:,} so far",
                  f"events/{u.replace(' ', '')}, last {win}: max {top:,}, now {now:,} so far",
                  f"events/{u.replace(' ', '')}, last {win}: max {top:,}")
        return next((label for label in labels if len(label) <= width), labels[-1]), counts

    def render(self) -> Text:
        width, height = self.content_size.width, max(1, self.content_size.height - 1)
        label, counts = self.describe(width)
        out = Text(label[:width], style=self.get_component_rich_style("activity--label", partial=True))
        if not counts:
            return out
        top = max(counts) or 1
        levels = height * 8
        bar_w = max(1, min(3, width // len(counts)))
        bar = self.get_component_rich_style("activity--bar", partial=True)
        partial = self.get_component_rich_style("activity--partial", partial=True)
        heights = [0 if not c else max(1, round(c / top * levels)) for c in counts]
        for row in range(height - 1, -1, -1):  # top row first
            line = Text("\n")
            for i, h in enumerate(heights):
                fill = min(8, max(0, h - row * 8))
                line.append(BLOCKS[fill] * bar_w, style=partial if i == len(heights) - 1 else bar)
            out.append_text(line)
        return out
