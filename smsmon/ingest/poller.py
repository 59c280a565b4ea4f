"""Pollers (SPEC §5): Eazita delivery reports and the Zeckta Message Status API, with httpx.

Each `poll_once()` returns a PollOutcome and never raises for a provider's failure: timeouts,
refused connections, 4xx/5xx, HTML pages, invalid JSON, Eazita's `code != 1` on HTTP 200 all
become an outcome with a catalogue failure code (`smsmon explain poll_timeout`) and a message
with every credential masked. `run_poller()` repeats a poller at its interval, backs off
exponentially with jitter (up to 5 minutes, longer only if the provider's Retry-After says so),
and records every run in `poll_runs`.

Only what changed becomes an event: a report row or Status API answer whose event is already
stored for the message (same deterministic key) is skipped, so polling again is idempotent and
does not inflate duplicate counts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

import httpx

from smsmon.config import Secret
from smsmon.errors import Failure, ParseError, PollFailure, ProviderAPIError, StoreError
from smsmon.ingest.committer import Committer
from smsmon.lifecycle import WATCH_WINDOW, Event
from smsmon.providers import eazita, zeckta
from smsmon.redact import Redactor
from smsmon.store.reader import Reader
from smsmon.timeutil import fmt, now_utc

log = logging.getLogger("smsmon.poller")

MAX_BACKOFF_S = 300.0
EAZITA_IDS_PER_REQUEST = 50
EAZITA_OPEN_PER_CYCLE = 10_000  # open messages asked about per cycle, longest silent first
ZECKTA_PER_CYCLE = 100
MAX_RESPONSE = 32 * 1024 * 1024  # a 10,000-row report is ~2 MB; anything far larger is not a report


@dataclass
class PollOutcome:
    provider: str
    started_at: str
    finished_at: str = ""
    ok: bool = True
    http_status: int | None = None
    api_code: str | None = None
    rows_seen: int = 0
    new_events: int = 0
    error_code: str | None = None  # a Failure (a catalogue code)
    error: str | None = None  # with credentials masked
    retry_after: float | None = None
    bad_rows: int = 0
    seconds: float = 0.0

    def run_row(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in ("provider", "started_at", "finished_at", "ok", "http_status", "api_code", "rows_seen",
                                  "new_events", "error_code", "error")} | {"ok": int(self.ok)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unreadable(exc: ParseError, what: str, status: int) -> PollFailure:
    """An answer that is not the documented JSON: invalid JSON, or JSON of the wrong shape."""
    kind = Failure.POLL_INVALID_JSON if exc.kind is Failure.INVALID_JSON else Failure.POLL_BAD_SHAPE
    return PollFailure(kind, f"{what}: {exc.reason}", http_status=status)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


async def fetch(client: httpx.AsyncClient, path: str, *, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, redact: Redactor, what: str) -> tuple[int, bytes]:
    """GET and classify every failure into a PollFailure (never leaking the query string)."""
    try:
        async with client.stream("GET", path, params=params, headers=headers) as r:
            body = bytearray()
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE:
                    raise PollFailure(Failure.POLL_BAD_SHAPE, f"{what}: answer over {MAX_RESPONSE // 2**20} MB", http_status=r.status_code)
            status, ctype = r.status_code, r.headers.get("content-type", "")
            retry = _retry_after(r.headers.get("retry-after"))
    except httpx.TimeoutException:
        raise PollFailure(Failure.POLL_TIMEOUT, f"{what}: no answer within the timeout") from None
    except httpx.TransportError as exc:
        reason = redact(exc) or type(exc).__name__
        raise PollFailure(Failure.POLL_CONNECT_ERROR, f"{what}: cannot connect ({reason})") from None
    if status in (401, 403):
        raise PollFailure(Failure.POLL_AUTH, f"{what}: HTTP {status}, credentials refused", http_status=status)
    if status == 404:
        raise PollFailure(Failure.POLL_NOT_FOUND, f"{what}: HTTP 404", http_status=status)
    if status == 429:
        raise PollFailure(Failure.POLL_RATE_LIMITED, f"{what}: HTTP 429, rate limited" + (f", retry after {retry:g} s" if retry else ""),
                          http_status=status, retry_after=retry)
    if status >= 500:
        raise PollFailure(Failure.POLL_SERVER_ERROR, f"{what}: HTTP {status}", http_status=status, retry_after=retry)
    if status >= 400:
        raise PollFailure(Failure.POLL_HTTP_ERROR, f"{what}: HTTP {status}", http_status=status)
    if "html" in ctype or bytes(body[:200]).lstrip().startswith(b"<"):
        raise PollFailure(Failure.POLL_HTML_BODY, f"{what}: the answer is an HTML page, not JSON", http_status=status)
    return status, bytes(body)


@dataclass
class Poller:
    """What both pollers share: storing only what is new, classifying failures, one message on demand."""

    client: httpx.AsyncClient
    committer: Committer
    reader: Reader
    redact: Redactor
    window: timedelta = WATCH_WINDOW
    provider: str = field(default="", init=False)

    async def _store_new(self, events: list[Event]) -> int:
        """Submit the events not yet stored for their messages; return how many were new."""
        unique = list({(e.message_id, e.event_key): e for e in events}.values())
        stored = await asyncio.to_thread(self.reader.stored_keys, [(e.message_id, e.event_key) for e in unique])
        fresh = [e for e in unique if (e.message_id, e.event_key) not in stored]
        applied = await asyncio.gather(*(self.committer.submit(e) for e in fresh))
        return sum(not a.duplicate for a in applied)

    def _failed(self, outcome: PollOutcome, exc: PollFailure) -> PollOutcome:
        outcome.ok = False
        outcome.error_code, outcome.error = exc.kind.value, self.redact(exc)
        outcome.http_status = outcome.http_status or exc.http_status
        outcome.api_code, outcome.retry_after = exc.api_code, exc.retry_after
        return outcome

    async def poll_once(self) -> PollOutcome:
        """One cycle (`_cycle`), its failures caught and classified."""
        return await self._guarded(self._cycle)  # type: ignore[attr-defined]

    async def refresh(self, message_id: str) -> PollOutcome:
        """Ask the provider about one message now (by its provider id): `smsmon poll --message`,
        the app's "ask provider"."""
        async def work(outcome: PollOutcome) -> None:
            outcome.new_events = await self._store_new(await self._events_for(outcome, [message_id]))
        return await self._guarded(work)

    async def _events_for(self, outcome: PollOutcome, ids: list[str]) -> list[Event]:
        raise NotImplementedError

    async def _guarded(self, work: Callable[[PollOutcome], Any]) -> PollOutcome:
        outcome = PollOutcome(self.provider, fmt(now_utc()))
        started = time.perf_counter()
        try:
            await work(outcome)
        except PollFailure as exc:
            self._failed(outcome, exc)
        except StoreError as exc:
            self._failed(outcome, PollFailure(Failure.STORE_UNAVAILABLE, f"database: {exc}"))
        outcome.finished_at = fmt(now_utc())
        outcome.seconds = round(time.perf_counter() - started, 3)
        return outcome


