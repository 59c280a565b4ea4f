"""The summary at the top of the main screen: messages per outcome, delivery rate, time to
deliver, stale messages, dead letters, and events per minute over the last half hour."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from smsmon.store.stats import Stats
from smsmon.timeutil import human_duration

SPARK_MINUTES = 30
OUTCOMES = (("DELIVERED", "delivered", "$success"), ("NOT_DELIVERED", "not delivered", "$error"),
            ("IN_FLIGHT", "in flight", "$primary-lighten-2"), ("UNKNOWN", "unknown", "$warning"))


class Summary(Horizontal):
    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        with Vertical(id="spark-box"):
            yield Static(f"events / minute, last {SPARK_MINUTES} min", id="spark-label")
            yield Sparkline([0] * SPARK_MINUTES, id="spark")

    def show(self, s: Stats, per_minute: Counter, dead_letters: int, now: datetime) -> None:
        parts = [f"[b {colour}]{s.outcomes.get(outcome, 0):,}[/] {label}" for outcome, label, colour in OUTCOMES]
        rate = f"{s.delivery_rate:.1%}" if s.delivery_rate is not None else "—"
        line2 = (f"delivery rate [b]{rate}[/]   time to deliver: median [b]{human_duration(s.median_seconds)}[/],"
                 f" p90 {human_duration(s.p90_seconds)}   stale [b{' $warning' if s.stale else ''}]{s.stale:,}[/]"
                 f"   {s.messages:,} messages, {s.events:,} events")
        if dead_letters:
            line2 += f"   [$error]{dead_letters:,} dead letters[/]"
        self.query_one("#summary", Static).update("   ".join(parts) + "   \n" + line2)
        minutes = [(now - timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M") for i in range(SPARK_MINUTES - 1, -1, -1)]
        self.query_one("#spark", Sparkline).data = [per_minute.get(m, 0) for m in minutes]
