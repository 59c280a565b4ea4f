"""SmsmonApp: owns the data access, the live ingest (watch and demo) and the refresh loop.

New data reaches the screens one way (SPEC §2): the writer's commits nudge the app with a
DataChanged message (coalesced), or, when another process writes (browse), a timer notices the
events table's rowid grew; either way a thread worker reads everything the screen shows past
the watermark and the screen applies it. The UI thread never touches SQLite.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from textual import work
from textual.app import App
from textual.binding import Binding

from smsmon import filters
from smsmon.filters import Filter
from smsmon.ingest.live import DemoIngest, LiveIngest
from smsmon.lifecycle import Status, outcome_of
from smsmon.store.queries import Cursor
from smsmon.timeutil import now_utc
from smsmon.ui.commands import SmsmonCommands
from smsmon.ui.data import Data, Snapshot
from smsmon.ui.messages import DataChanged
from smsmon.ui.screens.insights import InsightsScreen
from smsmon.ui.screens.main import MainScreen
from smsmon.ui.screens.message import MessageScreen
from smsmon.ui.screens.other import DeadLettersScreen, HelpScreen

BROWSE_CHECK_S = 1.0


class SmsmonApp(App):
    CSS_PATH = "smsmon.tcss"
    TITLE = "smsmon"
    COMMANDS = App.COMMANDS | {SmsmonCommands}
    BINDINGS = [Binding("ctrl+p", "command_palette", "Commands", show=False)]

    def __init__(self, db_path: Path, *, mode: str = "browse", settings: Any = None, listener_config: Any = None,
                 window: timedelta = timedelta(hours=72), seed: int = 1, now: Callable[[], datetime] = now_utc,
                 show_clock: bool = True) -> None:
        """`now` and `show_clock` are for pictures that must come out the same every time."""
        super().__init__()
        self.now = now
        self.show_clock = show_clock
        self.db_path = Path(db_path)
        self.mode = mode
        self.settings = settings
        self.listener_config = listener_config
        self.window = window
        self.seed = seed
        self.data = Data(self.db_path)
        self.ingest: LiveIngest | None = None
        self.filter = Filter()
        self.filter_text = ""
        self.paused = False
        self.watermark = 0
        self.per_minute: Counter = Counter()
        self.last_cursor: Cursor | None = None
        self._dirty = True
        self._full = True
        self._busy = False
        self._loading_more = False
        self.refreshes = 0  # how many snapshots were applied (tests and the UI benchmark wait on it)

    # ── start and stop ───────────────────────────────────────────────────────
    async def on_mount(self) -> None:
        # Ingest logs must not reach the terminal under the app (Python's last-resort handler
        # would write warnings to stderr): the screens show health and failures instead.
        smsmon_log = logging.getLogger("smsmon")
        self._saved_logging = (smsmon_log.handlers[:], smsmon_log.propagate)
        smsmon_log.handlers[:] = [logging.NullHandler()]
        smsmon_log.propagate = False
        self.sub_title = {"watch": "live", "demo": "demo: simulated providers", "browse": "offline"}[self.mode]
        await self.push_screen(MainScreen())
        if self.mode in ("watch", "demo"):
            loop = asyncio.get_running_loop()
            nudge = lambda event_id: loop.call_soon_threadsafe(self.post_message, DataChanged(event_id))  # noqa: E731
            cls = DemoIngest if self.mode == "demo" else LiveIngest
            kwargs = {"seed": self.seed} if self.mode == "demo" else {}
            self.ingest = cls(self.settings, self.listener_config, on_data=nudge, **kwargs)
            try:
                await self.ingest.start()
            except Exception as exc:  # noqa: BLE001 - shown to the user, not a traceback
                self.ingest = None
                self.exit(return_code=1, message=f"error: {exc}")
                return
        self.set_interval(0.25 if self.mode != "browse" else BROWSE_CHECK_S, self._tick)
        self._tick()

    async def on_unmount(self) -> None:
        if self.ingest:
            await self.ingest.stop()
        saved = getattr(self, "_saved_logging", None)
        if saved is not None:  # as it was before the app: the app's quiet is not everyone's
            smsmon_log = logging.getLogger("smsmon")
            smsmon_log.handlers[:], smsmon_log.propagate = saved

    # ── refreshing ───────────────────────────────────────────────────────────
    def on_data_changed(self, message: DataChanged) -> None:
        self._dirty = True
        if self.screen_stack and isinstance(self.screen, MessageScreen) and not self.paused:
            self.screen.on_data_changed()

    def request_refresh(self, *, full: bool = False) -> None:
        self._dirty = True
        self._full = self._full or full
        self._tick()

    def _tick(self) -> None:
        if self.paused or self._busy:
            return
        if self._dirty or self.mode == "browse":
            self._busy = True
            self._dirty = False
            self.snapshot(self._full)
            self._full = False

    @work(thread=True, group="refresh")
    def snapshot(self, full: bool) -> None:
        try:
            if not self.data.exists():
                self.call_from_thread(self._no_database)
                return
            if self.mode == "browse" and not full and self.watermark and self.data.latest() == self.watermark:
                return  # another process has written nothing new
            now = self.now()
            snap = self.data.snapshot(self.filter, self.watermark, now=now, window=self.window)
            changed_ids = list({e["message_id"] for e in snap.new_events})
            changed = self.data.rows_by_id(changed_ids, now=now, window=self.window)
            self.call_from_thread(self._apply, snap, changed, now, full)
        finally:
            self._busy = False

    def _apply(self, snap: Snapshot, changed: dict[str, Any], now: Any, full: bool) -> None:
        if self.watermark == 0:
            self.per_minute = snap.per_minute
        else:
            self.per_minute.update(snap.per_minute)
        self.watermark = snap.watermark
        main = self._main()
        if main is not None:
            main.apply(snap, changed, now, full=full)
        self.refreshes += 1
        if self.refreshes == 1:
            gc.freeze()  # what start-up made lives as long as the app: keep full collections short

    def _no_database(self) -> None:
        main = self._main()
        if main is not None:
            from smsmon.store.queries import Stats

            empty = Stats(0, 0, {}, None, None, None, 0, [], [], [])
            main.apply(Snapshot([], empty, [], 0, Counter()), {}, self.now(), full=True)

    def _main(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def load_more(self) -> None:
        if self._loading_more or self.last_cursor is None:
            return
        self._loading_more = True
        self._more(self.last_cursor)

    @work(thread=True, group="more")
    def _more(self, after: Cursor) -> None:
        rows: list[dict[str, Any]] = []
        now = self.now()
        try:
            rows = self.data.more(self.filter, after, now=now, window=self.window)
        finally:
            self.call_from_thread(self._appended, rows, now)

    def _appended(self, rows: list[dict[str, Any]], now: Any) -> None:
        """On the UI thread: add the page, and if the cursor is still near the end (the user kept
        going while it loaded), fetch the next one."""
        self._loading_more = False
        main = self._main()
        if main is None or not rows:
            return
        main.append(rows, now)
        table = main.query_one("#messages")
        if table.cursor_row >= table.row_count - 10:  # type: ignore[attr-defined]
            self.load_more()

    # ── what the screens and the palette ask for ────────────────────────────
    def set_filter(self, text: str) -> None:
        """Raises FilterError for the caller to show."""
        self.filter = filters.parse(text, self.now())
        self.filter_text = self.filter.source
        main = self._main()
        if main is not None:
            main.show_filter()
        self.sub_title = self.sub_title.split(" · ")[0] + (f" · filter: {self.filter_text}" if self.filter_text else "")
        self.request_refresh(full=True)

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self.notify("paused: live updates held (p resumes)" if self.paused else "resumed")
        if not self.paused:
            self.request_refresh(full=True)
        main = self._main()
        if main is not None:
            main.show_pause()

    def open_message(self, message_id: str) -> None:
        self.push_screen(MessageScreen(message_id))

    def action_insights(self) -> None:
        self.push_screen(InsightsScreen())

    def action_dead_letters(self) -> None:
        self.push_screen(DeadLettersScreen())

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    @staticmethod
    def outcome_of(event: dict[str, Any]) -> str:
        try:
            return outcome_of(event["provider"], Status(event["status"])).value
        except ValueError:
            return "UNKNOWN"
