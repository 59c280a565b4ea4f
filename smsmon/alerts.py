"""Alert rules (issue 14), pure: what each rule asks of a set of figures, when an alert starts and
clears, what is sent about it, and the app's banner line. Reading the figures is the store's
(store/window.py); evaluating on a schedule and delivering is the ingest's (ingest/alerting.py).

Rules, each off until its threshold is set:

    delivery_rate     of the messages finished in the window (at least min_messages of them),
                      the share delivered is below delivery_rate_below
    code_failures     more than code_failures_above messages failed in the window with one
                      error code (one alert per provider and code; failures without a code
                      are left to the other rules)
    network_failures  more than code_failures_above messages failed in the window on one network
    stale             more than stale_above messages are stale (open and silent for watch_window)
    silence           no callback for silence_after (the listener may be unreachable)
    poll_failures     a poller failed poll_failures polls in a row (one alert per provider)

An alert fires once when its condition starts, and clears once when the condition has been
false at CLEAR_AFTER evaluations in a row, so a figure hovering at its threshold does not send
a storm of notices. State lives in memory: after a restart, an alert still true fires again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from smsmon.timeutil import fmt, human_duration

CLEAR_AFTER = 2  # evaluations in a row without the condition before an alert clears
RULES = ("delivery_rate", "code_failures", "network_failures", "stale", "silence", "poll_failures")
SETTING = {"delivery_rate": "alerts.delivery_rate_below", "code_failures": "alerts.code_failures_above",
           "network_failures": "alerts.code_failures_above", "stale": "alerts.stale_above",
           "silence": "alerts.silence_after", "poll_failures": "alerts.poll_failures"}
MEANING = {
    "delivery_rate": "share delivered of the messages finished in the window",
    "code_failures": "messages failed in the window with one error code",
    "network_failures": "messages failed in the window on one network",
    "stale": "messages open and silent for longer than the watch window",
    "silence": "time since the last callback",
    "poll_failures": "polls failed in a row by one poller",
}


@dataclass(frozen=True)
class Rules:
    """Thresholds; None turns a rule off."""

    delivery_rate_below: float | None = None
    window: timedelta = timedelta(minutes=15)
    min_messages: int = 20
    code_failures_above: int | None = None
    stale_above: int | None = None
    silence_after: timedelta | None = None
    poll_failures: int | None = None

    def threshold(self, rule: str) -> Any:
        return {"delivery_rate": self.delivery_rate_below, "code_failures": self.code_failures_above,
                "network_failures": self.code_failures_above, "stale": self.stale_above,
                "silence": self.silence_after, "poll_failures": self.poll_failures}[rule]

    def on(self, rule: str) -> bool:
        return self.threshold(rule) is not None

    @property
    def any(self) -> bool:
        return any(self.on(r) for r in RULES)


@dataclass
class Figures:
    """What the rules are judged on, read at `at`."""

    at: datetime
    window: timedelta
    finished: int = 0  # messages delivered or not delivered whose latest activity is in the window
    delivered: int = 0
    failures_by_code: dict[str, int] = field(default_factory=dict)  # "provider:code" -> messages
    failures_by_network: dict[str, int] = field(default_factory=dict)
    stale: int = 0
    last_callback: str | None = None  # arrival of the newest callback known, as stored (None: none found)
    heard_at: datetime | None = None  # the same on the evaluator's clock (the runtime notes when it sees one)
    looked_back: timedelta | None = None  # how far back a callback was looked for, when none was found
    quiet_since: datetime | None = None  # silence counts from here at the earliest (when the listener started)
    poll_streaks: dict[str, int] = field(default_factory=dict)  # provider -> failed polls in a row, newest first
    poll_errors: dict[str, str] = field(default_factory=dict)  # provider -> the last failure's code
    dead_letters: int = 0

    @property
    def delivery_rate(self) -> float | None:
        return self.delivered / self.finished if self.finished else None

    def silent_for(self) -> timedelta | None:
        """How long since a callback (or since listening began), None when it cannot be told."""
        starts = [t for t in (self.quiet_since, self.heard_at) if t is not None]
        return self.at - max(starts) if starts else None


@dataclass(frozen=True)
class Condition:
    """One rule's verdict on one subject (a provider and code, a network, a provider, or "")."""

    rule: str
    subject: str
    active: bool
    value: Any  # the figure judged (a share, a count, seconds)
    threshold: Any
    summary: str  # one line a person reads

    @property
    def key(self) -> tuple[str, str]:
        return self.rule, self.subject


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.1f}%".replace(".0%", "%")


