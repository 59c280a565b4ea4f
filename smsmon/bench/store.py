"""`smsmon bench store`: what the store costs as the database grows, on databases of 1M and 3M
events (and 10M with --large), built once by `smsmon sim generate` and kept:

- the writer's throughput (batches of 500, synchronous=FULL) on a fresh database and on each;
- every view a person waits for, as the app asks for it: a filter with its summary line (the
  dashboard), the next page, insights with and without a filter, the message screen, dead
  letters; each beside the same question typed at the sqlite3 shell (process start included),
  as a ratio from the same run;
- bytes on disk per event, and export speed (rows/s, NDJSON and CSV).
The figures are printed per size, so that a cost that grows with the size shows as a curve.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from smsmon import filters
from smsmon.errors import SmsmonError
from smsmon.filters import Filter
from smsmon.sim.generate import fill, generate_events
from smsmon.store.queries import cursor, where_sql
from smsmon.database import PostgresUrl
from smsmon.store.backend import open_reader, open_writer
from smsmon.store.reader import Reader
from smsmon.store.stats import RAW_FIRST, quick_stats
from smsmon.timeutil import now_utc

TARGET_WRITE = 15_000
TARGET_VIEW_MS = 200.0
TARGET_EXPORT = 100_000  # rows/s (issue 11)
DAY = timedelta(days=1)
SIZES = (1_000_000, 3_000_000)
LARGE = 10_000_000
Say = Callable[[str], None]


@dataclass
class View:
    name: str
    run: Callable[[], Any]
    sqlite: str | None = None  # the same question at the sqlite3 shell


def _write_rate(db: Any, events: list) -> float:
    with open_writer(db) as w:
        started = time.perf_counter()
        for i in range(0, len(events), 500):
            w.apply(events[i : i + 500])
        return len(events) / (time.perf_counter() - started)


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


def ensure(db: Path, size: int, say: Say) -> int:
    """A database of about `size` events at `db`, built (with progress) when missing."""
    have = _events_in(db)
    if have >= size * 0.95:
        return have
    if db.exists():
        raise SmsmonError(f"{db} holds {have:,} events, fewer than {size:,}: remove it to rebuild")
    say(f"building a {size:,}-event database at {db} (once; about a minute and a half per million) ...")
    step = max(1, size // 20)
    shown = [0]

    def progress(n: int) -> None:
        if n - shown[0] >= step:
            shown[0] = n
            say(f"  {n:,} of {size:,} events ({n / size:.0%})")

    result = fill(db, events=size, seed=1, days=30, progress=progress)
    say(f"  built: {result.new:,} events, {result.messages:,} messages, {result.rate:,.0f} events/s")
    return result.new


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(first run, median of the others), in milliseconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times[0], statistics.median(times[1:])


def _sqlite_ms(db: Path, sql: str, repeat: int) -> float | None:
    """The sqlite3 shell answering `sql` (process start included), median in ms."""
    shell = shutil.which("sqlite3")
    if shell is None:
        return None

    def run() -> None:
        subprocess.run([shell, "-readonly", str(db), sql], capture_output=True, check=True)

    return _timed(run, max(3, repeat // 2))[1]


def views(r: Reader, db: Path) -> list[View]:
    now = now_utc()
    sample, zeckta, _middle = r.sample_messages()
    if sample is None or zeckta is None:
        raise SmsmonError(f"{db} is too small or too one-sided to benchmark on")
    first = r.page(now=now)
    eazita_id = next((m["id"] for m in first if m["provider"] == "eazita"), zeckta["id"])

    def summary(f: Filter) -> str:
        return (f"SELECT outcome, count(*), sum(events_count), avg(deliver_seconds) FROM messages"
                f" WHERE {where_sql(f, now=now, window=r.window)} GROUP BY outcome")

    out = []
    for label, text in (("(none)", ""), *((t, t) for t in ("status:failed", "status:not_delivered", "status:stale",
                                                             "status:open", "provider:zeckta", "provider:eazita status:failed")),
                        ("dest:<a number>", f"dest:{sample['dest']}"), *((t, t) for t in (
                            "dest:+23324*", "error:101", "network:Zong", "country:none", "flag:late_dlr", "since:2h", "since:24h",
                            "since:7d until:1d")), ("<the start of a uuid>", zeckta["provider_message_id"][:8]),
                        ("<the start of a number>", sample["dest"][:6]),
                        ("<text that matches nothing>", "no-such-thing"),
                        *((t, t) for t in ("provider:eazita status:failed since:24h network:Zong error:8",))):
        f = filters.parse(text, now)
        out.append(View(f"filter {label}", lambda f=f: r.dashboard(f, 0, limit=200, now=now), summary(f)))
        if not quick_stats(f):  # what the app shows first: the rows, and the figures of RAW_FIRST messages
            out.append(View(f"filter {label}, first figures",
                            lambda f=f: (r.dashboard(f, 0, limit=200, now=now, with_stats=False),
                                         r.stats(f, now=now, limit=RAW_FIRST)), summary(f)))
    out += [
        View("next page", lambda: r.page(after=cursor(first[-1]), limit=200, now=now),
             f"SELECT * FROM messages WHERE last_event_at <= '{first[-1]['last_event_at']}'"
             " ORDER BY last_event_at DESC LIMIT 200"),
        # what the insights screen reads (w cycles 24 h, 7 days, 1 h)
        View("insights, last 24 h", lambda: r.insights_period(Filter(), period=DAY, now=now),
             summary(filters.parse("since:24h", now))),
        View("insights, last 7 days", lambda: r.insights_period(Filter(), period=7 * DAY, now=now),
             summary(filters.parse("since:7d", now))),
        View("insights provider:zeckta, 24 h", lambda: r.insights_period(filters.parse("provider:zeckta", now), period=DAY,
                                                                         now=now),
             summary(filters.parse("provider:zeckta since:24h", now))),
        View("insights status:failed since:24h", lambda: r.insights_period(filters.parse("status:failed since:24h", now),
                                                                           period=DAY, now=now),
             summary(filters.parse("status:failed since:24h", now))),
        # a filter the aggregates cannot answer: its insights read the period's messages themselves
        View("insights dest:+23324*, 24 h", lambda: r.insights_period(filters.parse("dest:+23324*", now), period=DAY,
                                                                      now=now),
             summary(filters.parse("dest:+23324* since:24h", now))),
        # a week of it: what the screen shows at once (the first RAW_FIRST messages), then (up to
        # RAW_LIMIT of them) the figures and the costs it fills in after
        View("insights dest:+23324*, 7 days, first figures",
             lambda: r.insights_period(filters.parse("dest:+23324*", now), period=7 * DAY, now=now, limit=RAW_FIRST),
             summary(filters.parse("dest:+23324* since:7d", now))),
        View("insights dest:+23324*, 7 days", lambda: r.insights_period(filters.parse("dest:+23324*", now),
                                                                        period=7 * DAY, now=now),
             summary(filters.parse("dest:+23324* since:7d", now))),
        View("insights costs dest:+23324*, 7 days", lambda: r.insights_costs(filters.parse("dest:+23324*", now),
                                                                             period=7 * DAY, now=now),
             summary(filters.parse("dest:+23324* since:7d", now))),
        # the costs, read apart and filled in after the rest of the insights screen (agg_cost_hour since schema 6)
        View("insights costs, last 24 h", lambda: r.insights_costs(Filter(), period=DAY, now=now),
             summary(filters.parse("since:24h", now))),
        View("insights costs, last 7 days", lambda: r.insights_costs(Filter(), period=7 * DAY, now=now),
             summary(filters.parse("since:7d", now))),
        View("message screen (zeckta)", lambda: r.detail(zeckta["id"], now=now),
             f"SELECT e.* FROM events e JOIN messages m ON m.seq = e.message_seq WHERE m.id = '{zeckta['id']}'"),
        View("message screen (eazita)", lambda: r.detail(eazita_id, now=now),
             f"SELECT e.* FROM events e JOIN messages m ON m.seq = e.message_seq WHERE m.id = '{eazita_id}'"),
        View("dead letters", lambda: r.dead_letters(limit=500), "SELECT * FROM dead_letters ORDER BY id DESC LIMIT 500"),
    ]
    return out


def _export(db: Any, table: str, fmt: str) -> tuple[float, float]:
    """(rows/s, peak RSS in MB) of the real `smsmon export` command, from process launch, to a file.
    The peak is the process's own high-water mark (VmHWM, read while it runs): getrusage would
    count the pages of this large benchmark process that the child started with."""
    import sys

    from smsmon.bench.pg import serve_env

    where, env = serve_env(db)
    with tempfile.TemporaryDirectory(prefix="smsmon-export-") as tmp:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "smsmon", "export", *where, "--table", table,
                                 "--format", fmt, "-o", str(Path(tmp) / f"out.{fmt}")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        said = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SmsmonError(f"smsmon export failed: {said.strip()}")
    rows = int(said.split()[1].replace(",", ""))  # "exported 337,041 messages to ..."
    return rows / seconds, peak_kb / 1024


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0  # it has just ended


def store_bench(*, sizes: tuple[int, ...], folder: Path, fresh_events: int, repeat: int, say: Say,
                postgres: PostgresUrl | None = None) -> dict[str, Any]:
    """With `postgres`, every figure again on PostgreSQL, in the same run (figures["postgres"])."""
    figures: dict[str, Any] = {"sizes": {}}
    folder.mkdir(parents=True, exist_ok=True)
    say(f"databases in {folder} (kept: a second run reuses them)")
    now = now_utc()
    with tempfile.TemporaryDirectory(prefix="smsmon-bench-") as tmp:
        fresh = _take(generate_events(fresh_events, seed=101, now=now), fresh_events)
        rate = _write_rate(Path(tmp) / "fresh.db", fresh)
    figures["write_fresh_events_per_s"] = round(rate)
    say(f"writer, fresh database: {rate:,.0f} events/s over {len(fresh):,} events "
        f"(target >= {TARGET_WRITE:,}: {'ok' if rate >= TARGET_WRITE else 'MISSED'})")
    pg: dict[str, Any] = {"sizes": {}}
    if postgres is not None:
        from smsmon.bench import pg as pgbench

        say(f"PostgreSQL: {postgres} (schemas {pgbench.PREFIX}*, kept like the files)")
        pg_rate = _write_rate(pgbench.schema(postgres, "fresh", fresh=True), fresh)
        pgbench.drop(postgres, "fresh")
        pg["write_fresh_events_per_s"] = round(pg_rate)
        say(f"writer, fresh database, PostgreSQL: {pg_rate:,.0f} events/s over {len(fresh):,} events")
    table: dict[str, dict[Any, tuple[float, float]]] = {}
    shell: dict[str, float | None] = {}
    for size in sizes:
        db = folder / (f"bench-{size // 1_000_000}m.db" if size % 1_000_000 == 0 else f"bench-{size}.db")
        have = ensure(db, size, say)
        extra = _take(generate_events(20_000, seed=202 + size // 1_000_000, now=now), 50_000)
        rate = _write_rate(db, extra)
        have = _events_in(db)
        per_event = os.path.getsize(db) / have
        entry: dict[str, Any] = {"events": have, "write_events_per_s": round(rate), "bytes_per_event": round(per_event)}
        say(f"\n{have:,} events: writer {rate:,.0f} events/s; {per_event:,.0f} bytes on disk per event")
        with Reader(db) as r:
            for v in views(r, db):
                table.setdefault(v.name, {})[size] = _timed(v.run, repeat)
                if size == sizes[-1]:
                    shell[v.name] = _sqlite_ms(db, v.sqlite, repeat) if v.sqlite else None
        for table_name in ("messages", "events"):
            for fmt in ("ndjson", "csv"):
                rate, peak = _export(db, table_name, fmt)
                entry[f"export_{table_name}_{fmt}_rows_per_s"] = round(rate)
                entry[f"export_{table_name}_{fmt}_peak_rss_mb"] = round(peak)
                say(f"  export {table_name} {fmt}: {rate:,.0f} rows/s (target >= {TARGET_EXPORT:,}), peak RSS {peak:,.0f} MB")
        figures["sizes"][size] = entry
        if postgres is not None:
            pg["sizes"][size] = _postgres_size(postgres, db, size, extra, table, repeat, say)
    _print_views(table, shell, sizes, say, postgres=postgres is not None)
    figures["views_ms"] = {name: {str(size): {"first": round(first, 1), "median": round(median, 1)}
                                  for size, (first, median) in by_size.items()} for name, by_size in table.items()}
    figures["sqlite3_ms"] = {name: round(ms, 1) if ms is not None else None for name, ms in shell.items()}
    if postgres is not None:
        pg["views_ms"] = {name: {str(size): {"first": round(by_size[(size, "pg")][0], 1),
                                             "median": round(by_size[(size, "pg")][1], 1)}
                                 for size in sizes if (size, "pg") in by_size} for name, by_size in table.items()}
        figures["postgres"] = pg
    return figures


def _postgres_size(postgres: PostgresUrl, sqlite_db: Path, size: int, extra: list, table: dict, repeat: int,
                   say: Say) -> dict[str, Any]:
    """The figures of one size on PostgreSQL: its twin of the SQLite database, copied once."""
    from smsmon.bench import pg as pgbench

    url, copy_rate = pgbench.ensure_copy(sqlite_db, postgres, size, say)
    rate = _write_rate(url, extra)
    have = pgbench.events_in(url)
    per_event = pgbench.bytes_on_disk(url) / have
    entry: dict[str, Any] = {"events": have, "write_events_per_s": round(rate), "bytes_per_event": round(per_event)}
    if copy_rate is not None:
        entry["migrate_events_per_s"] = round(copy_rate)
    say(f"{have:,} events, PostgreSQL: writer {rate:,.0f} events/s; {per_event:,.0f} bytes on disk per event")
    with open_reader(url) as r:
        for v in views(r, sqlite_db):
            table.setdefault(v.name, {})[(size, "pg")] = _timed(v.run, repeat)
    for table_name in ("messages", "events"):
        for fmt in ("ndjson", "csv"):
            rate, peak = _export(url, table_name, fmt)
            entry[f"export_{table_name}_{fmt}_rows_per_s"] = round(rate)
            entry[f"export_{table_name}_{fmt}_peak_rss_mb"] = round(peak)
            say(f"  export {table_name} {fmt}, PostgreSQL: {rate:,.0f} rows/s, peak RSS {peak:,.0f} MB")
    return entry


def _print_views(table: dict[str, dict[Any, tuple[float, float]]], shell: dict[str, float | None], sizes: tuple[int, ...],
                 say: Say, *, postgres: bool = False) -> None:
    columns = [(s, key) for s in sizes for key in ((s, (s, "pg")) if postgres else (s,))]
    heads = "".join(f"{f'{s / 1_000_000:g}M' + (' PG' if isinstance(key, tuple) else ''):>16}" for s, key in columns)
    say(f"\nwhat a person waits for, ms: median (first run), {'' if len(sizes) < 2 else 'per size; '}"
        f"{'SQLite then PostgreSQL (PG); ' if postgres else ''}the sqlite3 shell on the largest, and smsmon ÷ sqlite3")
    say(f"  {'view':<58}{heads}{'sqlite3':>10}{'ratio':>8}")
    for name, by_size in table.items():
        cells = ""
        for _, key in columns:
            first, median = by_size[key]
            flag = "!" if median > TARGET_VIEW_MS else " "
            cells += f"{median:>8.1f} ({first:>5.0f}){flag}"
        ms = shell.get(name)
        ratio = f"{by_size[sizes[-1]][1] / ms:>7.2f}x" if ms else ""
        say(f"  {name[:58]:<58}{cells}{(f'{ms:>9.1f}' if ms else ''):>10}{ratio:>8}")
    say(f"  (! over {TARGET_VIEW_MS:.0f} ms)")
