"""Help: the keys of each screen, read from the screens' own bindings (so it lists exactly the
keys each screen has), the screen it was opened from first."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Markdown

from smsmon.ui.screens.base import SubScreen

# What an action does, in more words than a footer has room for.
WHAT = {
    "filter": "filter: free text plus `status:` `provider:` `dest:` `error:` `network:` `country:` `flag:` `since:` `until:`",
    "clear_filter": "clear the filter (while typing one: stop typing)",
    "jump": "jump in time: the filter, open at `until:` (`until:2h`, `until:2026-11-23T14:00`) or `since:`",
    "app.insights": "insights: failures by status, code, network and country, rates, costs, delivery over time",
    "app.dead_letters": "dead letters: rejected callbacks and why",
    "toggle_stream": "show or hide the event stream (hidden below 120 columns)",
    "newest": "to the newest message (the table follows new ones while you are there)",
    "oldest": "to the oldest loaded message (more load as you go down)",
    "sort": "sort the loaded rows by the next column (a click on a header sorts by it); after the last, newest first again",
    "sort_reverse": "sort the other way round",
    "copy": "copy the message, its events and explanations as JSON (the terminal's, tmux's and the system clipboard)",
    "save": "save the same JSON to smsmon-<id>.json in the current folder",
    "ask_provider": "ask the provider about it now (live, where a poller is configured)",
    "same_failure": "for a failed message: the messages that failed the same way in the last 24 h",
    "same_failure_network": "the same, on this message's network",
    "period": "another period: the last 24 hours, 7 days, hour (when the filter sets no since:/until:)",
    "app.pop_screen": "back",
    "pause": "pause / resume live updates",
    "help": "this help",
    "quit": "quit",
    "command_palette": "command palette: screens, common filters, pause",
}
NAMES = {"slash": "/", "question_mark": "?", "escape": "esc", "ctrl+p": "ctrl+p", "home": "home", "end": "end"}
# Keys a screen's widgets answer besides their bindings: (key, what).
EXTRA = {
    "main": [("enter", "open the message: timeline, explanations, raw payloads"),
             ("↑ ↓ pgup pgdn", "move; more rows load as you go down")],
    "message": [("↑ ↓ pgup pgdn", "scroll")],
    "insights": [("enter", "on a row: exactly the messages it counts (esc comes back); on a stale message: that message"),
                 ("tab", "the next table"), ("↑ ↓", "move in a table")],
    "filtered": [("enter", "open the message"), ("↑ ↓ pgup pgdn", "move; more rows load as you go down")],
    "letters": [("↑ ↓", "choose a dead letter: its body shows below")],
}


def bindings(*classes: Any) -> list[Binding]:
    """The bindings smsmon's classes declare (and inherit from each other), in order, one per
    key. (Textual's own movement keys are the EXTRA lines.)"""
    seen: dict[str, Binding] = {}
    for cls in classes:
        for klass in reversed(cls.__mro__):
            if not klass.__module__.startswith("smsmon."):
                continue
            for b in klass.__dict__.get("BINDINGS", []):
                b = b if isinstance(b, Binding) else Binding(*b)
                for key in b.key.split(","):
                    seen[key.strip()] = b
    return list(seen.values())


def keys_of(*classes: Any) -> list[str]:
    """Every key the classes bind (help lists these, and tests compare)."""
    return sorted({k.strip() for b in bindings(*classes) for k in b.key.split(",")})


def _rows(binds: list[Binding]) -> list[str]:
    grouped: dict[str, list[str]] = {}
    for b in binds:
        for key in b.key.split(","):
            grouped.setdefault(b.action, []).append(NAMES.get(key.strip(), key.strip()))
    return [f"| `{'`, `'.join(dict.fromkeys(keys))}` | {WHAT.get(action, action)} |" for action, keys in grouped.items()]


def sections() -> dict[str, tuple[str, list[Any]]]:
    """name -> (heading, the classes whose bindings it lists)."""
    from smsmon.ui.app import SmsmonApp
    from smsmon.ui.screens.dead_letters import DeadLettersScreen
    from smsmon.ui.screens.filtered import FilteredScreen
    from smsmon.ui.screens.insights import InsightsScreen
    from smsmon.ui.screens.main import MainScreen
    from smsmon.ui.screens.message import MessageScreen
    from smsmon.ui.widgets.messages_table import MessagesTable

    return {
        "main": ("The messages (main screen)", [MainScreen, MessagesTable]),
        "message": ("A message", [MessageScreen]),
        "insights": ("Insights", [InsightsScreen]),
        "filtered": ("Messages opened from insights", [FilteredScreen, MessagesTable]),
        "letters": ("Dead letters", [DeadLettersScreen]),
        "everywhere": ("On every screen", [SmsmonApp]),
    }


def text(first: str = "main") -> str:
    out = ["# smsmon keys", ""]
    secs = sections()
    for name in [first, *(n for n in secs if n != first)]:
        heading, classes = secs[name]
        out += [f"## {heading}", "", "| key | what |", "|---|---|"]
        out += [f"| `{k}` | {w} |" for k, w in EXTRA.get(name, [])]
        out += _rows(bindings(*classes))
        out.append("")
    out.append("While typing a filter: `enter` applies it, `esc` stops typing; the filter stays when you move between"
               " screens. Filters combine with AND, comma-separated values with OR: `status:failed,rejected since:2h`.")
    return "\n".join(out)


class HelpScreen(SubScreen):
    def __init__(self, first: str = "main", *, show_clock: bool = True) -> None:
        super().__init__(show_clock=show_clock)
        self.first = first

    def compose(self) -> ComposeResult:
        yield from self.header()
        with VerticalScroll():
            yield Markdown(text(self.first))
        yield from self.footer()
