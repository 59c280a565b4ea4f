"""The connection attack on the listener: many idle, half-sent and slow-body connections held
open (and reopened as soon as the server closes them, as an attacker would) while real
callbacks, each on a new connection as Zeckta sends them, are timed."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from smsmon.bench.attack.rawhttp import Answer, request
from smsmon.bench.attack.target import Target, callback, identity, ms, unstored

CONNECTS_AT_ONCE = 100  # the attacker's connects in flight, so its own accept queue does not choke first
ATTACKER_ADDRESSES = 8  # the attacker connects from 127.0.0.2-9, the real sender from 127.0.0.1 (each address has its own ports)


def source(i: int) -> str:
    return f"127.0.0.{2 + i % ATTACKER_ADDRESSES}"


@dataclass
class Held:
    """What the attacker saw."""

    now: Counter = field(default_factory=Counter)  # held open at this moment, by kind
    peak: Counter = field(default_factory=Counter)
    opened: Counter = field(default_factory=Counter)
    closed_by_server: Counter = field(default_factory=Counter)
    connect_failed: int = 0
    slow_cut_after: list[float] = field(default_factory=list)  # seconds from headers to the server's answer or close

    def up(self, kind: str) -> None:
        self.now[kind] += 1
        self.opened[kind] += 1
        self.peak[kind] = max(self.peak[kind], self.now[kind])


async def _attacker(t: Target, kind: str, i: int, stop: asyncio.Event, held: Held, gate: asyncio.Semaphore) -> None:
    while not stop.is_set():
        try:
            async with gate:
                reader, writer = await asyncio.open_connection(t.host, t.port, local_addr=(source(i), 0))
        except OSError:
            held.connect_failed += 1
            await asyncio.sleep(0.1)
            continue
        held.up(kind)
        started = time.perf_counter()
        try:
            if kind == "half-sent":
                writer.write(f"POST {t.path} HTTP/1.1\r\nHost: x\r\n".encode())  # and never the blank line
            elif kind == "slow body":
                writer.write(f"POST {t.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode())
            while not stop.is_set():
                if kind == "slow body":
                    writer.write(b"{")  # a byte a second
                try:
                    await asyncio.wait_for(reader.read(4096), 1.0)
                except TimeoutError:
                    continue
                held.closed_by_server[kind] += 1
                if kind == "slow body":
                    held.slow_cut_after.append(time.perf_counter() - started)
                break
        except OSError:
            held.closed_by_server[kind] += 1
        finally:
            held.now[kind] -= 1
            writer.close()


async def _real(t: Target, rng: random.Random, rate: int, seconds: float) -> list[tuple[Answer, bytes]]:
    """Real callbacks, each on a new connection, at `rate` a second, whatever the answers' speed."""
    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = json.dumps(callback(rng)).encode()

        async def one(b: bytes = body) -> tuple[Answer, bytes]:
            return await t.send(request("POST", t.path, b, headers={"Content-Type": "application/json"}), timeout=30), b

        tasks.append(asyncio.create_task(one()))
    return list(await asyncio.gather(*tasks))


async def hold(t: Target, *, idle: int, slow: int, seconds: float, rate: int, say: Callable[[str], None]) -> dict:
    rng = random.Random(11)
    rss_before, _ = t.memory_mb()
    baseline = await _real(t, rng, rate, 2.0)
    held, stop, gate = Held(), asyncio.Event(), asyncio.Semaphore(CONNECTS_AT_ONCE)
    kinds = ["idle"] * (idle - idle // 2) + ["half-sent"] * (idle // 2) + ["slow body"] * slow
    attackers = [asyncio.create_task(_attacker(t, kind, i, stop, held, gate)) for i, kind in enumerate(kinds)]
    ramp = time.perf_counter()
    while sum(held.opened.values()) < len(kinds) and time.perf_counter() - ramp < 30:  # every attacker in at least once
        await asyncio.sleep(0.05)
    ramp_s = time.perf_counter() - ramp
    say(f"    {len(kinds):,} attacking connections opened in {ramp_s:.1f} s; timing real callbacks for {seconds:g} s")
    during = await _real(t, rng, rate, seconds)
    health = await t.health()
    stop.set()
    await asyncio.gather(*attackers)
    _, peak = t.memory_mb()
    answers = [a for a, _ in during]
    ok_ids = [identity(body) for a, body in during if a.status == 200]
    lost = unstored(t.db, ok_ids)
    lat = [a.seconds for a in answers if a.status == 200]
    base = [a.seconds for a, _ in baseline if a.status == 200]
    return {
        "attackers": {"idle": idle - idle // 2, "half_sent": idle // 2, "slow_body": slow},
        "ramp_s": round(ramp_s, 1),
        "held_at_most": dict(held.peak), "opened": dict(held.opened), "closed_by_server": dict(held.closed_by_server),
        "connect_failed": held.connect_failed,
        "slow_cut_after_s": round(statistics.median(held.slow_cut_after), 1) if held.slow_cut_after else None,
        "real": {"sent": len(answers), "ok": len(ok_ids), "statuses": dict(Counter(a.status or a.error[:40] for a in answers)),
                 "stored": len(ok_ids) - len(lost), "p50_ms": round(ms(lat, 0.5), 1), "p99_ms": round(ms(lat, 0.99), 1),
                 "max_ms": round(max(lat, default=0) * 1000, 1), "over_1s": sum(x > 1 for x in lat),
                 "slowest_ms": [round(x * 1000) for x in sorted(lat)[-8:]]},
        "before": {"sent": len(baseline), "ok": len(base), "p50_ms": round(ms(base, 0.5), 1), "p99_ms": round(ms(base, 0.99), 1)},
        "server": health.get("connections") or health,
        "peak_rss_mb": round(peak, 1), "rss_growth_mb": round(peak - rss_before, 1),
    }