@dataclass
class EazitaPoller(Poller):
    """Every cycle: the account's recent reports, then the open messages by `messageid` lists."""

    api_key: Secret = field(default_factory=lambda: Secret(""))
    password: Secret = field(default_factory=lambda: Secret(""))
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo(eazita.DEFAULT_TIMEZONE))

    def __post_init__(self) -> None:
        self.provider = "eazita"

    async def _events_for(self, outcome: PollOutcome, ids: list[str]) -> list[Event]:
        return await self._report(outcome, ids)

    async def _report(self, outcome: PollOutcome, ids: list[str] | None) -> list[Event]:
        params = {"api": self.api_key.reveal(), "pass": self.password.reveal(), "contents": "gsm,source"}
        what = "GET /sms/delivery" + (f" for {len(ids)} open messages" if ids else "")
        if ids:
            params["messageid"] = ",".join(ids)
        status, body = await fetch(self.client, "/sms/delivery", params=params, redact=self.redact, what=what)
        outcome.http_status = status
        try:
            report = eazita.parse_response(body, tz=self.tz, received_at=now_utc(), source="poll")
        except ProviderAPIError as exc:
            raise PollFailure(Failure.POLL_API_ERROR, f"{what}: Eazita code {exc.code}: {self.redact(exc.message)}",
                              http_status=status, api_code=exc.code) from None
        except ParseError as exc:
            raise _unreadable(exc, what, status) from None
        outcome.api_code = "1"
        outcome.rows_seen += report.rows
        outcome.bad_rows += len(report.errors)
        for index, reason in report.errors[:5]:
            log.warning("eazita: row %d of the report skipped: %s", index, reason)
        return report.events

    async def _cycle(self, outcome: PollOutcome) -> None:
        events = await self._report(outcome, None)
        since = fmt(now_utc() - self.window)
        open_ids = await asyncio.to_thread(self.reader.open_messages, "eazita", since=since, limit=EAZITA_OPEN_PER_CYCLE)
        seen = {e.provider_message_id for e in events}
        wanted = [i for i in open_ids if i not in seen and i.isdigit()]
        for i in range(0, len(wanted), EAZITA_IDS_PER_REQUEST):
            events += await self._report(outcome, wanted[i : i + EAZITA_IDS_PER_REQUEST])
        outcome.new_events = await self._store_new(events)


