"""Pollers (SPEC §5): Eazita delivery reports and the Zeckta Message Status API, with httpx.

Each `poll_once()` returns a PollOutcome and never raises: timeouts, refused connections,
4xx/5xx, redirects, HTML pages, invalid JSON, answers too large or undecodable (smsmon.ingest.fetch
bounds each request in time and size), Eazita's `code != 1` on HTTP 200, and smsmon's own bugs
all become an outcome with a catalogue failure code (`smsmon explain poll_timeout`) and a message
with every credential masked. A report row that cannot be read is skipped and counted; the rest
of the answer is kept. `run_poller()` repeats a poller at its interval until told to stop, backs
off exponentially with jitter (up to 5 minutes, a Retry-After included), and records every run in
`poll_runs`; nothing else ends it.

A large Eazita answer is read row by row: the envelope is decoded with each row left as JSON
text, then rows are parsed (in a thread, so a listener in the same loop keeps answering) and
stored ROWS_PER_CHUNK at a time. Where an answer repeats a credential (a careless provider
echoing the query string), every string in it is masked before it is parsed or stored.

Only what changed becomes an event: a report row or Status API answer whose event is already
stored for the message (same deterministic key) is skipped, so polling again is idempotent and
does not inflate duplicate counts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import msgspec

from smsmon.config import Secret
from smsmon.errors import Failure, ParseError, PollFailure, ProviderAPIError, StoreError
from smsmon.ingest.committer import Committer
from smsmon.ingest.fetch import MAX_BACKOFF_S, fetch
from smsmon.lifecycle import WATCH_WINDOW, Event
from smsmon.providers import eazita, zeckta
from smsmon.redact import Redactor
from smsmon.store.reader import Reader
from smsmon.timeutil import fmt, now_utc

log = logging.getLogger("smsmon.poller")

EAZITA_IDS_PER_REQUEST = 50
EAZITA_OPEN_PER_CYCLE = 10_000  # open messages asked about per cycle, longest silent first
ZECKTA_PER_CYCLE = 100
# Largest answers read, counted once inflated: a 10,000-row report is ~2 MB and issue 9's
# 145,000-row account log 30 MB; a Status API answer is ~150 bytes.
EAZITA_MAX_ANSWER = 32 * 2**20
ZECKTA_MAX_ANSWER = 64 * 2**10
# Rows parsed and stored at a time. Measured (tracemalloc, a 30,000-row answer of 6 MB): Python's
# peak is 13 MB at 500 rows a chunk, 17 MB at 2,000, 36 MB at 10,000, all equally fast; 2,000
# keeps what each chunk costs (a thread hop, a query, a wait for the commit) rare.
ROWS_PER_CHUNK = 2_000
LOGGED_BAD_ROWS = 5  # per poll; the rest are counted
ERROR_MAX = 500  # characters of an error kept in poll_runs, cut after masking


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
    failures: int = 0  # set by run_poller: failed polls in a row, this one included
    next_try_s: float | None = None  # set by run_poller: seconds until the next poll

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


def internal(exc: BaseException) -> PollFailure:
    """A bug of smsmon's, as a failure the poller records and survives."""
    return PollFailure(Failure.POLL_INTERNAL, f"unexpected {type(exc).__name__}: {exc} (a bug in smsmon; the poller carries on)")


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
        outcome.error_code, outcome.error = exc.kind.value, self.redact.cut(exc, ERROR_MAX)
        outcome.http_status = outcome.http_status or exc.http_status
        outcome.api_code, outcome.retry_after = exc.api_code, exc.retry_after
        return outcome

    async def poll_once(self) -> PollOutcome:
        """One cycle (`_cycle`), its failures caught and classified."""
        return await self._guarded(self._cycle)  # type: ignore[attr-defined]

    async def refresh(self, message_id: str) -> PollOutcome:
        """Ask the provider about one message now (by its provider id): `smsmon poll --message`,
        the app's "ask provider"."""
        return await self._guarded(lambda outcome: self._ask_about(outcome, [message_id]))

    async def _ask_about(self, outcome: PollOutcome, ids: list[str]) -> None:
        """Ask about these messages (provider ids) and store what is new."""
        raise NotImplementedError

    def crashed(self, exc: BaseException) -> PollOutcome:
        """The outcome of a poll that raised what it should not have: a classified failure."""
        outcome = PollOutcome(self.provider, fmt(now_utc()), fmt(now_utc()))
        self._debug(exc)
        return self._failed(outcome, internal(exc))

    def _debug(self, exc: BaseException) -> None:
        if os.environ.get("SMSMON_DEBUG"):
            log.warning("%s", self.redact("".join(traceback.format_exception(exc))))

    async def _guarded(self, work: Callable[[PollOutcome], Any]) -> PollOutcome:
        outcome = PollOutcome(self.provider, fmt(now_utc()))
        started = time.perf_counter()
        try:
            await work(outcome)
        except PollFailure as exc:
            self._failed(outcome, exc)
        except StoreError as exc:
            self._failed(outcome, PollFailure(Failure.STORE_UNAVAILABLE, f"database: {exc}"))
        except Exception as exc:  # no exception may end a poll: a bug becomes a classified failure too
            self._debug(exc)
            self._failed(outcome, internal(exc))
        outcome.finished_at = fmt(now_utc())
        outcome.seconds = round(time.perf_counter() - started, 3)
        return outcome


