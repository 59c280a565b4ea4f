"""The health line: live or offline, where callbacks go, the last callback, each poller's last
result. It draws one record, `HealthInfo`, which the app builds from this process's ingest
(live) or from the database's poll runs (browsing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.markup import escape
from textual.widgets import Static

from smsmon.ui.format import ago


@dataclass(frozen=True)
class PollState:
    ok: bool
    finished_at: str
    error_code: str | None = None


@dataclass(frozen=True)
class HealthInfo:
    live: bool
    db: Path
    callback_url: str | None = None
    last_callback: str | None = None
    pollers: tuple[str, ...] = ()  # live: the configured pollers; browsing: those with poll runs
    polls: dict[str, PollState] = field(default_factory=dict)
    paused: bool = False
    store_error: str | None = None  # live: why the database takes no writes now


class HealthLine(Static):
    def show(self, h: HealthInfo, now: datetime) -> None:
        if h.live:
            parts = ["[b reverse $success] LIVE [/]",
                     f"  callbacks to {escape(h.callback_url or '')}   last callback {ago(h.last_callback, now)}"]
        else:
            parts = ["[b reverse] OFFLINE [/]", f"  browsing {escape(str(h.db))}, not receiving; following rows another process adds"]
        for provider in h.pollers:
            p = h.polls.get(provider)
            label = f"   {provider} poll " if h.live else f"   last {provider} poll "
            if p is None:
                parts.append(f"{label}[$warning]starting[/]")
            elif h.live:
                parts.append(f"{label}[$success]ok {ago(p.finished_at, now)}[/]" if p.ok
                             else f"{label}[$error]{p.error_code} {ago(p.finished_at, now)}[/]")
            else:
                parts.append(f"{label}{ago(p.finished_at, now)}: " + ("[$success]ok[/]" if p.ok else f"[$error]{p.error_code}[/]"))
        if h.live and not h.pollers:
            parts.append("   [dim]no pollers configured[/]")
        if h.store_error:
            parts.append(f"   [b $error]NOT STORING: {escape(h.store_error)}[/]")
        if h.paused:
            parts.append("   [b $warning]PAUSED (p resumes)[/]")
        self.update("".join(parts))
