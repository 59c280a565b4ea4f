"""What lets smsmon run for months (issue 14), wired into one process's ingest: retention in the
background, Prometheus metrics on the listener, and alerts judged on a schedule and delivered.

    ops = Operations(settings, committer, listener)   # before the listener starts (adds /metrics)
    tasks = ops.start(stop)                            # the evaluator, the deliverer, retention
    ops.alerts.firing()                                # what fires now (the app's banner)
    await ops.close()
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Callable

from smsmon.alerts import RULES, Rules, window_text
from smsmon.config import AlertsSettings, Settings
from smsmon.errors import ConfigError
from smsmon.ingest.alerting import Delivery, Evaluator, command_args, webhook_host
from smsmon.ingest.committer import Committer
from smsmon.ingest.listener import Listener
from smsmon.ingest.metrics import Metrics, add_route
from smsmon.ingest.poller import PollOutcome
from smsmon.ingest.retention import Retention
from smsmon.redact import Redactor
from smsmon.timeutil import now_utc, parse_iso


def rules_from(a: AlertsSettings) -> Rules:
    return Rules(delivery_rate_below=a.delivery_rate_below, window=a.window, min_messages=a.min_messages,
                 code_failures_above=a.code_failures_above, stale_above=a.stale_above, silence_after=a.silence_after,
                 poll_failures=a.poll_failures)


def delivery_from(settings: Settings) -> Delivery | None:
    a = settings.alerts
    if a.command:
        try:
            command_args(a.command)
        except ValueError as exc:
            raise ConfigError(f"alerts.command ({settings.sources.get('alerts.command', 'default')}): {exc}") from None
    if not (a.webhook or a.command):
        return None
    return Delivery(webhook=a.webhook, command=a.command, redact=Redactor(settings.secrets))


class Operations:
    def __init__(self, settings: Settings, committer: Committer, listener: Listener | None, *,
                 clock: Callable[[], datetime] = now_utc, forward_depth: Callable[[], int | None] | None = None) -> None:
        """`forward_depth`: how many events wait in the forward outbox, where a forwarder runs (a
        gauge; absent while it returns None)."""
        self.delivery = delivery_from(settings)
        counts = listener.counts if listener is not None else None
        self.alerts = Evaluator(
            settings.db, rules_from(settings.alerts), watch_window=settings.watch_window, delivery=self.delivery,
            clock=clock,
            callbacks_seen=(lambda: counts["new"] + counts["duplicate"] + counts["rejected"]) if counts is not None else None,
            last_callback=lambda: listener.last_callback_at if listener is not None else None)
        self.metrics: Metrics | None = None
        if listener is not None and settings.metrics:
            m = self.metrics = Metrics()
            m.callbacks = lambda: dict(listener.counts)
            m.figures = lambda: self.alerts.figures
            m.firing = self.alerts.firing
            m.store_ok = lambda: committer.healthy
            m.last_callback = lambda: parse_iso(listener.last_callback_at).timestamp() if listener.last_callback_at else None
            m.evaluation_seconds = lambda: self.alerts.seconds
            if forward_depth is not None:
                m.forward_depth = forward_depth
            committer.observer = m.observe_commit
            listener.extra_routes.append(add_route(listener, m))
        self.retention = Retention(committer, settings.retention, clock=clock,
                                   on_pruned=self.metrics.observe_prune if self.metrics else None) if settings.retention else None

    def polled(self, outcome: PollOutcome) -> None:
        if self.metrics is not None:
            self.metrics.observe_poll(outcome)

    def start(self, stop: asyncio.Event) -> list[asyncio.Task]:
        """The background work, until `stop`: evaluation (for alerts and for the figures /metrics
        shows), delivery of notices, retention."""
        tasks = []
        if self.metrics is not None or self.alerts.rules.any:  # else no one reads the figures
            tasks.append(asyncio.create_task(self.alerts.run(stop), name="smsmon-alerts"))
        if self.delivery is not None:
            tasks.append(asyncio.create_task(self.delivery.run(stop), name="smsmon-alert-delivery"))
        if self.retention is not None:
            tasks.append(asyncio.create_task(self.retention.run(stop), name="smsmon-retention"))
        return tasks

    def describe(self, listening: str | None, token: bool) -> list[str]:
        """What `serve` says of these at start, one line each."""
        lines = []
        if self.metrics is not None and listening:
            lines.append(f"metrics: {listening}/metrics" + ("/<token> (or Authorization: Bearer <token>)" if token else ""))
        rules = self.alerts.rules
        on = [r for r in RULES if rules.on(r)]
        if on:
            where = []
            if self.delivery is not None and self.delivery.webhook is not None:
                where.append(f"webhook {webhook_host(self.delivery.webhook.reveal())}")
            if self.delivery is not None and self.delivery.command is not None:
                where.append(f"command {self.delivery.command[0]}")
            lines.append(f"alerts on: {', '.join(on)} (window {window_text(rules.window)}); notices to "
                         f"{' and '.join(where) or 'this log only'} (`smsmon alerts` lists them)")
        if self.retention is not None:
            lines.append(f"retention: removing messages silent for over {window_text(self.retention.keep)}, "
                         "shortly after start and then hourly")
        return lines

    async def close(self) -> None:
        await asyncio.to_thread(self.alerts.close)