@dataclass
class EazitaPoller(Poller):
    """Every cycle: the account's recent reports, then the open messages by `messageid` lists."""

    api_key: Secret = field(default_factory=lambda: Secret(""))
    password: Secret = field(default_factory=lambda: Secret(""))
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo(eazita.DEFAULT_TIMEZONE))
    region: str | None = None  # setting default_region: reads a `gsm` in local format

    def __post_init__(self) -> None:
        self.provider = "eazita"

    async def _ask_about(self, outcome: PollOutcome, ids: list[str]) -> None:
        await self._report(outcome, ids, set())

    async def _report(self, outcome: PollOutcome, ids: list[str] | None, seen: set[str]) -> None:
        """One request: parse and store its rows a chunk at a time; add their message ids to `seen`."""
        params = {"api": self.api_key.reveal(), "pass": self.password.reveal(), "contents": "gsm,source"}
        what = "GET /sms/delivery" + (f" for {len(ids)} open messages" if ids else "")
        if ids:
            params["messageid"] = ",".join(ids)
        status, body = await fetch(self.client, "/sms/delivery", params=params, redact=self.redact, what=what,
                                   max_bytes=EAZITA_MAX_ANSWER)
        outcome.http_status = status
        try:
            rows, echoed = await asyncio.to_thread(self._rows, body)
        except ProviderAPIError as exc:
            raise PollFailure(Failure.POLL_API_ERROR, f"{what}: Eazita code {exc.code}: {self.redact.cut(exc.message, ERROR_MAX)}",
                              http_status=status, api_code=exc.code) from None
        except ParseError as exc:
            raise _unreadable(exc, what, status) from None
        del body  # the rows hold what is left of it
        outcome.api_code = "1"
        outcome.rows_seen += len(rows)
        for start in range(0, len(rows), ROWS_PER_CHUNK):
            events, bad = await asyncio.to_thread(self._events, rows[start : start + ROWS_PER_CHUNK], start, echoed)
            for index, reason in bad:
                outcome.bad_rows += 1
                if outcome.bad_rows <= LOGGED_BAD_ROWS:
                    log.warning("eazita: row %d of the answer skipped: %s", index, self.redact.cut(reason, 200))
            seen.update(e.provider_message_id for e in events)
            outcome.new_events += await self._store_new(events)

    def _rows(self, body: bytearray) -> tuple[list[msgspec.Raw], bool]:
        """The answer's rows, still JSON text, and whether it repeats a credential anywhere."""
        return eazita.response_rows(body), self.redact.found(body)

    def _events(self, rows: list[msgspec.Raw], first: int, echoed: bool) -> tuple[list[Event], list[tuple[int, str]]]:
        """Rows (numbered from `first`) -> events, and (index, reason) for each row that cannot be read."""
        events: list[Event] = []
        bad: list[tuple[int, str]] = []
        received = now_utc()
        for i, raw in enumerate(rows, first):
            try:
                row = eazita.decode_row(raw)
                if echoed:
                    row = self.redact.value(row)  # before parsing: errors quote values, events keep them
                events.append(eazita.row_event(row, tz=self.tz, received_at=received, source="poll", region=self.region))
            except ParseError as exc:
                bad.append((i, exc.reason))
            except Exception as exc:  # a row that breaks the parser must not cost the rest of the answer
                bad.append((i, f"cannot be read ({type(exc).__name__})"))
        return events, bad

    async def _cycle(self, outcome: PollOutcome) -> None:
        seen: set[str] = set()
        await self._report(outcome, None, seen)
        since = fmt(now_utc() - self.window)
        open_ids = await asyncio.to_thread(self.reader.open_messages, "eazita", since=since, limit=EAZITA_OPEN_PER_CYCLE)
        wanted = [i for i in open_ids if i not in seen and i.isdigit()]
        for i in range(0, len(wanted), EAZITA_IDS_PER_REQUEST):
            await self._report(outcome, wanted[i : i + EAZITA_IDS_PER_REQUEST], seen)


