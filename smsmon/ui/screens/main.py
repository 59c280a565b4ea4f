"""The main screen: summary, health, filter, the messages table and the event stream."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Sparkline, Static

from smsmon.errors import FilterError
from smsmon.store.queries import cursor
from smsmon.timeutil import human_duration
from smsmon.ui.format import OUTCOME_STYLE, ago, clock, short_id
from smsmon.ui.widgets.event_stream import EventStream

if TYPE_CHECKING:
    from smsmon.ui.app import SmsmonApp
    from smsmon.ui.data import Snapshot

STREAM_LINES = 40  # lines a refresh adds to the event stream, at most
STREAM_KEEP = 200  # lines the event stream keeps
# (label, key, width): fixed widths, so the table looks the same however the rows arrived, and
# updating a cell never re-measures a column.
COLUMNS = [("last event", "when", 16), ("status", "status", 19), ("provider", "provider", 8), ("message", "message", 22),
           ("to", "to", 14), ("error", "error", 5), ("network", "network", 8), ("events", "events", 6), ("flags", "flags", 30)]

EMPTY = """[b]No messages yet.[/b] Ways to get data in:

  • Give Zeckta this callback URL:  [b]{callback}[/b]
    (per message as callbackUrl, or per campaign)
  • Poll Eazita: set [b]SMSMON_EAZITA_API_KEY[/b] and [b]SMSMON_EAZITA_PASSWORD[/b], then restart
  • Send simulated callbacks here:  [b]smsmon simulate[/b]
  • Load stored callbacks or reports:  [b]smsmon import FILE[/b]
  • Or see it all working:  [b]smsmon demo[/b]
