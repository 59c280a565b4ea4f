"""One message: facts, timeline, explanations, raw payloads."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from rich import box
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

from smsmon import present
from smsmon.lifecycle import Status, outcome_of
from smsmon.timeutil import UTC_ZONE, DisplayZone
from smsmon.ui.clipboard import copy_confirmed
from smsmon.ui.format import OUTCOME_CLASSES
from smsmon.ui.gateway import Gateway
from smsmon.ui.screens.base import SubScreen


# The timeline's columns, most wanted first: those that do not fit the width are left out.
TIMELINE_PRIORITY = ("event time", "status", "after previous", "source", "received", "flags", "raw", "sent")
FLAGS_MIN = 24  # the flags column wraps; it is never narrower than this
COLUMN_COST = 3  # cells a timeline column takes besides its text: padding either side and the gap between columns


class DetailView(Static):
    """Draws a message's detail (as `store.views.message_detail` gives it), with the same facts
    and timeline as `smsmon show` (smsmon.present)."""

    COMPONENT_CLASSES = {f"detail--{c}" for c in OUTCOME_CLASSES.values()} | {"detail--flag", "detail--panel",
                                                                               "detail--panel-failed"}

    def __init__(self, *args: Any, zone: DisplayZone = UTC_ZONE, live: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone
        self.live = live
        self.detail: dict[str, Any] | None = None

    def style_of(self, name: str) -> Style:
        return self.get_component_rich_style(f"detail--{name}", partial=True)

    def outcome_style(self, provider: str, status: str) -> Style:
        try:
            outcome = outcome_of(provider, Status(status)).value
        except ValueError:
            outcome = "UNKNOWN"
        return self.style_of(OUTCOME_CLASSES[outcome])

    def show(self, d: dict[str, Any]) -> None:
        self.detail = d
        m = d["message"]
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column()
        for i, (label, text) in enumerate(present.facts(m, self.zone)):
            style = Style(bold=True) + self.style_of(OUTCOME_CLASSES.get(m["outcome"], "unknown")) if i == 0 else None
            facts.add_row(label, Text(text, style=style) if style else Text(text))  # text, never markup

        timeline = self._timeline(d["events"])
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
            parts.append(Panel(body, title=Text(f"{title} {e['code']}: {e['title']}"), title_align="left", border_style=border))
        parts += self._next_steps(d)
        for ev in d["events"]:
            raw = ev["raw"]
            text = json.dumps(raw, indent=2, ensure_ascii=False) if not isinstance(raw, str) else raw
            parts.append(Panel(Syntax(text, "json", theme="ansi_dark", word_wrap=True),
                               title=Text(f"#{ev['id']} {ev['source']} {ev['raw_status']}, received "
                                          f"{self.zone.show(ev['received_at'], fraction=True)}"),
                               title_align="left", border_style="dim"))
        self.update(Group(*parts))

    def on_resize(self) -> None:
        if self.detail is not None:
            self.show(self.detail)

    def _timeline(self, events: list[dict[str, Any]]) -> Table:
        """The timeline with the columns the width holds, by priority (TIMELINE_PRIORITY);
        times without their date when every event is of one day (the title gives it), and
        never cut: a column that does not fit is left out instead."""
        rows = present.timeline_rows(events, self.zone)
        days = {r[i][:10] for r in rows for i in (0, 5, 6) if r[i]}
        title = f"Timeline, by event time (times in {self.zone.label})"
        if len(days) == 1:
            day = days.pop()
            title = f"Timeline of {day}, by event time (times in {self.zone.label})"
            rows = [[c[11:] if i in (0, 5, 6) and c.startswith(day) else c for i, c in enumerate(r)] for r in rows]
        names = present.TIMELINE_COLUMNS
        width = max(20, (self.size.width or 200) - 1)
        need = {i: max([len(names[i]), *(len(r[i]) for r in rows)]) for i in range(len(names))}
        need[names.index("flags")] = min(need[names.index("flags")], FLAGS_MIN)
        shown: list[int] = []
        used = 0
        for name in TIMELINE_PRIORITY:
            i = names.index(name)
            if not any(r[i] for r in rows) and name in ("sent", "flags"):
                continue  # nothing to say in it
            if used + need[i] + COLUMN_COST > width:
                break
            shown.append(i)
            used += need[i] + COLUMN_COST
        shown.sort()
        table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1),
                      pad_edge=False, expand=False)
        for i in shown:
            table.add_column(names[i], no_wrap=names[i] != "flags", overflow="fold", min_width=need[i])
        for ev, row in zip(events, rows):
            cells: list[Any] = [Text(row[i] or "") for i in shown]  # what providers sent: text, never markup
            if 1 in shown:
                cells[shown.index(1)] = Text(row[1], style=self.outcome_style(ev["provider"], ev["status"]))
            table.add_row(*cells)
        return table

    def _next_steps(self, d: dict[str, Any]) -> list[Any]:
        """The provider's word on an open message, how common the failure is, the same number."""
        m, out = d["message"], []
        if d["ask_provider"]:
            how = "press r, or run " if self.live else "run "
            out.append(Text.assemble(("Still open: ", "bold"), f"to ask the provider now, {how}", (d["ask_provider"], "bold")))
        if (f := d["failure_now"]) is not None:
            text = Text.assemble(("This failure in the last ", "bold"), (f["window"], "bold"), ": ",
                                 f"{f['messages']:,} messages with the same provider, status and error code (f shows them)")
            if f.get("on_network") is not None:
                text.append(f"; {f['on_network']:,} of them on {f['network']} (n shows those)")
            out.append(text)
        if d["same_number"]:
            table = Table(title=Text(f"Other messages to {m['dest']}, newest first"), title_justify="left", header_style="bold",
                          expand=True)
            for col in (f"last event ({self.zone.label})", "status", "error", "message"):
                table.add_column(col)
            for r in d["same_number"]:
                table.add_row(self.zone.show(r["last_event_at"]), Text(r["status"], style=self.style_of(
                    OUTCOME_CLASSES.get(r["outcome"], "unknown"))), Text(r["error_code"] or ""), Text(r["id"]))
            out.append(table)
        return out


