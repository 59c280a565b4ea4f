"""`smsmon bench store`: the writer's throughput in batches of 500 with synchronous=FULL, on a fresh
database and on a large one, and the median / slowest time of each read query on the large one.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from smsmon import filters
from smsmon.errors import SmsmonError
from smsmon.sim.generate import fill, generate_events
from smsmon.store.queries import cursor
from smsmon.store.stats import FACET_DIMS
from smsmon.store.reader import Reader
from smsmon.store.writer import Writer
from smsmon.timeutil import now_utc

TARGET_WRITE = 15_000
TARGET_READ_MS = 50.0


def _write_rate(db: Path, events: list) -> float:
    with Writer(db) as w:
        started = time.perf_counter()
        for i in range(0, len(events), 500):
            w.apply(events[i : i + 500])
        return len(events) / (time.perf_counter() - started)


def store_bench(*, size: int, fresh_events: int, large_db: Path | None, repeat: int, say: Callable[[str], None]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="smsmon-bench-") as tmp:
        tmpdir = Path(tmp)
        say(f"generating {fresh_events:,} events in memory ...")
        now = now_utc()
        fresh = _take(generate_events(fresh_events, seed=101, now=now), fresh_events)
        rate = _write_rate(tmpdir / "fresh.db", fresh)
        figures["write_fresh_events_per_s"] = round(rate)
        say(f"writer, fresh database: {rate:,.0f} events/s over {len(fresh):,} events "
            f"(target >= {TARGET_WRITE:,}: {'ok' if rate >= TARGET_WRITE else 'MISSED'})")

        db = large_db or tmpdir / "large.db"
        have = _events_in(db)
        if have < size * 0.98:
            if have:
                raise SmsmonError(f"{db} holds {have:,} events, fewer than {size:,}: remove it or pass --events {have}")
            say(f"building a {size:,}-event database at {db} through the writer (about a minute per million) ...")
            result = fill(db, events=size, seed=1, days=30, now=now)
            say(f"  built: {result.new:,} events, {result.messages:,} messages, {result.rate:,.0f} events/s including generation")
        have = _events_in(db)
        figures["large_events"] = have
        extra = _take(generate_events(20_000, seed=202, now=now), 50_000)
        rate = _write_rate(db, extra)
        figures["write_large_events_per_s"] = round(rate)
        say(f"writer, database of {have:,} events: {rate:,.0f} events/s over {len(extra):,} more events")

        figures["reads_ms"] = _read_bench(db, repeat, say)
    return figures


def _take(it: Any, n: int) -> list:
    out = []
    for ev in it:
        out.append(ev)
        if len(out) >= n:
            break
    return out


def _events_in(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with Reader(db) as reader:
            return reader.latest_event_id()
    except SmsmonError:
        return 0


def _read_bench(db: Path, repeat: int, say: Callable[[str], None]) -> dict[str, dict[str, float]]:
    r = Reader(db).open()
    now = now_utc()
    sample, zeckta, middle = r.sample_messages()
    if sample is None or zeckta is None or middle is None:
        raise SmsmonError(f"{db} is too small or too one-sided to benchmark reads on")
    first = r.page(now=now)
    uuid_part = zeckta["provider_message_id"][9:18]

    def flt(text: str) -> filters.Filter:
        return filters.parse(text, now)

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("page: newest 50", lambda: r.page(now=now)),
        ("page: next 50 (keyset)", lambda: r.page(after=cursor(first[-1]), now=now)),
        ("page: middle of the table", lambda: r.page(after=middle, now=now)),
        ("filter status:failed", lambda: r.page(flt("status:failed"), now=now)),
        ("filter status:failed,rejected,expired", lambda: r.page(flt("status:failed,rejected,expired"), now=now)),
        ("filter status:not_delivered", lambda: r.page(flt("status:not_delivered"), now=now)),
        ("filter status:stale", lambda: r.page(flt("status:stale"), now=now)),
        ("filter provider:eazita", lambda: r.page(flt("provider:eazita"), now=now)),
        ("filter dest:<number>", lambda: r.page(flt(f"dest:{sample['dest']}"), now=now)),
        ("filter dest:+23324*", lambda: r.page(flt("dest:+23324*"), now=now)),
        ("filter error:101", lambda: r.page(flt("error:101"), now=now)),
        ("filter error:8 network:Zong", lambda: r.page(flt("error:8 network:Zong"), now=now)),
        ("filter network:Telenor", lambda: r.page(flt("network:Telenor"), now=now)),
        ("filter since:2h", lambda: r.page(flt("since:2h"), now=now)),
        ("filter since:20d until:19d", lambda: r.page(flt("since:20d until:19d"), now=now)),
        ("filter provider:eazita status:failed since:24h", lambda: r.page(flt("provider:eazita status:failed since:24h"), now=now)),
        ("filter flag:terminal_conflict", lambda: r.page(flt("flag:terminal_conflict"), now=now)),
        ("filter free text (part of a uuid)", lambda: r.page(flt(uuid_part), now=now)),
        ("filter free text (no match)", lambda: r.page(flt("no-such-thing"), now=now)),
        ("timeline of a message", lambda: r.timeline(zeckta["id"])),
        ("message by id", lambda: r.message(zeckta["id"], now=now)),
        ("resolve a uuid", lambda: r.resolve(zeckta["provider_message_id"])),
        ("resolve a reference", lambda: _resolve_any(r, sample["reference"])),
        ("resolve a phone number", lambda: _resolve_any(r, sample["dest"])),
        ("new events after a watermark", lambda: r.events_after(r.latest_event_id() - 500)),
        *[(f"facet {d}", (lambda d=d: r.facets(d))) for d in FACET_DIMS],
        ("facet network, since:24h", lambda: r.facets("network", flt("since:24h"), now=now)),
        ("stats", lambda: r.stats(now=now)),
        ("stats since:24h", lambda: r.stats(flt("since:24h"), now=now)),
    ]
    out: dict[str, dict[str, float]] = {}
    say(f"\nread queries on {db} ({repeat} runs each; first run reported apart, as it may be cold)")
    say(f"  {'query':<48} {'first':>8} {'median':>8} {'max':>8}")
    for name, fn in cases:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        med, worst = statistics.median(times[1:]), max(times[1:])
        out[name] = {"first_ms": round(times[0], 2), "median_ms": round(med, 2), "max_ms": round(worst, 2)}
        mark = "" if med < TARGET_READ_MS else "  OVER 50 ms"
        say(f"  {name:<48} {times[0]:>7.1f}  {med:>7.2f}  {worst:>7.2f}{mark}")
    r.close()
    return out


def _resolve_any(reader: Reader, q: str) -> None:
    try:
        reader.resolve(q)
    except SmsmonError:
        pass  # several messages share it: the lookup ran all the same