"""


def row_cells(m: dict[str, Any], now: datetime) -> list[Any]:
    style = OUTCOME_STYLE.get(m["outcome"], "")
    status = Text(m["status"], style=style + (" dim" if m["stale"] else ""))
    if m["stale"]:
        status.append(" stale", style="dim italic")
    return [clock(m["last_event_at"], now), status, m["provider"], short_id(m["provider_message_id"]), m["dest"] or "",
            m["error_code"] or "", m["network"] or "", str(m["events_count"]), (m["flags"] or "").replace(",", " ")]


class MainScreen(Screen):
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter"),
        Binding("p", "pause", "Pause"),
        Binding("i", "app.insights", "Insights"),
        Binding("d", "app.dead_letters", "Dead letters"),
        Binding("g", "top", "Newest", show=False),
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
    ]

    app: "SmsmonApp"

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.app.show_clock)
        with Horizontal(id="top"):
            yield Static(id="summary")
            with Vertical(id="spark-box"):
                yield Static("events / minute, last 30 min", id="spark-label")
                yield Sparkline([0] * 30, id="spark")
        yield Static(id="health")
        yield Input(placeholder="filter: text, status:failed provider:eazita dest:+233… error:101 network:Zong since:2h",
                    id="filter-input")
        yield Static(id="filter-status")
        with Horizontal(id="body"):
            yield DataTable(id="messages", cursor_type="row", zebra_stripes=True)
            yield EventStream(self.app.outcome_of, keep=STREAM_KEEP, id="stream")
        yield Static(id="empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#messages", DataTable)
        for label, key, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        self.query_one("#filter-input").display = False
        self.query_one("#empty").display = False
        self.query_one("#stream", EventStream).border_title = "events, newest first"
        table.border_title = "messages, newest event first"
        self.show_filter()
        table.focus()

    # ── applying data ─────────────────────────────────────────────────────────
    def following(self) -> bool:
        table = self.query_one("#messages", DataTable)
        return table.row_count == 0 or (table.cursor_row <= 0 and table.scroll_y == 0)

    def apply(self, snap: "Snapshot", changed: dict[str, dict[str, Any]], now: datetime, *, full: bool) -> None:
        app = self.app
        self.last_snapshot = snap
        self._summary(snap, now)
        self._health(snap, now)
        self._stream(snap, now)
        empty = snap.total_messages == 0
        self.query_one("#empty").display = empty
        body = self.query_one("#body")
        if body.display == empty:  # hiding the table took the focus away: give it back when it returns
            body.display = not empty
            if not empty and self.focused is None:
                self.query_one("#messages").focus()
        if empty:
            cb = app.ingest.health.callback_url if app.ingest else "(run `smsmon watch` to listen)"
            self.query_one("#empty", Static).update(EMPTY.format(callback=cb))
        table = self.query_one("#messages", DataTable)
        if full or self.following():
            self._replace(table, snap.rows, now)
            self.waiting = 0
        else:
            for mid, m in changed.items():
                if mid in table.rows:
                    old = table.get_row(mid)
                    for (_, key, _), before, cell in zip(COLUMNS, old, row_cells(m, now)):
                        if str(before) != str(cell) or getattr(before, "style", None) != getattr(cell, "style", None):
                            table.update_cell(mid, key, cell)  # only what changed: each call costs a layout
                else:
                    self.waiting = getattr(self, "waiting", 0) + 1
        self._title(table)

    def _title(self, table: DataTable) -> None:
        waiting = getattr(self, "waiting", 0)
        more = f" · {waiting} updated elsewhere: g for the newest" if waiting else ""
        table.border_title = f"messages, newest event first ({table.row_count:,} loaded{more})"

    def _replace(self, table: DataTable, rows: list[dict[str, Any]], now: datetime) -> None:
        keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value if table.row_count else None
        at_top = self.following()
        table.clear()
        for m in rows:
            table.add_row(*row_cells(m, now), key=m["id"])
        self.app.last_cursor = cursor(rows[-1]) if rows else None
        if keep and not at_top and keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep), scroll=True)

    def append(self, rows: list[dict[str, Any]], now: datetime) -> None:
        table = self.query_one("#messages", DataTable)
        for m in rows:
            if m["id"] not in table.rows:
                table.add_row(*row_cells(m, now), key=m["id"])
        if rows:
            self.app.last_cursor = cursor(rows[-1])
        self._title(table)

    def _summary(self, snap: "Snapshot", now: datetime) -> None:
        s = snap.stats
        t = Text()
        for outcome, label in (("DELIVERED", "delivered"), ("NOT_DELIVERED", "not delivered"), ("IN_FLIGHT", "in flight"),
                               ("UNKNOWN", "unknown")):
            t.append(f"{s.outcomes.get(outcome, 0):,} ", style="bold " + OUTCOME_STYLE[outcome])
            t.append(f"{label}   ")
        t.append("\n")
        t.append("delivery rate ")
        t.append(f"{s.delivery_rate:.1%}" if s.delivery_rate is not None else "—", style="bold")
        t.append("   time to deliver: median ")
        t.append(human_duration(s.median_seconds), style="bold")
        t.append(f", p90 {human_duration(s.p90_seconds)}   stale ")
        t.append(f"{s.stale:,}", style="bold yellow" if s.stale else "bold")
        t.append(f"   {s.messages:,} messages, {s.events:,} events")
        if snap.dead_letters:
            t.append(f"   {snap.dead_letters:,} dead letters", style="red")
        self.query_one("#summary", Static).update(t)
        minutes = [(now - timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M") for i in range(29, -1, -1)]
        self.query_one("#spark", Sparkline).data = [self.app.per_minute.get(m, 0) for m in minutes]

    def _health(self, snap: "Snapshot", now: datetime) -> None:
        app = self.app
        t = Text()
        if app.ingest is None:
            t.append(" OFFLINE ", style="bold reverse")
            t.append(f"  browsing {app.db_path}, not receiving; following rows another process adds")
            for provider, run in sorted(snap.polls.items()):
                t.append(f"   last {provider} poll {ago(run['finished_at'], now)}: ")
                t.append("ok" if run["ok"] else f"{run['error_code']}", style="green" if run["ok"] else "red")
        else:
            h = app.ingest.health
            t.append(" LIVE ", style="bold reverse green")
            t.append(f"  callbacks to {h.callback_url}   last callback {ago(app.ingest.last_callback(), now)}")
            for provider in h.pollers:
                o = h.polls.get(provider)
                t.append(f"   {provider} poll ")
                if o is None:
                    t.append("starting", style="yellow")
                elif o.ok:
                    t.append(f"ok {ago(o.finished_at, now)}", style="green")
                else:
                    t.append(f"{o.error_code} {ago(o.finished_at, now)}", style="red")
            if not h.pollers:
                t.append("   no pollers configured", style="dim")
        if app.paused:
            t.append("   PAUSED (p resumes)", style="bold yellow")
        self.query_one("#health", Static).update(t)

    def _stream(self, snap: "Snapshot", now: datetime) -> None:
        shown = snap.new_events[-STREAM_LINES:]  # more than this a refresh is a blur, and costs the UI thread
        if shown:
            self.query_one("#stream", EventStream).add(shown, len(snap.new_events) - len(shown), now)

    # ── filter ────────────────────────────────────────────────────────────────
    def show_filter(self, error: str | None = None) -> None:
        status = self.query_one("#filter-status", Static)
        if error:
            status.update(Text(f"✗ {error}", style="bold red"))
        elif self.app.filter_text:
            status.update(Text.assemble(("filter: ", "bold"), (self.app.filter_text, "bold cyan"), "   (esc clears, / edits)"))
        else:
            status.update(Text("no filter (/ to filter)", style="dim"))

    def action_filter(self) -> None:
        box = self.query_one("#filter-input", Input)
        box.display = True
        box.value = self.app.filter_text
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.app.set_filter(event.value)
        except FilterError as exc:
            self.show_filter(str(exc))
            return
        event.input.display = False
        self.query_one("#messages").focus()
        self.show_filter()

    def on_key(self, event: Any) -> None:
        box = self.query_one("#filter-input", Input)
        if event.key == "escape" and box.has_focus:
            box.display = False
            self.query_one("#messages").focus()
            self.show_filter()
            event.stop()

    def action_clear_filter(self) -> None:
        if self.app.filter_text:
            self.app.set_filter("")
            self.show_filter()

    def action_pause(self) -> None:
        self.app.toggle_pause()

    def show_pause(self) -> None:
        snap = getattr(self, "last_snapshot", None)
        if snap is not None:
            self._health(snap, self.app.now())

    def action_top(self) -> None:
        table = self.query_one("#messages", DataTable)
        table.move_cursor(row=0)
        table.scroll_home(animate=False)
        self.waiting = 0
        self.app.request_refresh(full=True)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_message(str(event.row_key.value))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        if event.cursor_row >= table.row_count - 10:
            self.app.load_more()