def window_text(w: timedelta) -> str:
    """`15m`, `6h`, `2.5h`."""
    return human_duration(w.total_seconds()).replace(".0", "")


def evaluate(rules: Rules, f: Figures) -> list[Condition]:
    """Every rule that is on, judged on `f`: one condition per rule (active or not), and one per
    subject for the rules that fire per code, network or provider."""
    out: list[Condition] = []
    w = window_text(f.window)
    if rules.delivery_rate_below is not None:
        rate, enough = f.delivery_rate, f.finished >= rules.min_messages
        active = enough and rate is not None and rate < rules.delivery_rate_below
        if enough:
            summary = (f"delivery rate {_pct(rate)} over {f.finished:,} messages finished in {w}"
                       f" ({'below' if active else 'at or above'} {_pct(rules.delivery_rate_below)})")
        else:
            summary = f"{f.finished:,} messages finished in {w}: fewer than {rules.min_messages} to judge the rate by"
        out.append(Condition("delivery_rate", "", active, round(rate, 4) if rate is not None else None,
                             rules.delivery_rate_below, summary))
    if rules.code_failures_above is not None:
        limit = rules.code_failures_above
        over = {k: n for k, n in f.failures_by_code.items() if n > limit and not k.endswith(":")}
        for k, n in sorted(over.items()):
            provider, code = k.split(":", 1)
            out.append(Condition("code_failures", k, True, n, limit, f"{n:,} {provider} messages failed with error code"
                                 f" {code} in {w} (more than {limit:,}): `smsmon explain {code} --provider {provider}`"))
        top = max((n for k, n in f.failures_by_code.items() if not k.endswith(":")), default=0)
        if not over:
            out.append(Condition("code_failures", "", False, top, limit,
                                 f"at most {top:,} failures with one error code in {w} (alert above {limit:,})"))
        over = {k: n for k, n in f.failures_by_network.items() if n > limit and k}
        for k, n in sorted(over.items()):
            out.append(Condition("network_failures", k, True, n, limit,
                                 f"{n:,} messages failed on network {k} in {w} (more than {limit:,})"))
        if not over:
            top = max((n for k, n in f.failures_by_network.items() if k), default=0)
            out.append(Condition("network_failures", "", False, top, limit,
                                 f"at most {top:,} failures on one network in {w} (alert above {limit:,})"))
    if rules.stale_above is not None:
        active = f.stale > rules.stale_above
        out.append(Condition("stale", "", active, f.stale, rules.stale_above,
                             f"{f.stale:,} stale messages ({'more than' if active else 'alert above'} {rules.stale_above:,})"))
    if rules.silence_after is not None:
        silent = f.silent_for()
        limit = rules.silence_after
        if silent is None:
            back = f" in the last {window_text(f.looked_back)}" if f.looked_back else ""
            active, summary, value = True, f"no callback stored{back}", None
        else:
            active = silent >= limit
            since = f"since {f.last_callback}" if f.last_callback else "since listening began"
            summary = (f"no callback for {window_text(silent)} ({since}; alert after {window_text(limit)})" if active
                       else f"last callback {window_text(silent)} ago (alert after {window_text(limit)})")
            value = round(silent.total_seconds(), 1)
        out.append(Condition("silence", "", active, value, limit.total_seconds(), summary))
    if rules.poll_failures is not None:
        limit = rules.poll_failures
        if not f.poll_streaks:
            out.append(Condition("poll_failures", "", False, 0, limit, f"no polls recorded (alert at {limit} failed in a row)"))
        for provider, n in sorted(f.poll_streaks.items()):
            active = n >= limit
            why = f" (last: {f.poll_errors[provider]}: `smsmon explain {f.poll_errors[provider]}`)" if f.poll_errors.get(provider) else ""
            summary = (f"{provider} poller failed its last {n} polls{why}" if active
                       else f"{provider} poller: {n} failed polls in a row (alert at {limit})")
            out.append(Condition("poll_failures", provider, active, n, limit, summary))
    return out


