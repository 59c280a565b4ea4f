"""The main screen: summary, health, filter, the messages table and the event stream. The app
hands it each snapshot (`show`); it hands each part to its widget."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from rich.markup import escape
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Static

from smsmon.store.views import Snapshot
from smsmon.timeutil import UTC_ZONE, DisplayZone
from smsmon.ui.screens.base import SmsmonScreen
from smsmon.ui.widgets.alert_banner import AlertBanner
from smsmon.ui.widgets.event_stream import EventStream
from smsmon.ui.widgets.filter_bar import FilterBar
from smsmon.ui.widgets.health import HealthInfo, HealthLine
from smsmon.ui.widgets.messages_table import MessagesTable
from smsmon.ui.widgets.summary import Summary

STREAM_LINES = 40  # lines a refresh adds to the event stream, at most
STREAM_KEEP = 200  # lines the event stream keeps
STREAM_MIN_WIDTH = 120  # below this many columns the event stream is hidden (e shows it), the table takes the width
STREAM_PERCENT, STREAM_MIN, STREAM_MAX = 30, 36, 70  # the event stream's width (smsmon.tcss #stream)
BORDERS = 2  # the table's border, left and right
CHART_MIN_WIDTH = 100  # below this the summary goes without the events chart (it says the last minute's count)

EMPTY = """[b]No messages yet.[/b] Ways to get data in:

  • Give Zeckta this callback URL:  [b]{callback}[/b]
    (per message as callbackUrl, or per campaign)
  • Poll Eazita: set [b]SMSMON_EAZITA_API_KEY[/b] and [b]SMSMON_EAZITA_PASSWORD[/b], then restart
  • Send simulated callbacks here:  [b]smsmon simulate[/b]
  • Load stored callbacks or reports:  [b]smsmon import FILE[/b]
  • Or see it all working:  [b]smsmon demo[/b]
"""


class MainScreen(SmsmonScreen):
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("t", "jump", "Jump in time", show=False),
        Binding("i", "app.insights", "Insights"),
        Binding("d", "app.dead_letters", "Dead letters"),
        Binding("e", "toggle_stream", "Events", show=False),
    ]

    def __init__(self, clock: Callable[[], datetime], *, zone: DisplayZone = UTC_ZONE, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.clock = clock
        self.zone = zone
        self.stream_wanted: bool | None = None  # e: the user's choice; None: by the width
        self.on_ready: Callable[[], None] | None = None  # run once the widgets exist, before the first frame

    def compose(self) -> ComposeResult:
        yield from self.header()
        yield Summary(id="top")
        yield AlertBanner(id="alerts")
        yield HealthLine(id="health")
        yield FilterBar(self.clock, id="filter-bar")
        with Horizontal(id="body"):
            yield MessagesTable(id="messages", zone=self.zone)
            yield EventStream(keep=STREAM_KEEP, id="stream", zone=self.zone)
        yield Static(id="empty")
        yield from self.footer()

    def on_mount(self) -> None:
        self.query_one("#empty").display = False
        self.query_one("#stream", EventStream).border_title = "events, newest first"
        self.query_one("#messages", MessagesTable).focus()
        self._fit(self.size.width)
        self._expect(self.app.size.width)
        if self.on_ready is not None:
            ready, self.on_ready = self.on_ready, None
            ready()

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width)

    def _expect(self, width: int) -> None:
        """The table's width once laid out, from the terminal's (the stream's width and the
        borders as smsmon.tcss gives them): see MessagesTable.expected_width."""
        stream = self.stream_wanted if self.stream_wanted is not None else width >= STREAM_MIN_WIDTH
        beside = min(STREAM_MAX, max(STREAM_MIN, width * STREAM_PERCENT // 100)) if stream else 0
        self.query_one("#messages", MessagesTable).expected_width = max(0, width - beside - BORDERS)

    def _fit(self, width: int) -> None:
        """What the width holds: the event stream (unless e chose), the events chart."""
        if not width:
            return
        stream = self.query_one("#stream", EventStream)
        stream.display = self.stream_wanted if self.stream_wanted is not None else width >= STREAM_MIN_WIDTH
        self.query_one("#activity").display = width >= CHART_MIN_WIDTH

    @property
    def table(self) -> MessagesTable:
        return self.query_one("#messages", MessagesTable)

    @property
    def fetching_page(self) -> bool:
        """A page of the table is being read."""
        return self.table.fetching

    # ── what the app hands down ──────────────────────────────────────────────
    def show(self, snap: Snapshot, changed: dict[str, dict[str, Any]], health: HealthInfo, now: datetime, *,
             per_second: Any, full: bool, table: bool = True) -> None:
        """`table`: whether the messages table takes this snapshot's rows (the app paces it)."""
        self.show_summary(snap.stats, per_second, snap.dead_letters, now)
        self.show_health(health, now)
        shown = snap.new_events[-STREAM_LINES:]  # more than this a refresh is a blur, and costs the UI thread
        if shown:
            self.query_one("#stream", EventStream).add(shown, len(snap.new_events) - len(shown), now)
        empty = snap.total_messages == 0
        self.query_one("#empty").display = empty
        body = self.query_one("#body")
        if body.display == empty:  # hiding the table took the focus away: give it back when it returns
            body.display = not empty
            if not empty and self.focused is None:
                self.table.focus()
        if empty:
            self.query_one("#empty", Static).update(
                EMPTY.format(callback=escape(health.callback_url) if health.callback_url else "(run `smsmon watch` to listen)"))
        if not table:
            return
        rows = self.table
        if full or rows.following:
            rows.replace(snap.rows, now)
        else:
            rows.update_rows(changed, now)

    def show_summary(self, stats: Any, per_second: Any, dead_letters: int, now: datetime) -> None:
        """The figures (None while they are being counted) and the events chart."""
        self.query_one(Summary).show(stats, per_second, dead_letters, now)

    def show_health(self, health: HealthInfo, now: datetime) -> None:
        self.query_one(HealthLine).show_health(health, now)

    def show_alerts(self, firing: list[Any]) -> None:
        """The alerts firing now (smsmon.alerts.Alert), in the banner."""
        self.query_one(AlertBanner).show_alerts(firing)

    def page_failed(self) -> None:
        """The page asked for could not be read: the table may ask again."""
        self.table.fetching = False

    def show_filter(self, text: str) -> None:
        self.query_one(FilterBar).show(text)

    # ── keys ─────────────────────────────────────────────────────────────────
    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def action_clear_filter(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.text:
            from smsmon.filters import Filter

            bar.show("")
            self.post_message(FilterBar.Changed(bar, Filter()))

    def on_filter_bar_closed(self, event: FilterBar.Closed) -> None:
        self.table.focus()

    def action_jump(self) -> None:
        """t: the filter, open at a `since:`/`until:` to jump in time."""
        self.query_one(FilterBar).open(jump=True)

    def action_toggle_stream(self) -> None:
        stream = self.query_one("#stream", EventStream)
        self.stream_wanted = not stream.display
        self._fit(self.size.width)
