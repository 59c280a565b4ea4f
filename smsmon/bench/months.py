"""`smsmon bench months`: what running for months costs (issue 14), on a 1M-event database.

- prune: half of the database's messages removed (`smsmon prune`), how long it takes and its
  longest batch; then the space given back three ways: not at all (the file keeps its size, new
  data reuses the pages), incremental vacuum in steps, a whole VACUUM (writers wait);
- the listener while a prune runs: p50/p99 of callbacks at a steady rate into `smsmon serve` on a
  copy of the database, alone, beside `smsmon prune` in another process, and while serve's own
  retention prunes (on its writer thread, between commits);
- metrics and alerts: callbacks/s (wrk) and the steady-rate p99 of `serve` with metrics on, every
  alert rule on and /metrics scraped every second, against metrics off and no rules, runs
  alternated; and what one reading of the alert figures costs on the 1M database and on a
  database whose last 15 minutes hold 100,000 messages.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from smsmon.bench.ingest import WRK_SCRIPT, Result, Server, run_steady, run_wrk, smsmon_server
from smsmon.bench.store import ensure
from smsmon.errors import SmsmonError
from smsmon.store import prune as pruning
from smsmon.store.reader import Reader
from smsmon.store.window import Source
from smsmon.store.writer import Writer
from smsmon.timeutil import now_utc, parse_iso

Say = Callable[[str], None]
ALL_RULES = {"SMSMON_ALERTS_DELIVERY_RATE_BELOW": "90%", "SMSMON_ALERTS_CODE_FAILURES_ABOVE": "1000",
             "SMSMON_ALERTS_STALE_ABOVE": "1000000", "SMSMON_ALERTS_SILENCE_AFTER": "30m", "SMSMON_ALERTS_POLL_FAILURES": "5"}
OFF = {"SMSMON_METRICS": "off"}
ROUNDS = 3  # on and off alternated, so that a busy moment of the machine lands on both


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSMON_")}
    return env | extra


def _copy(src: Path, dst: Path) -> Path:
    for sfx in ("", "-wal", "-shm"):
        Path(f"{dst}{sfx}").unlink(missing_ok=True)
    shutil.copy(src, dst)
    return dst


def _age(cutoff: str) -> str:
    """`smsmon prune --older-than` for a cut-off: seconds from now."""
    return f"{(now_utc() - parse_iso(cutoff)).total_seconds():.0f}s"


def _steady(server: Server, rate: int, seconds: int) -> Result:
    return run_steady(server.url + "/callbacks/zeckta", rate, seconds, int(time.time()))


class Scraper:
    """GET /metrics every `every` seconds in a thread, as Prometheus would."""

    def __init__(self, url: str, every: float = 1.0) -> None:
        self.url, self.every, self.count = url + "/metrics", every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                urllib.request.urlopen(self.url, timeout=5).read()
                self.count += 1
            except OSError:
                pass  # counted as missing: the figure says how many scrapes succeeded

    def __enter__(self) -> "Scraper":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def prune_alone(base: Path, tmp: Path, say: Say) -> dict[str, Any]:
    cutoff = pruning.cutoff_for_share(base, 0.5)
    out: dict[str, Any] = {"cutoff": cutoff}
    for vacuum in ("skipped", "full"):
        db = _copy(base, tmp / "alone.db")
        size = db.stat().st_size
        started = time.perf_counter()
        result, after = pruning.prune_file(db, cutoff, vacuum="skipped")
        prune_s = time.perf_counter() - started
        row = {"messages": result.messages, "events": result.events, "batches": result.batches, "seconds": round(prune_s, 2),
               "longest_batch_ms": round(result.longest_batch_s * 1000, 1), "file_before": size, "file_after_prune": after}
        if vacuum == "skipped":
            steps, t0 = [], time.perf_counter()
            with Writer(db) as w:
                incremental = pruning.incremental(w.conn)
                while incremental:
                    s0 = time.perf_counter()
                    if not pruning.step_vacuum(w):
                        break
                    steps.append(time.perf_counter() - s0)
            row["incremental"] = incremental
            if steps:
                row |= {"vacuum_steps": len(steps), "vacuum_step_ms_median": round(statistics.median(steps) * 1000, 1),
                        "vacuum_step_ms_max": round(max(steps) * 1000, 1), "vacuum_total_s": round(time.perf_counter() - t0, 2)}
            row["file_after_vacuum"] = db.stat().st_size
            out["incremental"] = row
        else:
            t0 = time.perf_counter()
            with Writer(db) as w:
                pruning.reclaim(w, "full")
            row["vacuum_total_s"] = round(time.perf_counter() - t0, 2)
            row["file_after_vacuum"] = db.stat().st_size
            out["full"] = row
        say(f"  prune half ({result.messages:,} messages, {result.events:,} events): {prune_s:.1f} s in {result.batches:,}"
            f" batches, longest {result.longest_batch_s * 1000:.0f} ms; file {size / 1e6:,.0f} MB"
            + (f"; incremental vacuum {row.get('vacuum_steps', 0)} steps, median {row.get('vacuum_step_ms_median', 0)} ms,"
               f" max {row.get('vacuum_step_ms_max', 0)} ms, {row.get('vacuum_total_s', 0)} s in all"
               if vacuum == "skipped" else f"; VACUUM {row['vacuum_total_s']} s (no writer meanwhile)")
            + f" -> {row['file_after_vacuum'] / 1e6:,.0f} MB")
    return out


def listener_during_prune(base: Path, tmp: Path, rate: int, seconds: int, say: Say) -> dict[str, Any]:
    cutoff = pruning.cutoff_for_share(base, 0.5)
    out: dict[str, Any] = {}

    def show(name: str, r: Result, extra: str = "") -> None:
        out[name] = r.as_dict()
        say(f"  {name:<34} achieved {r.rate:,.0f}/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:7.2f} ms  failed {r.errors}{extra}")

    def alone(name: str) -> None:
        db = _copy(base, tmp / "busy.db")
        server = smsmon_server(db, env=_env({}))
        try:
            show(name, _steady(server, rate, seconds))
        finally:
            server.stop()

    alone("no prune")
    db = _copy(base, tmp / "busy.db")
    server = smsmon_server(db, env=_env({}))
    try:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "smsmon", "prune", "--older-than", _age(cutoff), "--db", str(db)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env({}))
        r = _steady(server, rate, seconds)
        err = proc.communicate(timeout=600)[1]
        took = time.perf_counter() - started
        show("beside `smsmon prune`", r, f"  (the prune took {took:.0f} s: {err.strip().splitlines()[0][:90] if err else ''})")
        out["beside `smsmon prune`"]["prune_seconds"] = round(took, 1)
    finally:
        server.stop()
    db = _copy(base, tmp / "busy.db")
    log = tmp / "serve.log"
    server = smsmon_server(db, env=_env({"SMSMON_RETENTION": _age(cutoff)}), log=log)

    def logged(text: str) -> str:
        return next((line.strip() for line in log.read_text().splitlines() if text in line), "") if log.exists() else ""

    try:
        deadline = time.monotonic() + 120
        while not logged("retention: removing") and time.monotonic() < deadline:
            time.sleep(0.1)
        r = _steady(server, rate, seconds)
        deadline = time.monotonic() + 600
        while not logged("retention: removed") and time.monotonic() < deadline:
            time.sleep(0.5)
        done = logged("retention: removed")
        show("during serve's own retention", r, f"  ({done.split(' in ')[-1][:60] if done else 'did not finish'})")
    finally:
        server.stop()
    alone("no prune, again")
    return out


def metrics_on_off(tmp: Path, rate: int, seconds: int, say: Say) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    out: dict[str, Any] = {"wrk": [], "steady": []}
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT)
    for round_ in range(ROUNDS):
        for name, env in (("on", ALL_RULES), ("off", OFF)):
            db = tmp / f"m-{name}-{round_}.db"
            server = smsmon_server(db, env=_env(env))
            try:
                with Scraper(server.url) if name == "on" else _Nothing() as scraper:
                    if wrk:
                        r = run_wrk(server.url + "/callbacks/zeckta", seconds, 64, script, int(time.time()))
                        out["wrk"].append((name, r.rate))
                    cpu = _cpu(server)
                    s = _steady(server, rate, seconds)
                    cpu_ms = (_cpu(server) - cpu) * 1000 / (s.requests / 1000)
                    out["steady"].append((name, s.p50_ms, s.p99_ms, s.errors, round(cpu_ms, 1)))
                scraped = getattr(scraper, "count", None)
            finally:
                server.stop()
            say(f"  metrics {name:<3} (run {round_ + 1}): " + (f"{r.rate:,.0f} callbacks/s with wrk; " if wrk else "")
                + f"steady {rate:,}/s p50 {s.p50_ms:.2f} ms p99 {s.p99_ms:.2f} ms, serve's CPU {cpu_ms:.0f} ms per 1,000 callbacks"
                + (f"; {scraped} scrapes" if scraped is not None else ""))
    cpu_on = [c for n, *_, c in out["steady"] if n == "on"]
    cpu_off = [c for n, *_, c in out["steady"] if n == "off"]
    out["cpu_ratio"] = round(statistics.median(cpu_on) / statistics.median(cpu_off), 3)
    say(f"  serve's CPU per callback at {rate:,}/s, on / off (medians): {out['cpu_ratio']:.3f}")
    if out["wrk"]:
        on = [r for n, r in out["wrk"] if n == "on"]
        off = [r for n, r in out["wrk"] if n == "off"]
        out["ratio"] = round(sum(on) / sum(off), 3)
        say(f"  throughput with metrics and alerts on / off: {out['ratio']:.3f}")
    return out


def _cpu(server: Server) -> float:
    """CPU seconds (user and system) the server process has used: what it costs, whatever else
    the machine is doing meanwhile."""
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Nothing:
    def __enter__(self) -> "_Nothing":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def evaluation_cost(base: Path, tmp: Path, rate: int, seconds: int, say: Say) -> dict[str, Any]:
    from smsmon.sim.generate import fill

    out: dict[str, Any] = {}
    dense = tmp / "dense.db"
    say("  building a database whose last 15 minutes hold 100,000 messages (about a minute) ...")
    fill(dense, messages=100_000, days=15 / 1440)
    for name, db in (("1M-event database", base), ("100,000 messages in the window", dense)):
        source = Source(db)
        times = []
        try:
            for _ in range(9):
                t0 = time.perf_counter()
                f = source.read(now=now_utc(), window=timedelta(minutes=15), silence=timedelta(minutes=30), streak=5)
                times.append(time.perf_counter() - t0)
        finally:
            source.close()
        out[name] = {"median_ms": round(statistics.median(times) * 1000, 2), "max_ms": round(max(times) * 1000, 2),
                     "finished_in_window": f.finished}
        say(f"  one reading of the alert figures, {name}: median {statistics.median(times) * 1000:.1f} ms,"
            f" max {max(times) * 1000:.1f} ms ({f.finished:,} finished messages in the window)")
    for name, env in (("rules on", ALL_RULES), ("rules off", OFF), ("rules on", ALL_RULES), ("rules off", OFF)):
        db = _copy(dense, tmp / "dense-run.db")
        server = smsmon_server(db, env=_env(env))
        try:
            cpu = _cpu(server)
            r = _steady(server, rate, seconds)
            cpu_ms = (_cpu(server) - cpu) * 1000 / (r.requests / 1000)
        finally:
            server.stop()
        out.setdefault("steady", []).append((name, r.p50_ms, r.p99_ms, r.errors, round(cpu_ms, 1)))
        say(f"  steady {rate:,}/s into that database, {name:<9}: p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms failed {r.errors},"
            f" serve's CPU {cpu_ms:.0f} ms per 1,000 callbacks")
    return out


def months_bench(*, db: Path | None, events: int, rate: int, seconds: int, parts: tuple[str, ...], say: Say) -> dict[str, Any]:
    figures: dict[str, Any] = {"rate": rate, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="smsmon-bench-months-") as tmp_name:
        tmp = Path(tmp_name)
        base = db or tmp / "base.db"
        if "prune" in parts or "listener" in parts or "evaluation" in parts:
            if db is not None and db.exists():  # the user's file, whatever its size (a smaller one measures less)
                with Reader(db) as reader:
                    have = reader.latest_event_id()
                say(f"database: {base} ({have:,} events, used as it is)")
            else:
                have = ensure(base, events, say)
                say(f"database: {base} ({have:,} events)")
        if "prune" in parts:
            say("prune half of it, no other load:")
            figures["prune"] = prune_alone(base, tmp, say)
        if "listener" in parts:
            say(f"callbacks at a steady {rate:,}/s for {seconds} s into serve on a copy of it:")
            figures["listener"] = listener_during_prune(base, tmp, rate, seconds, say)
        if "metrics" in parts:
            say("metrics and every alert rule on (and /metrics scraped every second) against off, fresh databases:")
            figures["metrics"] = metrics_on_off(tmp, rate, seconds, say)
        if "evaluation" in parts:
            say("alert evaluation:")
            figures["evaluation"] = evaluation_cost(base, tmp, rate, seconds, say)
    if not parts:
        raise SmsmonError("nothing to measure")
    return figures