# ── state: fire once, clear once ────────────────────────────────────────────────
@dataclass
class Alert:
    """A firing alert, as the banner, `smsmon alerts`, metrics and notices show it."""

    rule: str
    subject: str
    summary: str
    value: Any
    threshold: Any
    since: str  # when it started firing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Transition:
    state: str  # "firing" or "cleared"
    alert: Alert
    at: str


class Tracker:
    """Which alerts fire, from successive evaluations; `update` returns what changed."""

    def __init__(self, clear_after: int = CLEAR_AFTER) -> None:
        self.clear_after = clear_after
        self._firing: dict[tuple[str, str], Alert] = {}
        self._quiet: dict[tuple[str, str], int] = {}  # evaluations in a row without the condition

    def update(self, conditions: Iterable[Condition], at: datetime, rules_on: Iterable[str] = RULES) -> list[Transition]:
        now = fmt(at)
        out: list[Transition] = []
        active = {c.key: c for c in conditions if c.active}
        for key, c in active.items():
            self._quiet.pop(key, None)
            alert = self._firing.get(key)
            if alert is None:
                alert = self._firing[key] = Alert(c.rule, c.subject, c.summary, c.value, c.threshold, now)
                out.append(Transition("firing", Alert(**asdict(alert)), now))
            else:
                alert.summary, alert.value = c.summary, c.value  # the figures move while it fires
        on = set(rules_on)
        for key in [k for k in self._firing if k not in active]:
            quiet = self._quiet[key] = self._quiet.get(key, 0) + 1
            if quiet >= self.clear_after or key[0] not in on:
                alert = self._firing.pop(key)
                self._quiet.pop(key, None)
                out.append(Transition("cleared", alert, now))
        return out

    def firing(self) -> list[Alert]:
        return [Alert(**asdict(a)) for a in sorted(self._firing.values(), key=lambda a: (RULES.index(a.rule), a.subject))]


# ── what is sent, and the banner ────────────────────────────────────────────────
def payload(t: Transition, rules: Rules, figures: Figures | None = None, *, source: str = "smsmon") -> dict[str, Any]:
    """The JSON a webhook receives and a command reads on stdin: the rule, its state, its figure
    and threshold, the window, and the figures it was judged on."""
    a = t.alert
    threshold = a.threshold
    body: dict[str, Any] = {
        "source": source, "alert": a.rule, "subject": a.subject or None, "state": t.state, "at": t.at,
        "firing_since": a.since, "summary": a.summary, "value": a.value,
        "threshold": threshold, "setting": SETTING[a.rule], "meaning": MEANING[a.rule],
        "window_seconds": rules.window.total_seconds(), "window": window_text(rules.window),
    }
    if a.rule == "delivery_rate":
        body["min_messages"] = rules.min_messages
    if figures is not None:
        body["figures"] = {"finished": figures.finished, "delivered": figures.delivered,
                           "delivery_rate": figures.delivery_rate, "stale": figures.stale,
                           "last_callback": figures.last_callback, "dead_letters": figures.dead_letters}
    return body


def banner(firing: list[Alert], *, limit: int = 2) -> str | None:
    """The app's one-line banner for the alerts firing, or None when none is: the first few
    summaries, then how many more."""
    if not firing:
        return None
    shown = " · ".join(a.summary.split(": `smsmon explain")[0] for a in firing[:limit])
    more = f" · and {len(firing) - limit} more (`smsmon alerts`)" if len(firing) > limit else ""
    return f"{len(firing)} alert{'s' if len(firing) > 1 else ''} firing: {shown}{more}"
