"""One message: facts, timeline, explanations, raw payloads."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from smsmon.phone import country_name
from smsmon.timeutil import human_duration
from smsmon.ui.format import OUTCOME_STYLE

if TYPE_CHECKING:
    from smsmon.ui.app import SmsmonApp

STATUS_STYLE = {"DELIVERED": "green", "FAILED": "red", "UNDELIVERABLE": "red", "REJECTED": "red", "EXPIRED": "red",
                "UNCONFIRMED": "magenta", "UNKNOWN": "magenta"}


def render_detail(d: dict[str, Any]) -> Group:
    m = d["message"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    outcome_style = OUTCOME_STYLE.get(m["outcome"], "")
    facts.add_row("status", Text(f"{m['status']} ({m['raw_status']} from {m['provider']})  outcome {m['outcome']}"
                                 + ("  STALE" if m["stale"] else ""), style="bold " + outcome_style))
    for label, key in (("to", "dest"), ("from", "src"), ("reference", "reference"), ("network", "network"),
                       ("country", "country_code"), ("error code", "error_code"), ("segments", "segments"), ("cost", "cost")):
        if m[key] is not None:
            facts.add_row(label, country_name(m[key]) if key == "country_code" else str(m[key]))
    took = None
    if m["final_at"] and m["first_event_at"]:
        from smsmon.timeutil import seconds_between

        took = seconds_between(m["first_event_at"], m["final_at"])
    facts.add_row("first event", m["first_event_at"] or "—")
    facts.add_row("final", (m["final_at"] or "not yet") + (f"  ({human_duration(took)} after the first event)" if took is not None else ""))
    facts.add_row("events", f"{m['events_count']} stored, {m['duplicates_count']} duplicates acknowledged")

    timeline = Table(title="Timeline, by event time", title_justify="left", expand=True, header_style="bold")
    for col in ("event time (UTC)", "status", "raw", "source", "after previous", "received (UTC)", "flags"):
        timeline.add_column(col)
    for ev in d["events"]:
        flags = "; ".join(f"{f['flag']}: {f['title']}" for f in ev["flags_explained"])
        prev = ev["since_previous_seconds"]
        timeline.add_row(ev["event_time"].replace("T", " ")[:23], Text(ev["status"], style=STATUS_STYLE.get(ev["status"], "yellow")),
                         ev["raw_status"], ev["source"], "" if prev is None else "+" + human_duration(prev),
                         ev["received_at"].replace("T", " ")[:23], flags)

    parts: list[Any] = [facts]
    for f in d["flags"]:
        parts.append(Text(f"! {f['flag']}: {f['title']}. {f['meaning']}", style="yellow"))
    parts.append(timeline)
    ex = d["explanation"]
    for title, e in (("Status", ex["status"]), ("Error code", ex["error_code"])):
        if not e:
            continue
        body = Text()
        body.append(e["meaning"] + "\n\n")
        body.append("Likely causes: ", style="bold")
        body.append(" ".join(e["causes"]) + "\n")
        body.append("What to do: ", style="bold")
        body.append(e["action"] + "\n")
        body.append(f"retryable {e['retryable']} · permanent {e['permanent']} · group {e['group']} · meaning {e['sureness']}",
                    style="dim")
        parts.append(Panel(body, title=f"{title} {e['code']}: {e['title']}", title_align="left",
                           border_style="red" if m["outcome"] == "NOT_DELIVERED" else "blue"))
    for ev in d["events"]:
        raw = ev["raw"]
        text = json.dumps(raw, indent=2, ensure_ascii=False) if not isinstance(raw, str) else raw
        parts.append(Panel(Syntax(text, "json", theme="ansi_dark", word_wrap=True),
                           title=f"#{ev['id']} {ev['source']} {ev['raw_status']}, received {ev['received_at']}",
                           title_align="left", border_style="dim"))
    return Group(*parts)


class MessageScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("c", "copy", "Copy JSON"),
        Binding("r", "refresh_provider", "Ask provider"),
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
    ]

    app: "SmsmonApp"

    def __init__(self, message_id: str) -> None:
        super().__init__()
        self.message_id = message_id
        self.detail: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.app.show_clock)
        with VerticalScroll(id="detail-scroll"):
            yield Static(f"loading {self.message_id} …", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.message_id
        self.load()

    @work(thread=True, exclusive=True, group="detail")
    def load(self) -> None:
        detail = self.app.data.detail(self.message_id, self.app.window)
        self.app.call_from_thread(self._show, detail)

    def _show(self, detail: dict[str, Any]) -> None:
        self.detail = detail
        self.query_one("#detail", Static).update(render_detail(detail))

    def action_copy(self) -> None:
        if self.detail:
            self.app.copy_to_clipboard(json.dumps(self.detail, default=str, ensure_ascii=False, indent=2))
            self.notify(f"{self.message_id} copied as JSON")

    async def action_refresh_provider(self) -> None:
        ingest = self.app.ingest
        if ingest is None:
            self.notify("offline: browsing a database, no provider to ask", severity="warning")
            return
        if not ingest.can_refresh(self.message_id):
            self.notify(f"no poller is configured for {self.message_id.partition(':')[0]}", severity="warning")
            return
        self.notify(f"asking the provider about {self.message_id} …")
        outcome = await ingest.refresh(self.message_id)
        if outcome and outcome.ok:
            self.notify(f"{outcome.new_events} new events" if outcome.new_events else "no change")
        elif outcome:
            self.notify(f"{outcome.error_code}: {outcome.error}", severity="error")
        self.load()

    def on_data_changed(self) -> None:
        self.load()
