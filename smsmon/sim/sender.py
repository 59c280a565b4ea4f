"""Posts realistic Zeckta delivery callbacks to a listener (`smsmon simulate`, the demo).

Each message gets SUBMITTED, SENT and a final callback, a few seconds apart, as Zeckta sends
them; then, in the shares asked for, the mess real traffic has: a callback sent again
(duplicate), a callback held up so that it arrives after a later one (out of order), an event
type smsmon does not know (MESSAGE_READ), and a body that is not a valid callback at all. The
same seed gives the same callbacks in the same order; only the timestamps follow the clock.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import random
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

import aiohttp

from smsmon.ingest.proxy import SIMULATED
from smsmon.sim.generate import GH_PREFIXES, SENDERS, pick
from smsmon.timeutil import UTC

FINALS = [(0.84, "DELIVERED"), (0.06, "FAILED"), (0.04, "UNDELIVERABLE"), (0.03, "EXPIRED"), (0.03, "REJECTED")]
MALFORMED: list[bytes] = [
    b"",
    b"not json at all",
    b'{"eventId": "broken", "eventType": "MESSAGE_SENT"',
    b'{"eventType": "MESSAGE_SENT", "timestamp": "2026-01-01T00:00:00Z", "message": {"uuid": "x"}}',
    b'{"eventId": 1, "eventType": ["MESSAGE_SENT"], "timestamp": "2026-01-01T00:00:00Z", "message": {"uuid": "x"}}',
    b'["a", "list"]',
]

# The listener stores callbacks that carry SIMULATED as simulated (source `sim:callback`), so
# that they never pass for real ones, whatever database they land in.
HEADERS = {"Content-Type": "application/json", SIMULATED: "1"}


@dataclass
class Mix:
    duplicates: float = 0.03
    out_of_order: float = 0.05
    unknown: float = 0.01
    malformed: float = 0.01

    def check(self) -> None:
        for name, value in vars(self).items():
            if not 0 <= value <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a share between 0 and 1, not {value}")


@dataclass(order=True)
class Planned:
    offset: float  # seconds after the start when it is to be sent
    seq: int
    body: bytes = field(compare=False)
    kind: str = field(compare=False, default="callback")  # callback | duplicate | late | unknown | malformed
    event_offset: float = field(compare=False, default=0.0)  # when the event happened (earlier, if sent late)


def plan(seed: int, rate: float, mix: Mix, total: int | None = None) -> Iterator[Planned]:
    """The callbacks in the order they are to be sent: without end, or, with `total`, new
    messages stop once that many callbacks are planned and the started ones are finished, so
    lifecycles are complete. Bodies carry a placeholder timestamp, set when sent (`stamp`)."""
    rng = random.Random(seed)
    heap: list[Planned] = []
    seq = 0
    message_every = 3.0 / rate  # about three callbacks a message
    m = 0
    while total is None or seq < total:
        start = m * message_every
        m += 1
        mid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        segments = rng.choice((1, 1, 1, 2))
        msg = {"uuid": mid, "src": rng.choice(SENDERS), "dest": rng.choice(GH_PREFIXES) + f"{rng.randrange(10**7):07d}",
               "segments": segments, "units": segments, "attempts": 1}
        final = pick(rng, FINALS)
        steps = [(0.2, "SUBMITTED"), (1.0 + rng.random(), "SENT")] if final != "REJECTED" else [(0.2, "SUBMITTED")]
        steps.append((steps[-1][0] + 1.0 + rng.lognormvariate(1.0, 0.8), final))
        if rng.random() < mix.unknown:
            steps.append((steps[-1][0] + 2.0, rng.choice(("READ", "CLICKED"))))
        for delay, status in steps:
            final_step = status not in ("SUBMITTED", "SENT")
            body = {"eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "eventType": f"MESSAGE_{status}",
                    "timestamp": "@", "message": dict(msg, status=status, cost=round(0.012 * segments, 4) if final_step else None)}
            data = json.dumps(body).encode()
            kind = "unknown" if status in ("READ", "CLICKED") else "callback"
            when = start + delay
            send_at = when + (3.0 + rng.random() * 5 if rng.random() < mix.out_of_order else 0.0)
            heapq.heappush(heap, Planned(send_at, seq, data, "late" if send_at > when else kind, when))
            seq += 1
            if rng.random() < mix.duplicates:
                heapq.heappush(heap, Planned(send_at + 0.5 + rng.random() * 3, seq, data, "duplicate", when))
                seq += 1
        if rng.random() < mix.malformed:
            heapq.heappush(heap, Planned(start + rng.random(), seq, rng.choice(MALFORMED), "malformed", start))
            seq += 1
        while heap and heap[0].offset <= start:
            yield heapq.heappop(heap)
    while heap:
        yield heapq.heappop(heap)


def stamp(p: Planned, started: datetime) -> bytes:
    """The body with its event time: when the event happened, however late it is sent."""
    if b'"@"' not in p.body:
        return p.body
    # An event cannot happen after it is reported: the plan may run ahead of the clock.
    when = min(started + timedelta(seconds=p.event_offset), datetime.now(UTC) - timedelta(milliseconds=50))
    ts = when.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{zlib.crc32(p.body) % 1000:03d}Z"  # nine digits, as Zeckta sends
    return p.body.replace(b'"@"', f'"{ts}"'.encode(), 1)


@dataclass
class SendReport:
    sent: int = 0
    answers: Counter = field(default_factory=Counter)  # HTTP status -> count
    duplicates_acknowledged: int = 0
    kinds: Counter = field(default_factory=Counter)
    errors: int = 0
    last_error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "answers": {str(k): v for k, v in sorted(self.answers.items())},
                "duplicates_acknowledged": self.duplicates_acknowledged, "kinds": dict(self.kinds),
                "connection_errors": self.errors, "seconds": round(self.seconds, 2)}

    def line(self) -> str:
        answers = ", ".join(f"{n:,} × {s}" for s, n in sorted(self.answers.items()))
        return (f"sent {self.sent:,} callbacks in {self.seconds:.1f} s: {answers or 'no answers'}"
                f" ({self.duplicates_acknowledged:,} acknowledged as duplicates)"
                + (f"; {self.errors:,} connection errors ({self.last_error})" if self.errors else ""))


async def send(target: str, *, rate: float, count: int | None, seed: int = 1, mix: Mix | None = None,
               concurrency: int = 64, stop: asyncio.Event | None = None,
               on_progress: Callable[[SendReport], None] | None = None,
               on_status: Callable[[bytes], None] | None = None) -> SendReport:
    """Send `count` callbacks (None: until `stop`) at `rate` a second, open loop. `on_status`
    sees each body as it is sent (the demo keeps its fake Status API in step with it)."""
    mix = mix or Mix()
    mix.check()
    report = SendReport()
    started_wall = datetime.now(UTC)
    started = time.perf_counter()
    gate = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task] = set()

    async def post(session: aiohttp.ClientSession, p: Planned) -> None:
        body = stamp(p, started_wall)
        if on_status:
            on_status(body)
        async with gate:
            try:
                async with session.post(target, data=body, headers=HEADERS) as r:
                    report.answers[r.status] += 1
                    if r.status == 200 and (await r.json(content_type=None)).get("duplicate"):
                        report.duplicates_acknowledged += 1
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                report.errors += 1
                report.last_error = str(exc) or type(exc).__name__

    timeout = aiohttp.ClientTimeout(total=30)
    last_progress = started
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        for i, p in enumerate(plan(seed, rate, mix, count)):
            if (count is not None and i >= count) or (stop is not None and stop.is_set()):
                break
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                if stop is not None:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        break
                    except asyncio.TimeoutError:
                        pass  # the time to send came before a stop: send
                else:
                    await asyncio.sleep(delay)
            report.sent += 1
            report.kinds[p.kind] += 1
            task = asyncio.create_task(post(session, p))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if on_progress and time.perf_counter() - last_progress >= 1.0:
                last_progress = time.perf_counter()
                report.seconds = last_progress - started
                on_progress(report)
        await asyncio.gather(*pending)
    report.seconds = time.perf_counter() - started
    return report
