"""What every screen shares: the header and the footer; what every screen opened from the main
one shares: esc goes back. (The keys that work everywhere, p ? q ctrl+p, are the app's.)"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header


class SmsmonScreen(Screen):
    def __init__(self, *, show_clock: bool = True) -> None:
        super().__init__()
        self.show_clock = show_clock

    def header(self) -> ComposeResult:
        yield Header(show_clock=self.show_clock)

    def footer(self) -> ComposeResult:
        yield Footer()


class SubScreen(SmsmonScreen):
    """A screen opened from the main one: esc goes back."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
