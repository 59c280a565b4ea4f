"""Help: every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown

from smsmon.ui.screens.base import SubScreen

HELP = """\
# smsmon keys

| key | where | what |
|---|---|---|
| `/` | messages | filter: free text plus `status:` `provider:` `dest:` `error:` `network:` `flag:` `since:` `until:` |
| `esc` | messages | clear the filter (while typing one: stop typing) |
| `enter` | messages | open the message: timeline, explanations, raw payloads |
| `g` | messages | back to the newest message (the table follows new ones while you are there) |
| `p` | anywhere | pause / resume live updates |
| `i` | messages | insights: failures by code, network, country; delivery over time; stale messages |
| `d` | messages | dead letters: rejected callbacks and why |
| `c` | message | copy the message, its events and explanations as JSON |
| `r` | message | ask the provider about it now (where a poller is configured) |
| `esc` | other screens | back |
| `ctrl+p` | anywhere | command palette: screens, common filters, pause |
| `?` | anywhere | this help |
| `q` | anywhere | quit |

The filter stays when you move between screens. Filters combine with AND; comma-separated
values with OR: `status:failed,rejected since:2h provider:eazita`.
"""


class HelpScreen(SubScreen):
    def compose(self) -> ComposeResult:
        yield from self.header()
        with VerticalScroll():
            yield Markdown(HELP)
        yield from self.footer()
