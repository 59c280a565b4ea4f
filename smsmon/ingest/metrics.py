"""Prometheus metrics (issue 14): `GET /metrics` on the listener, in the text format.

Nothing is counted twice and nothing is counted on the request path: the callbacks come from the
counts the listener keeps anyway, the events and commits from one call per commit on the writer
thread (a few dictionary additions per batch), the polls from each poll's outcome, and the
figures over the database (stale messages, the delivery rate over the alert window, dead
letters) from the alert evaluator's latest reading. A scrape reads those in memory and runs no
query. So metrics cost the listener nothing measurable (README, Performance).

The same token rule as callbacks: with a token set (SMSMON_CALLBACK_TOKEN), only
`GET /metrics/<token>` or `GET /metrics` with `Authorization: Bearer <token>` answers, compared in
constant time; anything else is 404. Without a token (loopback, or --insecure), `GET /metrics`.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from typing import TYPE_CHECKING, Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from smsmon import __version__
from smsmon.lifecycle import Event, Status, outcome_of

if TYPE_CHECKING:
    from smsmon.alerts import Alert, Figures
    from smsmon.ingest.listener import Listener
    from smsmon.ingest.poller import PollOutcome
    from smsmon.store.writer import Applied

log = logging.getLogger("smsmon.metrics")

METRICS_PATH = "/metrics"
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)  # items per commit (the committer takes at most 500)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # seconds; a commit takes ~1-10 ms
TOP_LABELS = 20  # failures by code and by network in the window: the largest few (label values come from providers)


class Histogram:
    """Cumulative buckets kept as plain counts: observed on the writer thread, read at scrape."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        h = HistogramMetricFamily(name, doc)
        running, buckets = 0, []
        for bound, n in zip([*map(str, self.bounds), "+Inf"], self.counts):
            running += n
            buckets.append((bound, running))
        h.add_metric([], buckets, self.sum)
        return h


