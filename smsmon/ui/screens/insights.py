"""Insights: failures by code, network and country; delivery over time; stale messages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Sparkline, Static

from smsmon import catalogue
from smsmon.filters import Filter
from smsmon.normalize import country_name
from smsmon.timeutil import UTC_ZONE, DisplayZone, human_duration
from smsmon.ui.gateway import Gateway
from smsmon.ui.screens.base import SubScreen


def _table(title: str, columns: list[str]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", title_style="bold", min_width=60)
    for c in columns:
        t.add_column(c, justify="right" if c == "failed" else "left")
    return t


class InsightsScreen(SubScreen):
    def __init__(self, gateway: Gateway, flt: Filter, window: timedelta, clock: Callable[[], datetime], *,
                 zone: DisplayZone = UTC_ZONE, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.zone = zone
        self.gateway = gateway
        self.filter = flt
        self.window = window
        self.clock = clock

    def compose(self) -> ComposeResult:
        yield from self.header()
        with VerticalScroll():
            with Horizontal(id="charts"):
                with Vertical():
                    yield Static("delivery rate per hour, last 24 h", id="rate-label")
                    yield Sparkline([], id="rate-chart")
                with Vertical():
                    yield Static("median time to deliver per hour, last 24 h", id="latency-label")
                    yield Sparkline([], id="latency-chart")
            yield Static("loading …", id="insights")
        yield from self.footer()

    def on_mount(self) -> None:
        self.sub_title = "insights" + (f" · filter: {self.filter.source}" if self.filter.source else "")
        now = self.clock()
        self.gateway.read(lambda r: r.insights(self.filter, now=now), self._show, group="insights")

    def _show(self, data: dict[str, Any]) -> None:
        s = data["stats"]
        hours = data["hours"]
        self.query_one("#rate-chart", Sparkline).data = [round((h["rate"] or 0) * 100) for h in hours]
        self.query_one("#latency-chart", Sparkline).data = [h["median"] or 0 for h in hours]
        rates = [h for h in hours if h["rate"] is not None]
        self.query_one("#rate-label", Static).update(
            f"delivery rate per hour, last 24 h (now {rates[-1]['rate']:.0%})" if rates else "delivery rate per hour: no finals in 24 h")
        meds = [h for h in hours if h["median"] is not None]
        self.query_one("#latency-label", Static).update(
            f"median time to deliver per hour (now {human_duration(meds[-1]['median'])})" if meds else "median time to deliver: no deliveries in 24 h")

        by_code = _table("Failures by error code", ["failed", "provider", "code", "meaning", "what to do"])
        for provider, code, n in s.failures_by_code:
            e = catalogue.explain_error(provider, code, failed=True)
            by_code.add_row(f"{n:,}", provider, code or "—", e.title if e else "no code (Zeckta sends none)",
                            e.action if e else "see failures by status")
        by_status = _table("Failures by status", ["failed", "provider", "status", "meaning"])
        for provider, raw, n in s.failures_by_status:
            by_status.add_row(f"{n:,}", provider, raw, catalogue.explain_status(provider, raw).title)
        by_network = _table("Failures by network", ["failed", "network"])
        for network, n in s.failures_by_network:
            by_network.add_row(f"{n:,}", network or "not given by the provider")
        by_country = _table("Failures by country", ["failed", "country"])
        for code, n in data["countries"]:
            by_country.add_row(f"{n:,}", country_name(code))
        stale = _table(f"Stale messages ({s.stale:,}: not final, silent for {human_duration(self.window.total_seconds())})",
                       [f"last event ({self.zone.label})", "message", "status", "to"])
        for m in data["stale"]:
            stale.add_row(self.zone.show(m["last_event_at"], seconds=False), m["id"], m["status"], m["dest"] or "")
        head = Text(f"{s.messages:,} messages · delivery rate "
                    f"{'—' if s.delivery_rate is None else f'{s.delivery_rate:.1%}'} · median {human_duration(s.median_seconds)}"
                    f" · p90 {human_duration(s.p90_seconds)}", style="bold")
        self.query_one("#insights", Static).update(Group(head, by_status, by_code, by_network, by_country, stale))
