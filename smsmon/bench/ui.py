"""`smsmon bench ui`: time to first paint and memory while browsing a large database, and
key-press latency while callbacks pour into `watch`. The app runs headless (Textual's test
driver) in this process; the load comes from `smsmon simulate` in another process."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

SIZES = ((80, 24), (160, 45), (200, 60))  # the smallest terminal people use, the earlier figures' size, a large one


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass  # no /proc (not Linux): the peak below is the next best figure
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _until(pilot: Any, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the app did not get there in time")
        await pilot.pause(0.005)


async def browse_figures(db: Path, say: Callable[[str], None], size: tuple[int, int] = SIZES[1]) -> dict[str, Any]:
    from textual.widgets import DataTable

    from smsmon.ui.app import SmsmonApp

    rss_before = _rss_mb()
    started = time.perf_counter()
    app = SmsmonApp(db)
    async with app.run_test(size=size) as pilot:
        table = lambda: app.screen.query_one("#messages", DataTable)  # noqa: E731
        await _until(pilot, lambda: app.refreshes >= 1 and table().row_count > 0)
        first_paint = time.perf_counter() - started
        # Browse as a person would: page down through a few thousand rows, open messages, filter.
        for _ in range(15):
            table().move_cursor(row=table().row_count - 1)
            rows = table().row_count
            await _until(pilot, lambda: table().row_count > rows)
        for _ in range(5):
            await pilot.press("enter")
            await pilot.press("escape")
        await pilot.press("slash", *"status:failed", "enter")
        await _until(pilot, lambda: app.filter_text == "status:failed")
        await pilot.press("i")
        await pilot.pause(1.0)
        rss = _rss_mb()
        loaded = app.main.table.row_count
    say(f"  {size[0]}x{size[1]}: first paint on {db.name}: {first_paint * 1000:.0f} ms (target < 1000 ms)")
    say(f"  {size[0]}x{size[1]}: RSS while browsing (after 15 pages, 5 messages, a filter, insights): {rss:.0f} MB"
        f" (of which {rss_before:.0f} MB before the app started; target < 200 MB)")
    return {"size": f"{size[0]}x{size[1]}", "first_paint_ms": round(first_paint * 1000), "rss_mb": round(rss),
            "rss_before_app_mb": round(rss_before), "rows_loaded": loaded}


async def keypress_figures(tmp: Path, rate: int, presses: int, say: Callable[[str], None],
                           size: tuple[int, int] = SIZES[1], row: int = 10) -> dict[str, Any]:
    """Down, up, down, ... from `row`: at 10 the rows on screen change in place; at 0 the table
    follows the newest (every second new rows come in above and every row moves down)."""
    from textual import events
    from textual.widgets import DataTable

    from smsmon import config
    from smsmon.ingest.listener import ListenerConfig
    from smsmon.ingest.runtime import Ingest
    from smsmon.ui.app import SmsmonApp

    settings = config.load(env={"SMSMON_CONFIG": ""}, flags={"db": tmp / f"watch-{size[0]}x{size[1]}-row{row}.db"})
    app = SmsmonApp(settings.db, ingest=Ingest(settings, listener=ListenerConfig(port=0)), window=settings.watch_window)
    latencies: list[float] = []
    async with app.run_test(size=size) as pilot:
        await _until(pilot, lambda: app.ingest is not None and app.ingest.health.listening is not None)
        url = app.ingest.health.callback_url  # type: ignore[union-attr]
        sim = subprocess.Popen([sys.executable, "-m", "smsmon", "simulate", "--target", url, "--rate", str(rate), "--forever"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "SMSMON_CONFIG": ""})
        try:
            table = lambda: app.screen.query_one("#messages", DataTable)  # noqa: E731
            await _until(pilot, lambda: table().row_count >= 50, timeout=30)
            table().focus()
            table().move_cursor(row=row)
            stored_at_start = app.watermark
            # Pilot.press waits until the app is idle, which under load it never is: post the key
            # as the terminal driver would, and time until the cursor has moved.
            for i in range(presses):
                start_row = table().cursor_row
                key = "down" if i % 2 == 0 else "up"
                target = start_row + (1 if key == "down" else -1)
                t0 = time.perf_counter()
                app.post_message(events.Key(key, None))
                deadline = t0 + 5
                while table().cursor_row != target:
                    if time.perf_counter() > deadline:
                        raise TimeoutError("a key press was not handled within 5 s")
                    await asyncio.sleep(0.0005)
                latencies.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.05)  # a person's pace, not a flood of keys
            stored = app.watermark - stored_at_start
        finally:
            sim.send_signal(signal.SIGINT)
            try:  # in a thread: this loop also runs the listener that answers simulate's last requests
                await asyncio.to_thread(sim.wait, 30)
            except subprocess.TimeoutExpired:
                sim.kill()
    if not stored:  # simulate's callbacks never came in (or were all duplicates): no load was measured
        raise RuntimeError("no callback was stored while the keys were timed: the figures would not be under load")
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    where = "at the top, following new rows" if row == 0 else f"at row {row}"
    say(f"  {size[0]}x{size[1]}, {where}: key presses while `smsmon simulate --rate {rate}` posts into watch: p50 {p50:.1f} ms,"
        f" p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms over {len(latencies)} presses (target < 100 ms); {stored:,} events stored meanwhile")
    return {"size": f"{size[0]}x{size[1]}", "row": row, "rate": rate, "presses": len(latencies), "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
            "max_ms": round(latencies[-1], 1), "events_stored_meanwhile": stored}


def ui_bench(*, db: Path | None, events: int, rate: int, presses: int, say: Callable[[str], None]) -> dict[str, Any]:
    import tempfile

    from smsmon.sim.generate import fill
    from smsmon.store.reader import Reader

    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="smsmon-bench-ui-") as tmp:
        path = db or Path(tmp) / "large.db"
        if not path.exists():
            say(f"building a {events:,}-event database at {path} (once; about 2 minutes per million) ...")
            fill(path, events=events, seed=1, days=30)
        with Reader(path) as reader:
            size = reader.latest_event_id()
        say(f"browsing a database of {size:,} events")
        figures["browse"] = [dict(asyncio.run(browse_figures(path, say, dims)), events=size) for dims in SIZES]
        figures["keys"] = [asyncio.run(keypress_figures(Path(tmp), rate, presses, say, dims, row)) for dims in SIZES for row in (10, 0)]
    return figures
