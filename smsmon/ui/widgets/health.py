"""The health line: live or offline, where callbacks go, the last callback, each poller's last
result. It draws one record, `HealthInfo`, which the app builds from this process's ingest
(live) or from the database's poll runs (browsing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.markup import escape

from smsmon.ui.format import ago
from smsmon.ui.widgets.flow import Fact, Flow


@dataclass(frozen=True)
class PollState:
    ok: bool
    finished_at: str
    error_code: str | None = None


@dataclass(frozen=True)
class ForwardState:
    waiting: int  # callbacks in the outbox, not yet relayed
    last_error: str | None = None  # "forward_timeout: ...", free of secrets, when the last try failed


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
    forward: ForwardState | None = None  # live, with --forward-to: the outbox


class HealthLine(Flow):
    def show_health(self, h: HealthInfo, now: datetime) -> None:
        facts: list[Fact] = []
        if h.live:
            url = escape(h.callback_url or "")
            facts += ["[b reverse $success] LIVE [/]", (f"callbacks to {url}", url),
                      f"last callback {ago(h.last_callback, now)}"]
        else:
            facts += ["[b reverse] OFFLINE [/]", (f"browsing {escape(str(h.db))}", f"browsing {escape(h.db.name)}"),
                      "not receiving; following rows another process adds"]
        for provider in h.pollers:
            p = h.polls.get(provider)
            label = f"{provider} poll " if h.live else f"last {provider} poll "
            if p is None:
                facts.append(f"{label}[$warning]starting[/]")
            elif h.live:
                facts.append(f"{label}[$success]ok {ago(p.finished_at, now)}[/]" if p.ok
                             else f"{label}[$error]{p.error_code} {ago(p.finished_at, now)}[/]")
            else:
                facts.append(f"{label}{ago(p.finished_at, now)}: " + ("[$success]ok[/]" if p.ok else f"[$error]{p.error_code}[/]"))
        if h.live and not h.pollers:
            facts.append("[dim]no pollers configured[/]")
        if h.forward is not None:
            facts.append(_forward_fact(h.forward))
        if h.store_error:
            facts.append(f"[b $error]NOT STORING: {escape(h.store_error)}[/]")
        if h.paused:
            facts.append("[b $warning]PAUSED (p resumes)[/]")
        self.show(facts)


def _forward_fact(f: ForwardState) -> Fact:
    if not f.waiting:
        return "forward [$success]ok[/]"
    if f.last_error:
        kind = escape(f.last_error.split(":", 1)[0])
        return (f"[$error]forward: {f.waiting:,} waiting, {kind}[/]", f"[$error]fwd {f.waiting:,} waiting[/]")
    return f"forward [$warning]{f.waiting:,} waiting[/]"
