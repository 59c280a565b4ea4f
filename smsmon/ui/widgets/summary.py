"""The summary at the top of the main screen: messages per outcome, delivery rate, time to
deliver, stale messages, dead letters (facts that wrap between facts), and the events received
over the last half hour (hidden on narrow terminals, where the summary says the last minute's
count instead)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from textual.app import ComposeResult
from textual.containers import Horizontal

from smsmon.present import plural
from smsmon.store import stats as figures
from smsmon.store.stats import Stats
from smsmon.timeutil import human_duration
from smsmon.ui.format import partial_figures
from smsmon.ui.widgets.activity import Activity, second
from smsmon.ui.widgets.flow import Fact, Flow

OUTCOMES = (("DELIVERED", "delivered", "$success"), ("NOT_DELIVERED", "not delivered", "$error"),
            ("IN_FLIGHT", "in flight", "$primary-lighten-2"), ("UNKNOWN", "unknown", "$warning"))


class Summary(Horizontal):
    def compose(self) -> ComposeResult:
        yield Flow(id="summary")
        yield Activity(id="activity")

    def show(self, s: Stats | None, per_second: Counter, dead_letters: int, now: datetime) -> None:
        """`s` None: the figures are being counted (a filter that is read message by message)."""
        facts: list[Fact] = (["[dim]counting the messages of this filter …[/]"] if s is None else
                             self._figures(s))
        if dead_letters:
            facts.append(f"[$error]{plural(dead_letters, 'dead letter')}[/]")
        activity = self.query_one(Activity)
        if not activity.display:
            last_minute = sum(n for k, n in per_second.items() if k > second(now - timedelta(minutes=1)))
            facts.append(f"{plural(last_minute, 'event')} in the last minute")
        self.query_one(Flow).show(facts)
        activity.show(per_second, now)

    @staticmethod
    def _figures(s: Stats) -> list[Fact]:
        facts: list[Fact] = [f"[b {colour}]{s.outcomes.get(outcome, 0):,}[/] {label}" for outcome, label, colour in OUTCOMES]
        rate = f"{s.delivery_rate:.1%}" if s.delivery_rate is not None else "—"
        facts += [
            (f"delivery rate [b]{rate}[/]", f"rate [b]{rate}[/]"),
            (f"time to deliver: median [b]{human_duration(s.median_seconds)}[/], p90 {human_duration(s.p90_seconds)}",
             f"median [b]{human_duration(s.median_seconds)}[/] p90 {human_duration(s.p90_seconds)}"),
            f"stale [b{' $warning' if s.stale else ''}]{s.stale:,}[/]",
            Summary._scope(s),
        ]
        return facts

    @staticmethod
    def _scope(s: Stats) -> Fact:
        """How many messages the figures are of: all of them, or (a filter only the messages
        themselves answer) the first RAW_FIRST while the count goes on, then the first RAW_LIMIT."""
        if not s.partial:
            return f"{plural(s.messages, 'message')}, {plural(s.events, 'event')}", plural(s.events, "event")
        return partial_figures("first", s.limit), f"[$warning]first {s.limit:,} only[/]" + (
            " …" if s.limit < figures.RAW_LIMIT else "")