@dataclass
class ZecktaStatusPoller(Poller):
    """Asks the Status API about open Zeckta messages silent for longer than `status_after`,
    and about one message on demand (`refresh`)."""

    api_key: Secret = field(default_factory=lambda: Secret(""))
    status_after: timedelta = timedelta(minutes=10)
    concurrency: int = 4

    def __post_init__(self) -> None:
        self.provider = "zeckta"

    async def _ask_about(self, outcome: PollOutcome, ids: list[str]) -> None:
        outcome.new_events = await self._store_new(await self._ask_all(outcome, ids))

    def _masked(self, body: bytearray) -> bytes | bytearray:
        """The answer with every credential in its strings masked, when it repeats one."""
        if not self.redact.found(body):
            return body
        try:
            return msgspec.json.encode(self.redact.value(msgspec.json.decode(body)))
        except (msgspec.MsgspecError, ValueError, RecursionError):
            return body  # not JSON: it fails to parse below, and that error quotes nothing of it

    async def _ask(self, message_id: str) -> tuple[int, Event | None]:
        what = "GET /v1/messaging/sms/messages/{id}"
        status, answer = await fetch(self.client, f"/v1/messaging/sms/messages/{quote(message_id, safe='')}",
                                     headers={"Authorization": f"Bearer {self.api_key.reveal()}"}, redact=self.redact,
                                     what=what, max_bytes=ZECKTA_MAX_ANSWER)
        body = self._masked(answer)
        try:
            mid, raw = zeckta.parse_status_answer(body)
        except ProviderAPIError as exc:
            raise PollFailure(Failure.POLL_API_ERROR, f"{what}: {self.redact.cut(exc.message, ERROR_MAX)}",
                              http_status=status) from None
        except ParseError as exc:
            raise _unreadable(exc, what, status) from None
        except UnicodeDecodeError:  # msgspec's own, for invalid UTF-8 inside a string
            raise PollFailure(Failure.POLL_INVALID_JSON, f"{what}: invalid JSON: not UTF-8", http_status=status) from None
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
        await self._ask_about(outcome, ids)


def backoff(failures: int, interval: float, retry_after: float | None, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` failures in a row: exponential from the interval, with
    jitter; never less than the provider's Retry-After; never more than 5 minutes, whatever the
    Retry-After says (a provider asking for 1e12 s would otherwise end polling for good)."""
    rng = rng or random.Random()
    ceiling = min(MAX_BACKOFF_S, interval * 2 ** min(max(0, failures - 1), 32))
    delay = rng.uniform(ceiling / 2, ceiling)
    return min(MAX_BACKOFF_S, max(delay, retry_after or 0.0))


def describe(outcome: PollOutcome) -> str:
    if outcome.ok:
        extra = f", {outcome.bad_rows} bad rows skipped" if outcome.bad_rows else ""
        return f"{outcome.provider}: ok, {outcome.rows_seen} rows, {outcome.new_events} new events ({outcome.seconds:.2f} s){extra}"
    return f"{outcome.provider}: {outcome.error_code}: {outcome.error}"


async def _record(committer: Committer, outcome: PollOutcome) -> None:
    try:
        await committer.poll_run(outcome.run_row())
    except StoreError as exc:
        log.warning("could not record the poll: %s", exc)
    except Exception as exc:  # recording is not worth the poller's life
        log.warning("could not record the poll: unexpected %s", type(exc).__name__)


async def run_poller(poller: Poller, committer: Committer, interval: float, stop: asyncio.Event,
                     on_outcome: Callable[[PollOutcome], None] | None = None) -> None:
    """Poll every `interval` seconds until `stop` is set (or the task is cancelled), backing off
    after failures. Nothing else ends it: every outcome, a failure or a bug of smsmon's included,
    is recorded in poll_runs, logged, and handed to `on_outcome` (the ingest's health)."""
    failures = 0
    rng = random.Random()
    while not stop.is_set():
        try:
            outcome = await poller.poll_once()
        except Exception as exc:  # poll_once catches everything already; this is the last net
            outcome = poller.crashed(exc)
        await _record(committer, outcome)
        if outcome.ok:
            failures = 0
            delay = interval
            log.info("%s", describe(outcome))
        else:
            failures += 1
            delay = backoff(failures, interval, outcome.retry_after, rng)
            log.warning("%s; next try in %.0f s (see `smsmon explain %s`)", describe(outcome), delay, outcome.error_code)
        outcome.failures, outcome.next_try_s = failures, round(delay, 3)
        if on_outcome:
            try:
                on_outcome(outcome)
            except Exception as exc:  # the health display failing is no reason to stop polling
                log.warning("could not report the poll: unexpected %s", type(exc).__name__)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass  # the interval passed without a stop: poll again
