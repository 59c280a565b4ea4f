"""Alerts at run time (issue 14): the rules (smsmon.alerts) judged on the database's figures
(store/window.py) every EVALUATE_EVERY_S, and each alert's start and end delivered once: POSTed to
`alerts.webhook` (retried with backoff) and given to `alerts.command` on its standard input.

The figures are read on a thread, on a read-only connection of their own, from the maintained
aggregates: a reading costs a few milliseconds on a million-event database (README), and the
listener never waits for it. Silence is what this process hears: the listener's count of
callbacks, noted at each evaluation on the evaluator's clock (injectable, for tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shlex
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from smsmon import __version__
from smsmon.alerts import RULES, Alert, Figures, Rules, Tracker, Transition, evaluate, payload
from smsmon.config import Secret, SecretUrl
from smsmon.errors import Failure, StoreError
from smsmon.redact import Redactor
from smsmon.store.backend import figures_source
from smsmon.timeutil import now_utc

log = logging.getLogger("smsmon.alerts")

# Rules look back 15 minutes by default and a reading costs ~2 ms on the 1M-event database of
# `smsmon sim generate` (measured), so every 15 s is prompt and cheap. A window crowded with
# messages costs more (0.15 s for 97,000 messages in the last 15 minutes, measured): the evaluator
# then waits longer, so that reading never takes more than EVALUATE_SHARE of the time.
EVALUATE_EVERY_S = 15.0
EVALUATE_SHARE = 0.01
WEBHOOK_ATTEMPTS = 6  # the first, then 5 retries 1, 2, 4, 8, 16 s apart (with jitter): half a minute of an outage
WEBHOOK_BACKOFF_S = 1.0
WEBHOOK_BACKOFF_MAX_S = 60.0  # and never longer than this, whatever Retry-After says
WEBHOOK_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
STDERR_KEPT = 2048  # bytes of a failing command's stderr kept for the log line
QUEUE_LIMIT = 1000  # notices waiting to be delivered; beyond it the oldest is dropped (bounded memory)


def webhook_host(url: str) -> str:
    """What a log line may say of a webhook URL: its scheme and host, never its path or query
    (which hold a Slack or Teams hook's secret) or user and password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


def command_args(command: str) -> list[str]:
    """The command split as a shell would split it (no shell runs it: no pipes or redirections;
    use `sh -c '...'` for those). Raises ValueError."""
    args = shlex.split(command)
    if not args:
        raise ValueError("is empty")
    return args


class Delivery:
    """Sends each notice, in order, to the webhook and the command."""

    def __init__(self, *, webhook: Secret | None = None, command: str | None = None, redact: Redactor | None = None,
                 attempts: int = WEBHOOK_ATTEMPTS, backoff: float = WEBHOOK_BACKOFF_S, timeout: float = WEBHOOK_TIMEOUT_S,
                 command_timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.webhook = webhook
        self.command = command_args(command) if command else None
        self.redact = redact or Redactor(webhook.parts() if isinstance(webhook, SecretUrl) else [webhook.reveal()] if webhook else [])
        self.attempts, self.backoff, self.timeout, self.command_timeout = attempts, backoff, timeout, command_timeout
        self.outcomes: Counter[str] = Counter()  # webhook_ok, webhook_failed, command_ok, command_failed, dropped
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._rng = random.Random()

    @property
    def enabled(self) -> bool:
        return bool(self.webhook or self.command)

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue else 0

    def enqueue(self, body: dict[str, Any]) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._queue.qsize() >= QUEUE_LIMIT:
            self._queue.get_nowait()
            self.outcomes["dropped"] += 1
            log.warning("%s: over %d alert notices waiting to be delivered: dropped the oldest", Failure.ALERT_WEBHOOK_FAILED,
                        QUEUE_LIMIT)
        self._queue.put_nowait(body)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver notices one at a time, in order, until `stop`."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False,
                                     headers={"User-Agent": f"smsmon/{__version__}"}) as client:
            while not stop.is_set():
                get = asyncio.ensure_future(self._queue.get())
                halt = asyncio.ensure_future(stop.wait())
                await asyncio.wait({get, halt}, return_when=asyncio.FIRST_COMPLETED)
                halt.cancel()
                if not get.done():
                    get.cancel()
                    break
                await self.deliver(get.result(), client)
        if self.pending:
            log.warning("stopping with %d alert notices not delivered", self.pending)

    async def deliver(self, body: dict[str, Any], client: httpx.AsyncClient | None = None) -> None:
        await asyncio.gather(self.post(body, client), self.run_command(body))

    async def post(self, body: dict[str, Any], client: httpx.AsyncClient | None = None) -> bool:
        """POST the notice, retrying failures that may pass (no answer, 408, 429, 5xx) with backoff."""
        if self.webhook is None:
            return True
        if client is None:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as own:
                return await self.post(body, own)
        host = webhook_host(self.webhook.reveal())
        data = json.dumps(body).encode()
        why = ""
        for attempt in range(1, self.attempts + 1):
            retry_after: float | None = None
            try:
                r = await client.post(self.webhook.reveal(), content=data, headers={"Content-Type": "application/json"})
                if r.is_success:
                    self.outcomes["webhook_ok"] += 1
                    return True
                why = f"HTTP {r.status_code}"
                if not (r.status_code in (408, 429) or r.status_code >= 500):
                    break  # the receiver refuses it: asking again would not change its mind
                retry_after = _seconds(r.headers.get("Retry-After"))
            except httpx.TimeoutException:
                why = f"no answer within {self.timeout:g} s"
            except httpx.TransportError as exc:
                why = f"cannot reach it ({type(exc).__name__})"  # not str(exc): it may quote the URL
            if attempt < self.attempts:
                delay = min(WEBHOOK_BACKOFF_MAX_S, retry_after if retry_after is not None else
                            self.backoff * 2 ** (attempt - 1) * (0.75 + self._rng.random() / 2))
                log.info("alert webhook %s: %s; retrying in %.1f s", host, why, delay)
                await asyncio.sleep(delay)
        self.outcomes["webhook_failed"] += 1
        log.warning("%s: the alert webhook %s failed (%s) after %d attempt(s); %s %s not sent there",
                    Failure.ALERT_WEBHOOK_FAILED, host, why, attempt, body.get("alert"), body.get("state"))
        return False

    async def run_command(self, body: dict[str, Any]) -> bool:
        """Run the command with the notice's JSON on stdin (and SMSMON_ALERT, SMSMON_ALERT_STATE,
        SMSMON_ALERT_SUBJECT in its environment); not retried: its exit status is logged."""
        if self.command is None:
            return True
        env = dict(os.environ, SMSMON_ALERT=str(body.get("alert")), SMSMON_ALERT_STATE=str(body.get("state")),
                   SMSMON_ALERT_SUBJECT=str(body.get("subject") or ""))
        name = Path(self.command[0]).name
        try:
            proc = await asyncio.create_subprocess_exec(*self.command, stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                                                        env=env)
        except OSError as exc:
            return self._command_failed(f"cannot run {name}: {exc.strerror or exc}", body)
        assert proc.stdin is not None and proc.stderr is not None
        kept = bytearray()

        async def talk() -> None:
            try:
                proc.stdin.write(json.dumps(body).encode() + b"\n")  # type: ignore[union-attr]
                await proc.stdin.drain()  # type: ignore[union-attr]
                proc.stdin.close()  # type: ignore[union-attr]
            except (BrokenPipeError, ConnectionResetError):
                pass  # the command did not read its input: its exit status says whether that was fine
            while chunk := await proc.stderr.read(4096):  # type: ignore[union-attr]
                kept.extend(chunk[: max(0, STDERR_KEPT - len(kept))])
            await proc.wait()

        try:
            await asyncio.wait_for(talk(), self.command_timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return self._command_failed(f"{name} did not finish within {self.command_timeout:g} s (killed)", body)
        if proc.returncode != 0:
            first = kept.decode("utf-8", "replace").strip().splitlines()[:1]
            return self._command_failed(f"{name} exited {proc.returncode}" + (f": {first[0][:200]}" if first else ""), body)
        self.outcomes["command_ok"] += 1
        return True

    def _command_failed(self, why: str, body: dict[str, Any]) -> bool:
        self.outcomes["command_failed"] += 1
        log.warning("%s: the alert command failed: %s (%s %s)", Failure.ALERT_COMMAND_FAILED, self.redact(why),
                    body.get("alert"), body.get("state"))
        return False


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date, or nonsense: the backoff decides


class Evaluator:
    """Judges the rules on the database every EVALUATE_EVERY_S; `firing()` is what fires now."""

    def __init__(self, db: str | Path, rules: Rules, *, watch_window: timedelta, delivery: Delivery | None = None,
                 clock: Callable[[], datetime] = now_utc, callbacks_seen: Callable[[], int] | None = None,
                 last_callback: Callable[[], str | None] = lambda: None) -> None:
        """`callbacks_seen`: how many callbacks the listener has answered so far (silence is
        measured from when that last grew); `last_callback`: the newest one's arrival, shown."""
        self.rules = rules
        self.watch_window = watch_window
        self.delivery = delivery
        self.clock = clock
        self.callbacks_seen = callbacks_seen
        self.last_callback = last_callback
        self.source = figures_source(db)
        self.tracker = Tracker()
        self.figures: Figures | None = None
        self.seconds: float | None = None  # how long the latest reading took
        self.started = clock()
        self._seen = 0
        self._heard_at: datetime | None = None
        self._failing = False

    def firing(self) -> list[Alert]:
        """The alerts firing now, as plain objects (the app's banner: smsmon.alerts.banner)."""
        return self.tracker.firing()

    async def evaluate(self) -> list[Transition]:
        """Read the figures, judge them, log and deliver what started or ended. Raises StoreError."""
        now = self.clock()
        if self.callbacks_seen is not None and (seen := self.callbacks_seen()) > self._seen:
            self._seen, self._heard_at = seen, now
        started = time.perf_counter()
        figures = await asyncio.to_thread(
            self.source.read, now=now, window=self.rules.window, watch_window=self.watch_window,
            silence=None if self.callbacks_seen is not None else self.rules.silence_after,
            quiet_since=self.started if self.callbacks_seen is not None else None, streak=self.rules.poll_failures or 0)
        self.seconds = time.perf_counter() - started
        if self.callbacks_seen is not None:
            figures.heard_at, figures.last_callback = self._heard_at, self.last_callback()
        self.figures = figures
        changes = self.tracker.update(evaluate(self.rules, figures), now, [r for r in RULES if self.rules.on(r)])
        for t in changes:
            if t.state == "firing":
                log.warning("alert %s%s: %s", t.alert.rule, f" ({t.alert.subject})" if t.alert.subject else "", t.alert.summary)
            else:
                log.info("alert cleared: %s%s (firing since %s)", t.alert.rule,
                         f" ({t.alert.subject})" if t.alert.subject else "", t.alert.since)
            if self.delivery is not None and self.delivery.enabled:
                self.delivery.enqueue(payload(t, self.rules, figures))
        return changes

    async def run(self, stop: asyncio.Event, every: float = EVALUATE_EVERY_S) -> None:
        while not stop.is_set():
            try:
                await self.evaluate()
                self._failing = False
            except StoreError as exc:
                if not self._failing:  # once per outage, not every 15 s
                    log.warning("alerts: cannot read the database: %s", exc)
                self._failing = True
            except Exception:  # a bug must not stop ingest
                log.exception("alerts: evaluation failed")
            try:
                await asyncio.wait_for(stop.wait(), max(every, (self.seconds or 0.0) / EVALUATE_SHARE))
            except asyncio.TimeoutError:
                pass  # time for the next evaluation

    def close(self) -> None:
        self.source.close()
