"""Dead letters and help."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Markdown, Static

if TYPE_CHECKING:
    from smsmon.ui.app import SmsmonApp


class DeadLettersScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("question_mark", "app.help", "Help"),
                Binding("q", "app.quit", "Quit")]

    app: "SmsmonApp"

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.app.show_clock)
        yield DataTable(id="letters", cursor_type="row", zebra_stripes=True)
        yield Static("", id="letter-body")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "dead letters: callbacks answered 400, kept with the reason"
        table = self.query_one(DataTable)
        for c in ("received (UTC)", "from", "path", "reason"):
            table.add_column(c)
        self.letters: dict[str, dict[str, Any]] = {}
        self.load()

    @work(thread=True, exclusive=True, group="letters")
    def load(self) -> None:
        rows = self.app.data.dead_letters()
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[dict[str, Any]]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.letters = {str(r["id"]): r for r in rows}
        for r in rows:
            table.add_row(r["received_at"][:19].replace("T", " "), r["remote"] or "", r["path"], r["reason"], key=str(r["id"]))
        if not rows:
            self.query_one("#letter-body", Static).update("No dead letters: every callback so far was well formed.")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        r = self.letters.get(str(event.row_key.value))
        if r:
            body = r["body"] or "(empty body)"
            self.query_one("#letter-body", Static).update(f"[b]body[/b] ({len(body):,} characters)\n" + body[:3000])


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


class HelpScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("q", "app.quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Markdown(HELP)
        yield Footer()
