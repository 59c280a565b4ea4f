"""One message: facts, timeline, explanations, raw payloads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable

from rich.console import Group
from rich.panel import Panel
from rich.style import Style
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from smsmon.lifecycle import Status, outcome_of
from smsmon.normalize import country_name
from smsmon.timeutil import human_duration, seconds_between
from smsmon.ui.format import OUTCOME_CLASSES
from smsmon.ui.gateway import Gateway
from smsmon.ui.screens.base import SubScreen


class DetailView(Static):
    """Draws a message's detail (as `store.views.message_detail` gives it)."""

    COMPONENT_CLASSES = {f"detail--{c}" for c in OUTCOME_CLASSES.values()} | {"detail--flag", "detail--panel",
                                                                               "detail--panel-failed"}

    def style_of(self, name: str) -> Style:
        return self.get_component_rich_style(f"detail--{name}", partial=True)

    def outcome_style(self, provider: str, status: str) -> Style:
        try:
            outcome = outcome_of(provider, Status(status)).value
        except ValueError:
            outcome = "UNKNOWN"
        return self.style_of(OUTCOME_CLASSES[outcome])

    def show(self, d: dict[str, Any]) -> None:
        m = d["message"]
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column()
        facts.add_row("status", Text(f"{m['status']} ({m['raw_status']} from {m['provider']})  outcome {m['outcome']}"
                                     + ("  STALE" if m["stale"] else ""),
                                     style=Style(bold=True) + self.style_of(OUTCOME_CLASSES.get(m["outcome"], "unknown"))))
        for label, key in (("to", "dest"), ("from", "src"), ("reference", "reference"), ("network", "network"),
                           ("country", "country_code"), ("error code", "error_code"), ("segments", "segments"), ("cost", "cost")):
            if m[key] is not None:
                facts.add_row(label, country_name(m[key]) if key == "country_code" else str(m[key]))
        took = seconds_between(m["first_event_at"], m["final_at"]) if m["final_at"] and m["first_event_at"] else None
        facts.add_row("first event", m["first_event_at"] or "—")
        facts.add_row("final", (m["final_at"] or "not yet")
                      + (f"  ({human_duration(took)} after the first event)" if took is not None else ""))
        facts.add_row("events", f"{m['events_count']} stored, {m['duplicates_count']} duplicates acknowledged")

        timeline = Table(title="Timeline, by event time", title_justify="left", expand=True, header_style="bold")
        for col in ("event time (UTC)", "status", "raw", "source", "after previous", "received (UTC)", "flags"):
            timeline.add_column(col)
        for ev in d["events"]:
            flags = "; ".join(f"{f['flag']}: {f['title']}" for f in ev["flags_explained"])
            prev = ev["since_previous_seconds"]
            timeline.add_row(ev["event_time"].replace("T", " ")[:23], Text(ev["status"], style=self.outcome_style(ev["provider"], ev["status"])),
                             ev["raw_status"], ev["source"], "" if prev is None else "+" + human_duration(prev),
                             ev["received_at"].replace("T", " ")[:23], flags)

        parts: list[Any] = [facts]
        for f in d["flags"]:
            parts.append(Text(f"! {f['flag']}: {f['title']}. {f['meaning']}", style=self.style_of("flag")))
        parts.append(timeline)
        ex = d["explanation"]
        border = self.style_of("panel-failed" if m["outcome"] == "NOT_DELIVERED" else "panel")
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
            parts.append(Panel(body, title=f"{title} {e['code']}: {e['title']}", title_align="left", border_style=border))
        for ev in d["events"]:
            raw = ev["raw"]
            text = json.dumps(raw, indent=2, ensure_ascii=False) if not isinstance(raw, str) else raw
            parts.append(Panel(Syntax(text, "json", theme="ansi_dark", word_wrap=True),
                               title=f"#{ev['id']} {ev['source']} {ev['raw_status']}, received {ev['received_at']}",
                               title_align="left", border_style="dim"))
        self.update(Group(*parts))


class MessageScreen(SubScreen):
    BINDINGS = [
        Binding("c", "copy", "Copy JSON"),
        Binding("r", "ask_provider", "Ask provider"),
    ]

    class AskProvider(Message):
        """`r`: ask the provider about this message now."""

        def __init__(self, screen: "MessageScreen") -> None:
            super().__init__()
            self.screen = screen

        @property
        def message_id(self) -> str:
            return self.screen.message_id

    def __init__(self, message_id: str, gateway: Gateway, clock: Callable[[], datetime], *, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.message_id = message_id
        self.gateway = gateway
        self.clock = clock
        self.detail: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield from self.header()
        with VerticalScroll(id="detail-scroll"):
            yield DetailView(f"loading {self.message_id} …", id="detail")
        yield from self.footer()

    def on_mount(self) -> None:
        self.sub_title = self.message_id
        self.load()

    def load(self) -> None:
        now = self.clock()
        self.gateway.read(lambda r: r.detail(self.message_id, now=now), self._show, group="detail")

    def _show(self, detail: dict[str, Any]) -> None:
        self.detail = detail
        self.query_one(DetailView).show(detail)

    def action_copy(self) -> None:
        if self.detail:
            self.app.copy_to_clipboard(json.dumps(self.detail, default=str, ensure_ascii=False, indent=2))
            self.notify(f"{self.message_id} copied as JSON")

    def action_ask_provider(self) -> None:
        self.post_message(self.AskProvider(self))

