"""The alert banner: one line above the health line while any alert fires (issue 14), hidden
otherwise. It draws what the live ingest's evaluator says fires now (`Evaluator.firing()`), in
the words of `smsmon.alerts.banner`; the app feeds it on every tick, paused or not, since an
alert is news whatever the table is doing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import Static

if TYPE_CHECKING:
    from smsmon.alerts import Alert


class AlertBanner(Static):
    DEFAULT_CSS = """
    AlertBanner {
        display: none;
        height: auto;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)  # summaries carry provider text: never read as markup
        self.line: str | None = None  # what it shows now; None while nothing fires

    def show_alerts(self, firing: list[Alert]) -> None:
        """Show the alerts firing now ([] hides the banner). Draws only when the line changes."""
        from smsmon.alerts import banner  # only live apps have alerts: not loaded to browse

        line = banner(firing)
        if line == self.line:
            return
        self.line = line
        self.update(f"ALERT  {line}" if line else "")
        self.display = line is not None
