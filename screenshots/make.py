"""Regenerate screenshots/*.svg from a seeded demo:

    python screenshots/make.py

Two days of seeded history (`smsmon sim generate --seed 1`), then the live demo (simulated
providers into the real listener and pollers) on top of it for a few seconds, then each screen at
160x45, and the main and message screens again at 80x24, the smallest terminal people use.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from textual.widgets import DataTable

from smsmon import config
from smsmon.ingest.listener import ListenerConfig
from smsmon.sim.demo import DemoIngest
from smsmon.sim.generate import fill
from smsmon.ui.app import SmsmonApp
from smsmon.ui.screens.message import MessageScreen

HERE = Path(__file__).parent
SIZE = (160, 45)
SMALL = (80, 24)


async def until(pilot, condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("the demo did not get there in time")
        await pilot.pause(0.05)


async def shoot(db: Path) -> list[str]:
    settings = config.load(env={"SMSMON_CONFIG": ""}, flags={"db": db})
    app = SmsmonApp(db, ingest=DemoIngest(settings, ListenerConfig(port=0), seed=1))
    saved: list[str] = []

    def save(name: str) -> None:
        app.save_screenshot(filename=f"{name}.svg", path=str(HERE))
        saved.append(name)

    async with app.run_test(size=SMALL) as pilot:
        table = lambda: app.screen.query_one("#messages", DataTable)  # noqa: E731
        await until(pilot, lambda: app.refreshes > 0 and table().row_count > 0)
        await pilot.pause(8)  # live traffic for the chart
        save("main-80x24")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MessageScreen) and app.screen.detail is not None)
        await pilot.pause(0.5)
        save("message-80x24")
        await pilot.press("escape", "q")

    app = SmsmonApp(db, ingest=DemoIngest(settings, ListenerConfig(port=0), seed=1))
    async with app.run_test(size=SIZE) as pilot:
        table = lambda: app.screen.query_one("#messages", DataTable)  # noqa: E731
        await until(pilot, lambda: app.refreshes > 0 and table().row_count > 0)
        await pilot.pause(8)  # live traffic for the sparkline and the event stream
        save("main")
        await pilot.press("slash", *"status:not_delivered provider:eazita", "enter")
        await until(pilot, lambda: app.filter_text.startswith("status:not_delivered"))
        await pilot.pause(1)
        save("filter")
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: isinstance(app.screen, MessageScreen) and app.screen.detail is not None)
        await pilot.pause(0.5)
        save("message")
        await pilot.press("escape", "escape", "i")
        await until(pilot, lambda: getattr(app.screen, "data", None) is not None)
        await pilot.pause(1)
        save("insights")
        await pilot.press("escape", "d")
        await pilot.pause(1)
        await pilot.press("down")
        save("dead-letters")
        await pilot.press("escape", "question_mark")
        await pilot.pause(0.5)
        save("help")
        await pilot.press("escape", "q")
    return saved


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "screenshots.db"
        fill(db, messages=3000, seed=1, days=2)
        saved = asyncio.run(shoot(db))
    print("wrote " + ", ".join(f"screenshots/{n}.svg" for n in saved), file=sys.stderr)


if __name__ == "__main__":
    main()