class MessageScreen(SubScreen):
    BINDINGS = [
        Binding("c", "copy", "Copy JSON"),
        Binding("s", "save", "Save JSON", show=False),
        Binding("r", "ask_provider", "Ask provider"),
        Binding("f", "same_failure", "Same failure"),
        Binding("n", "same_failure_network", "On this network"),
    ]

    class AskProvider(Message):
        """`r`: ask the provider about this message now."""

        def __init__(self, screen: "MessageScreen") -> None:
            super().__init__()
            self.screen = screen

        @property
        def message_id(self) -> str:
            return self.screen.message_id

    class FilterWanted(Message):
        """`f`, `n`: show the messages of this filter (on the main screen)."""

        def __init__(self, expression: str) -> None:
            super().__init__()
            self.expression = expression

    def __init__(self, message_id: str, gateway: Gateway, clock: Callable[[], datetime], *, zone: DisplayZone = UTC_ZONE,
                 live: bool = False, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.message_id = message_id
        self.gateway = gateway
        self.clock = clock
        self.zone = zone
        self.live = live
        self.detail: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield from self.header()
        with VerticalScroll(id="detail-scroll"):
            yield DetailView(Text(f"loading {self.message_id} …"), id="detail", zone=self.zone, live=self.live)
        yield from self.footer()

    def on_mount(self) -> None:
        self.sub_title = self.message_id
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`r` exists only when live; `f`/`n` only for a failure (and `n` only with a network).
        (False hides a key from the footer; None would show it greyed.)"""
        if action == "ask_provider":
            return self.live
        failure = (self.detail or {}).get("failure_now")
        if action == "same_failure":
            return bool(failure)
        if action == "same_failure_network":
            return bool(failure and failure.get("network_filter"))
        return True

    def load(self) -> None:
        now = self.clock()
        self.gateway.read(lambda r: r.detail(self.message_id, now=now), self._show, group="detail")

    def _show(self, detail: dict[str, Any]) -> None:
        self.detail = detail
        self.query_one(DetailView).show(detail)
        self.refresh_bindings()

    def _json(self) -> str:
        return json.dumps(self.detail, default=str, ensure_ascii=False, indent=2)

    def action_copy(self) -> None:
        if not self.detail:
            return
        text = self._json()
        self.app.copy_to_clipboard(text)  # OSC 52: the terminal may or may not take it
        went = copy_confirmed(text)
        if went:
            self.notify(f"{self.message_id} copied as JSON to {' and '.join(went)}", markup=False)
        else:
            self.notify(f"{self.message_id} sent to the terminal's clipboard (OSC 52), which not every terminal accepts;"
                        " press s to save it to a file instead", timeout=8, markup=False)

    def action_save(self) -> None:
        if not self.detail:
            return
        # The id is the provider's choice: only letters, digits, - and . reach the file name,
        # so an id such as `../../x` or `[/x]` cannot write outside the folder or fail.
        path = Path.cwd() / f"smsmon-{re.sub(r'[^A-Za-z0-9.-]', '-', self.message_id)[:120]}.json"
        try:
            path.write_text(self._json() + "\n")
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc.strerror}", severity="error", markup=False)
            return
        self.notify(f"saved to {path}", markup=False)

    def action_ask_provider(self) -> None:
        self.post_message(self.AskProvider(self))

    def action_same_failure(self) -> None:
        if self.detail and self.detail.get("failure_now"):
            self.post_message(self.FilterWanted(self.detail["failure_now"]["filter"]))

    def action_same_failure_network(self) -> None:
        failure = (self.detail or {}).get("failure_now") or {}
        if failure.get("network_filter"):
            self.post_message(self.FilterWanted(failure["network_filter"]))
