"""The insights screen's charts, drawn with plotext (textual-plotext): axes with values, rates on
a scale from 0 to 100 %, a marker on the baseline where a bucket had no finals (so an empty hour
never looks like a bad one), and the bucket still filling drawn in another colour, as partial.

plotext is imported when the first chart is made (the insights screen opening), never when the
app starts: start-up time is measured."""

from __future__ import annotations

from typing import Any

from smsmon.timeutil import human_duration

MAX_TICKS = 8  # x labels a chart shows at most: more run into each other
COMPLETE, PARTIAL, NONE_MARK = "green", "gray", "red"
KEY = " · grey bar: so far (the bucket is not over) · x: none in that bucket"  # plotext's legend would cover the bars
# Figures of only the newest messages (a filter no count answers): the chart starts at the oldest
# bucket they reach, which they hold only in part.
CUT_KEY = " · first bar: read in part"


def _key(series: list[dict[str, Any]]) -> str:
    return KEY + (CUT_KEY if series and series[0].get("cut") else "")


def make_plot(id: str) -> Any:
    from textual_plotext import PlotextPlot

    return PlotextPlot(id=id)


def _label(bucket: str, hourly: bool) -> str:
    return bucket[11:13] + "h" if hourly else bucket[5:10]


def _xticks(plt: Any, series: list[dict[str, Any]], hourly: bool) -> None:
    step = max(1, -(-len(series) // MAX_TICKS))
    ticks = list(range(len(series) - 1, -1, -step))[::-1]
    plt.xticks(ticks, [_label(series[i]["bucket"], hourly) for i in ticks])
    plt.xlim(-1, len(series))


def _bars(plt: Any, series: list[dict[str, Any]], values: list[float | None], partial_label: str, empty_label: str) -> None:
    """Complete buckets, the partial one, and a baseline marker for the buckets with nothing."""
    done = [(i, v) for i, (s, v) in enumerate(zip(series, values)) if v is not None and not s["partial"]]
    if done:
        plt.bar([i for i, _ in done], [v for _, v in done], color=COMPLETE, width=0.6)
    part = [(i, v) for i, (s, v) in enumerate(zip(series, values)) if v is not None and s["partial"]]
    if part:
        plt.bar([i for i, _ in part], [v for _, v in part], color=PARTIAL, width=0.6)
    empty = [i for i, v in enumerate(values) if v is None]
    if empty:
        plt.scatter(empty, [0] * len(empty), marker="x", color=NONE_MARK)


def draw_rate(plot: Any, series: list[dict[str, Any]], hourly: bool) -> str:
    """Delivery rate (delivered ÷ finished) per bucket, 0–100 %. Returns the chart's caption."""
    plt = plot.plt
    plt.clear_figure()
    rates = [s["delivered"] / (s["delivered"] + s["failed"]) * 100 if s["delivered"] + s["failed"] else None for s in series]
    _bars(plt, series, rates, "so far (partial)", "no finals")
    plt.ylim(0, 100)
    plt.yticks([0, 25, 50, 75, 100], ["0%", "25%", "50%", "75%", "100%"])
    _xticks(plt, series, hourly)
    plt.title(f"delivery rate per {'hour' if hourly else 'day'} (UTC)")
    plot.refresh()
    latest = next((r for r in reversed(rates) if r is not None), None)
    return ("no finals in this period" if latest is None else f"latest: {latest:.0f}%") + _key(series)


def draw_latency(plot: Any, series: list[dict[str, Any]], hourly: bool) -> str:
    """Median time to deliver per bucket, from 0, in seconds or minutes."""
    plt = plot.plt
    plt.clear_figure()
    medians = [s["median"] for s in series]
    top = max((m for m in medians if m is not None), default=0)
    scale, unit = (60, "min") if top > 180 else (1, "s")
    _bars(plt, series, [None if m is None else m / scale for m in medians], "so far (partial)", "no deliveries")
    plt.ylim(0, max(1, top / scale) * 1.1)
    _xticks(plt, series, hourly)
    plt.title(f"median time to deliver per {'hour' if hourly else 'day'} ({'minutes' if scale == 60 else 'seconds'})")
    plot.refresh()
    latest = next((m for m in reversed(medians) if m is not None), None)
    return ("no deliveries in this period" if latest is None else f"latest: {human_duration(latest)}") + _key(series)