class Metrics:
    """What `/metrics` shows. The runtime connects the sources (ingest/operations.py)."""

    def __init__(self) -> None:
        self.callbacks: Callable[[], dict[str, int]] = dict
        self.figures: Callable[[], "Figures | None"] = lambda: None
        self.firing: Callable[[], "list[Alert]"] = list
        self.forward_depth: Callable[[], int | None] = lambda: None  # the forward outbox's depth, where there is one
        self.store_ok: Callable[[], bool] = lambda: True
        self.last_callback: Callable[[], float | None] = lambda: None  # unix time of the newest callback
        self.evaluation_seconds: Callable[[], float | None] = lambda: None
        self.events: dict[tuple[str, Status], int] = {}  # (provider, status) -> stored events
        self.polls: Counter[tuple[str, str]] = Counter()  # (provider, result) -> polls
        self.pruned: Counter[str] = Counter()  # messages, events
        self.batch = Histogram(BATCH_BUCKETS)
        self.commit = Histogram(COMMIT_BUCKETS)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]  # a collector: anything with collect()

    # ── fed by the runtime ────────────────────────────────────────────────────
    def observe_commit(self, events: list[Event], applied: "list[Applied]", items: int, seconds: float) -> None:
        """On the writer thread, once per commit."""
        self.batch.observe(items)
        self.commit.observe(seconds)
        counts = self.events
        for e, a in zip(events, applied):
            if not a.duplicate:
                key = (e.provider, e.status)
                counts[key] = counts.get(key, 0) + 1

    def observe_poll(self, outcome: "PollOutcome") -> None:
        self.polls[(outcome.provider, "ok" if outcome.ok else (outcome.error_code or "failed"))] += 1

    def observe_prune(self, messages: int, events: int) -> None:
        self.pruned["messages"] += messages
        self.pruned["events"] += events

    # ── read at scrape ────────────────────────────────────────────────────────
    def collect(self) -> Iterator[Metric]:
        yield _gauge("smsmon_info", "smsmon's version", [(["version"], [__version__], 1)], labels=["version"])
        c = CounterMetricFamily("smsmon_callbacks", "callbacks answered, by provider and result", labels=["provider", "result"])
        for result, n in sorted(self.callbacks().items()):
            c.add_metric(["zeckta", result], n)
        yield c
        c = CounterMetricFamily("smsmon_events", "events stored by this process, by provider, normalized status and outcome",
                                labels=["provider", "status", "outcome"])
        for (provider, status), n in sorted(dict(self.events).items()):
            c.add_metric([provider, status.value, outcome_of(provider, status).value], n)
        yield c
        yield self.batch.family("smsmon_commit_batch_size", "items (events, dead letters, poll runs) per commit")
        yield self.commit.family("smsmon_commit_seconds", "time to apply and commit one batch")
        c = CounterMetricFamily("smsmon_poll_runs", "polls, by provider and result (ok, or the failure's code)",
                                labels=["provider", "result"])
        for labels, n in sorted(self.polls.items()):
            c.add_metric(list(labels), n)
        yield c
        c = CounterMetricFamily("smsmon_pruned", "removed by retention in this process", labels=["what"])
        for what in ("messages", "events"):
            c.add_metric([what], self.pruned[what])
        yield c
        yield _gauge("smsmon_store_up", "1 while the database takes writes, 0 while it cannot", [([], [], int(self.store_ok()))])
        if (depth := self.forward_depth()) is not None:
            yield _gauge("smsmon_forward_queue_depth", "events waiting in the forward outbox", [([], [], depth)])
        if (last := self.last_callback()) is not None:
            yield _gauge("smsmon_last_callback_timestamp_seconds", "when the newest callback arrived (unix time)",
                         [([], [], last)])
        yield from self._figures()

    def _figures(self) -> Iterator[Metric]:
        f = self.figures()
        if f is None:
            return
        window = f.window.total_seconds()
        yield _gauge("smsmon_alert_window_seconds", "the window of the delivery rate and failure figures", [([], [], window)])
        yield _gauge("smsmon_window_finished_messages", "messages delivered or not, latest activity in the window",
                     [([], [], f.finished)])
        yield _gauge("smsmon_window_delivered_messages", "messages delivered, latest activity in the window",
                     [([], [], f.delivered)])
        if f.delivery_rate is not None:
            yield _gauge("smsmon_delivery_rate", "delivered / finished over the window", [([], [], f.delivery_rate)])
        top = sorted(f.failures_by_code.items(), key=lambda kv: -kv[1])[:TOP_LABELS]
        yield _gauge("smsmon_window_failures_by_code", "messages not delivered in the window, by provider and error code",
                     [(["provider", "error_code"], k.split(":", 1), n) for k, n in top], labels=["provider", "error_code"])
        top = sorted(f.failures_by_network.items(), key=lambda kv: -kv[1])[:TOP_LABELS]
        yield _gauge("smsmon_window_failures_by_network", "messages not delivered in the window, by network",
                     [(["network"], [k], n) for k, n in top], labels=["network"])
        yield _gauge("smsmon_stale_messages", "open messages silent for longer than the watch window", [([], [], f.stale)])
        yield _gauge("smsmon_dead_letters", "rejected callbacks kept in the database", [([], [], f.dead_letters)])
        yield _gauge("smsmon_alerts_firing", "1 for each alert firing", [(["rule", "subject"], [a.rule, a.subject], 1)
                                                                        for a in self.firing()], labels=["rule", "subject"])
        if (seconds := self.evaluation_seconds()) is not None:
            yield _gauge("smsmon_evaluation_seconds", "how long the latest reading of these figures took", [([], [], seconds)])

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _gauge(name: str, doc: str, samples: list[tuple[list[str], list[str], float]], *, labels: list[str] | None = None) -> Metric:
    g = GaugeMetricFamily(name, doc, labels=labels or (samples[0][0] if samples else None) or None)
    for _, values, v in samples:
        g.add_metric(values, v)
    return g


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def add_route(listener: "Listener", metrics: Metrics) -> Callable[[web.Application], None]:
    """The `/metrics` routes, checked as the listener checks callbacks (address, token)."""
    from smsmon.ingest.listener import _early

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            if refused := listener._forbidden(request):
                return await _early(request, refused)
            in_path = request.match_info.get("token")
            given = in_path if in_path is not None else _bearer(request)
            allowed = in_path is None if listener.config.token is None else listener._token_ok(given)
            if not allowed:
                return await _early(request, web.json_response({"ok": False, "error": "not found"}, status=404))
            if request.method not in ("GET", "HEAD"):
                return await _early(request, web.json_response({"ok": False, "error": "use GET"}, status=405,
                                                               headers={"Allow": "GET"}))
            return await _early(request, web.Response(body=metrics.render(), headers={
                "Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}))
        except Exception as exc:  # a bug of ours: never a 500
            return listener._internal_error(request, exc)

    def add(app: web.Application) -> None:
        for path in (METRICS_PATH, METRICS_PATH + "/{token}"):
            app.router.add_route("*", path, handle, expect_handler=listener._expect_nothing)

    return add