@dataclass
class ZecktaStatusPoller(Poller):
    """Asks the Status API about open Zeckta messages silent for longer than `status_after`,
    and about one message on demand (`refresh`)."""

    api_key: Secret = field(default_factory=lambda: Secret(""))
    status_after: timedelta = timedelta(minutes=10)
    concurrency: int = 4

    def __post_init__(self) -> None:
        self.provider = "zeckta"

    async def _events_for(self, outcome: PollOutcome, ids: list[str]) -> list[Event]:
        return await self._ask_all(outcome, ids)

    async def _ask(self, message_id: str) -> tuple[int, Event | None]:
        what = "GET /v1/messaging/sms/messages/{id}"
        status, body = await fetch(self.client, f"/v1/messaging/sms/messages/{message_id}",
                                   headers={"Authorization": f"Bearer {self.api_key.reveal()}"}, redact=self.redact, what=what)
        try:
            mid, raw = zeckta.parse_status_answer(body)
        except ProviderAPIError as exc:
            raise PollFailure(Failure.POLL_API_ERROR, f"{what}: {self.redact(exc.message)}", http_status=status) from None
        except ParseError as exc:
            raise _unreadable(exc, what, status) from None
        if not raw:
            return status, None
        return status, zeckta.status_event(mid, raw, received_at=now_utc(), raw=body.decode("utf-8", "replace"))

    async def _ask_all(self, outcome: PollOutcome, ids: list[str]) -> list[Event]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(mid: str) -> Event | None:
            async with gate:
                status, event = await self._ask(mid)
                outcome.http_status = status
                outcome.rows_seen += 1
                return event

        answers = await asyncio.gather(*(one(m) for m in ids), return_exceptions=True)
        # A message the API does not know is that message's problem, not the poll's; only when
        # every one is unknown (a wrong base URL, another account's ids) is it the poll's.
        unknown = [a for a in answers if isinstance(a, PollFailure) and a.kind is Failure.POLL_NOT_FOUND]
        if unknown and len(unknown) < len(answers):
            outcome.bad_rows += len(unknown)
            answers = [a for a in answers if a not in unknown]
        failures = [a for a in answers if isinstance(a, PollFailure)]
        others = [a for a in answers if isinstance(a, BaseException) and not isinstance(a, PollFailure)]
        if others:
            raise others[0]
        events = [a for a in answers if isinstance(a, Event)]
        current = await asyncio.to_thread(self.reader.raw_statuses, [e.message_id for e in events])
        # Only a change is news: the same status as stored is not an event.
        changed = [e for e in events if (current.get(e.message_id) or "").lower() != e.raw_status.lower()]
        if failures:
            outcome.new_events = await self._store_new(changed)
            raise failures[0]
        return changed

    async def _cycle(self, outcome: PollOutcome) -> None:
        now = now_utc()
        ids = await asyncio.to_thread(self.reader.open_messages, "zeckta", since=fmt(now - self.window),
                                older_than=fmt(now - self.status_after), limit=ZECKTA_PER_CYCLE)
        outcome.new_events = await self._store_new(await self._ask_all(outcome, ids))


def backoff(failures: int, interval: float, retry_after: float | None, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` failures in a row: exponential from the interval, capped
    at 5 minutes, with jitter; never less than the provider's Retry-After."""
    rng = rng or random.Random()
    ceiling = min(MAX_BACKOFF_S, interval * 2 ** max(0, failures - 1))
    delay = rng.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


def describe(outcome: PollOutcome) -> str:
    if outcome.ok:
        extra = f", {outcome.bad_rows} bad rows skipped" if outcome.bad_rows else ""
        return f"{outcome.provider}: ok, {outcome.rows_seen} rows, {outcome.new_events} new events ({outcome.seconds:.2f} s){extra}"
    return f"{outcome.provider}: {outcome.error_code}: {outcome.error}"


async def run_poller(poller: Poller, committer: Committer, interval: float, stop: asyncio.Event,
                     on_outcome: Callable[[PollOutcome], None] | None = None) -> None:
    """Poll every `interval` seconds until `stop` is set, backing off after failures."""
    failures = 0
    rng = random.Random()
    while not stop.is_set():
        outcome = await poller.poll_once()
        try:
            await committer.poll_run(outcome.run_row())
        except StoreError as exc:
            log.warning("could not record the poll: %s", exc)
        if outcome.ok:
            failures = 0
            delay = interval
            log.info("%s", describe(outcome))
        else:
            failures += 1
            delay = backoff(failures, interval, outcome.retry_after, rng)
            log.warning("%s; next try in %.0f s (see `smsmon explain %s`)", describe(outcome), delay, outcome.error_code)
        if on_outcome:
            on_outcome(outcome)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass  # the interval passed without a stop: poll again
