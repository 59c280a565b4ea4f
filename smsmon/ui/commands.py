"""The command palette: screens, common filters, pause."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from smsmon.ui.app import SmsmonApp

FILTERS = [
    ("Filter: not delivered", "status:not_delivered"),
    ("Filter: in flight", "status:in_flight"),
    ("Filter: stale", "status:stale"),
    ("Filter: last hour", "since:1h"),
    ("Filter: last 24 hours", "since:24h"),
    ("Filter: Eazita", "provider:eazita"),
    ("Filter: Zeckta", "provider:zeckta"),
    ("Filter: conflicting finals", "flag:terminal_conflict"),
    ("Filter: late delivery reports", "flag:late_dlr"),
    ("Clear filter", ""),
]


class SmsmonCommands(Provider):
    def _commands(self) -> list[tuple[str, object, str]]:
        app: "SmsmonApp" = self.app  # type: ignore[assignment]
        return [
            ("Insights", app.action_insights, "failures by code, network, country; delivery over time; stale"),
            ("Dead letters", app.action_dead_letters, "rejected callbacks and why"),
            ("Help", app.action_help, "every key"),
            ("Pause / resume live updates", app.toggle_pause, "p"),
            *[(name, partial(app.set_filter, expr), expr or "show everything") for name, expr in FILTERS],
        ]

    async def discover(self) -> Hits:
        for name, action, help_text in self._commands():
            yield DiscoveryHit(name, action, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self._commands():
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), action, help=help_text)  # type: ignore[arg-type]
