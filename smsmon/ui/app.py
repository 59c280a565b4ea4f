"""SmsmonApp: the screens, the live ingest it is given (watch, demo; none when browsing) and the
refresh loop.

New data reaches the screens one way (SPEC §2): the writer's commits nudge the app with a
DataChanged message (coalesced), or, when another process writes (browse), a timer notices the
events table's rowid grew; either way a thread worker (the Gateway) reads everything the screen
shows past the watermark and the app hands it down to the main screen. Screens and widgets post
what the user asked for upward (a filter, the next page, a message to open, the provider to be
asked); the app answers by reading and handing results down. The UI thread never touches SQLite.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from smsmon import database, filters, logs
from smsmon.errors import SmsmonError
from smsmon.filters import Filter
from smsmon.lifecycle import WATCH_WINDOW
from smsmon.store.reader import Reader
from smsmon.store import stats as figures
from smsmon.store.views import Snapshot
from smsmon.timeutil import UTC_ZONE, DisplayZone, now_utc
from smsmon.ui.first_look import PAGE, FirstLook, Screenful, read_screen
from smsmon.ui.gateway import Gateway
from smsmon.ui.messages import DataChanged
from smsmon.ui.screens.main import MainScreen
from smsmon.ui.widgets.filter_bar import FilterBar
from smsmon.ui.widgets.health import ForwardState, HealthInfo, PollState
from smsmon.ui.widgets.activity import WINDOW as ACTIVITY_WINDOW
from smsmon.ui.widgets.activity import second
from smsmon.ui.widgets.messages_table import MessagesTable

log = logging.getLogger("smsmon.ui")
LIVE_TICK_S = 0.25  # how often a nudge is turned into a refresh, at most
TABLE_TICK_S = 1.0  # how often the messages table takes new rows while live data pours in
SLOW_STATS_S = 5.0  # how often the figures of a filter only a scan answers are read again
BROWSE_CHECK_S = 1.0  # how often browsing looks for rows another process added
HEALTH_TICK_S = 1.0  # live, with nothing new stored: how often the health line is drawn again (its "ago"s)
# Container allocations between young-generation collections (Python's default is 700). Each
# collection is cheap, but every tenth goes a generation up and every hundredth walks the whole
# heap: 33-106 ms under 500 callbacks/s (the longest with a million-event database browsed), each
# a key press's wait. The app makes and frees thousands of cells a second, nearly all freed by reference
# counting; collecting cycles less often keeps the long pauses rare.
GC_YOUNG = 20_000
GC_BACK_S = 3.0  # the collector is back on this long after start at the latest (see collect_normally)


def _commands() -> type:
    from smsmon.ui.commands import SmsmonCommands

    return SmsmonCommands


# Only the main screen is loaded at start (the others, the palette and what they draw with, such
# as Markdown and Syntax, cost a third of the start-up time): each is imported when first opened.
class SmsmonApp(App):
    CSS_PATH = "smsmon.tcss"
    TITLE = "smsmon"
    COMMANDS = App.COMMANDS | {_commands}
    BINDINGS = [Binding("ctrl+p", "command_palette", "Commands", show=False), Binding("p", "pause", "Pause"),
                Binding("question_mark", "help", "Help"), Binding("q", "quit", "Quit")]

    def __init__(self, db: Path, *, ingest: Any = None, window: timedelta = WATCH_WINDOW, zone: DisplayZone = UTC_ZONE,
                 region: str | None = None, now: Callable[[], datetime] = now_utc, show_clock: bool = True,
                 first_look: FirstLook | None = None, forward: bool = False) -> None:
        """`ingest` (an smsmon.ingest.runtime.Ingest, not yet started) makes the app live; without
        one it browses. `zone` is where times are shown (display_timezone), `region` where local
        phone numbers typed in a filter are read (default_region). `now` and `show_clock` are for
        pictures that must come out the same every time. `first_look`: the first screen's data,
        read in a thread while Textual loaded (the commands start it before importing Textual).
        `forward`: forwarding is configured (forward.url), so that a dead letter replayed while
        browsing is written to the outbox for the process that forwards."""
        super().__init__()
        self.db = database.parse(db)
        self.ingest = ingest
        self.window = window
        self.zone = zone
        self.now = now
        self.show_clock = show_clock
        self.first_look = first_look
        self.region = region
        self.forward = forward
        self.on_hangup: list[Callable[[], None]] = []  # run before the process ends on SIGHUP (the terminal closed)
        self._replaying = False
        self.gateway = Gateway(self, self.db, window=window, region=region, reader=first_look.reader if first_look else None)
        self.filter = Filter()
        self.paused = False
        self.watermark = 0
        self.per_second: Counter = Counter()  # "YYYY-MM-DDTHH:MM:SS" -> events received that second (the last half hour)
        self.refreshes = 0  # how many snapshots were applied (tests and the UI benchmark wait on it)
        self.main = MainScreen(self.now, zone=zone, show_clock=show_clock)
        self._dirty = True
        self._screen_dirty = False
        self._table_at = 0.0  # when the table was last given rows (monotonic)
        self._health_at = 0.0  # when the health line was last drawn without a refresh (monotonic)
        self._held: dict[str, Any] = {}  # changed messages not yet given to the table
        self._stats: Any = None  # the figures of the filter in force, when they are read apart
        self._stats_at = 0.0
        self._counting: Worker | None = None
        self._stop_listening: Callable[[], None] | None = None  # commits announced by the database (PostgreSQL)
        self._refresh: Worker | None = None
        self._last: Snapshot | None = None
        self._restore_logging: Callable[[], None] | None = None

    @property
    def filter_text(self) -> str:
        return self.filter.source

    @property
    def busy(self) -> bool:
        """A refresh or a page is being read."""
        return (any(w is not None and w.is_running for w in (self._refresh, self._counting))
                or self.main.fetching_page)

    # ── start and stop ───────────────────────────────────────────────────────
    async def on_mount(self) -> None:
        self._restore_logging = logs.silenced()  # the screens show health and failures instead
        self._on_signals(lambda sig: asyncio.get_running_loop().add_signal_handler(sig, self._signalled, sig))
        self.sub_title = self.ingest.description if self.ingest else "offline"
        look, self.first_look = self.first_look, None
        first = look.take() if look is not None else None
        if look is not None and first is not None:  # read while Textual loaded: in the very first frame
            self.main.on_ready = lambda: self._apply(first, look.now, True)
            self._dirty = self.ingest is not None
        # The main screen is pushed after on_mount: Textual mounts the app in a batch of updates
        # that lasts until what on_mount mounted is mounted, and draws nothing meanwhile, so the
        # main screen laid out and rendered inside it was rendered for nothing and drawn again
        # after (measured: 100-150 ms more from launch to rows).
        self.call_later(self._start, look if first is None else None, first is not None)

    async def _start(self, look: FirstLook | None, shown: bool) -> None:
        """After the app's start-up batch: the main screen, the live ingest (watch, demo), the
        database's announcements, the tick; and the first look's rows if they were not ready at
        mount (`shown`: they were, and the main screen draws them in its first frame)."""
        if self.ingest is not None:  # first: one that cannot start (a port in use) ends the app before it draws
            self.ingest.on_commit = self._committed
            try:
                await self.ingest.start()
            except SmsmonError as exc:
                self.ingest = None
                self.exit(return_code=1, message=f"error: {exc}")
                return
        await self.push_screen(self.main)
        if self.ingest is not None:
            self.ingest.run_pollers()
        # PostgreSQL announces every commit of every writer (this process's, other serves'): no
        # need to look for new rows; SQLite announces nothing, and browsing looks every second.
        self._stop_listening = self.gateway.reader.listen(self._committed)
        if self._stop_listening is not None:
            self._dirty = True  # once more: a commit between the first read and LISTEN was not announced
        self.set_interval(LIVE_TICK_S if self.ingest or self._stop_listening else BROWSE_CHECK_S, self._tick)
        self.set_timer(GC_BACK_S, self.collect_normally)  # in case no refresh has come by then (a failing read)
        if look is not None:  # still reading when the app mounted: wait for it (in a thread) rather than read again
            def waited(first: Screenful | None) -> None:
                if first is not None and self._last is None:
                    self._apply(first, look.now, True)
                else:  # it failed: the app's own read says why
                    self._start_refresh(full=True)

            self._refresh = self.gateway.read(lambda _reader: look.wait(), waited, group="refresh")
        elif not shown:  # else the screen has the data already: the next tick looks again
            self._tick()

    def _signalled(self, sig: int) -> None:
        """SIGTERM ends the app as q does: the ingest stops after committing what it acknowledged,
        and whatever ran it cleans up (the demo's temporary database). SIGHUP means the terminal
        is gone, and Textual's orderly exit can hang writing to it (seen: a `browse` left running
        for good): what must be cleaned up is, and the process ends at once. Nothing acknowledged
        is lost: a callback is answered only once committed."""
        if sig != signal.SIGHUP:
            self.exit()
            return
        for cleanup in self.on_hangup:
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - ending regardless: the terminal is gone
                log.exception("cleanup on hangup failed")
        os._exit(128 + sig)

    @staticmethod
    def _on_signals(do: Callable[[int], Any]) -> None:
        """SIGTERM and SIGHUP: see `_signalled`."""
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                do(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # no such signal here, or not the main thread (a test's, the browser's): nothing to catch

    async def on_unmount(self) -> None:
        self._on_signals(asyncio.get_running_loop().remove_signal_handler)
        if self._stop_listening is not None:
            self._stop_listening()
        if self.ingest is not None:
            await self.ingest.stop()
        self.gateway.close()
        if self._restore_logging is not None:  # as it was before the app: the app's quiet is not everyone's
            self._restore_logging()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A read that failed: smsmon's own errors (the database went away, is locked) are said
        in a notification; anything else is a bug and ends the app with it."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, SmsmonError):
            self.notify(str(error), severity="error", timeout=10, markup=False)
            if event.worker.group == "more":
                self.main.page_failed()
            for screen in self.screen_stack:  # whichever screen started it, on top or not, says it stopped waiting
                if hasattr(screen, "read_failed"):
                    screen.read_failed(event.worker)
        else:
            self.exit(return_code=1, message=f"internal error: {type(error).__name__}: {error}")

    # ── refreshing ───────────────────────────────────────────────────────────
    def _committed(self, event_id: int) -> None:
        """On the writer thread, after each commit (or the thread that hears PostgreSQL announce
        one): a flag, read by the next tick. (A message per
        commit queued hundreds a second ahead of the user's keys: measured, key presses waited
        400 ms at the 99th percentile under 500 callbacks/s.)"""
        self._dirty = self._screen_dirty = True

    def on_data_changed(self, message: DataChanged) -> None:
        self._committed(message.event_id)

    def _tick(self) -> None:
        if not self.is_running:  # closing: the screens' widgets are being removed (a tick then raised NoMatches)
            return
        alerts = self.ingest.alerts if self.ingest is not None else None  # watch, demo: the runtime's evaluator
        if alerts is not None and self.main.is_mounted:
            self.main.show_alerts(alerts.firing())
        if self.paused:
            return
        if self._screen_dirty and hasattr(self.screen, "message_id"):  # a message screen: its message may have news
            self._screen_dirty = False
            self.screen.load()  # type: ignore[attr-defined]
        if self._refresh is not None and self._refresh.is_running:
            return
        if self._dirty or (self.ingest is None and self._stop_listening is None):
            self._start_refresh(full=False)
        elif self._last is not None and time.monotonic() - self._health_at >= HEALTH_TICK_S:
            # Nothing new stored: the health line still moves ("last callback 2m ago", the
            # pollers, the forward outbox), from this process's memory, no read.
            self._health_at = time.monotonic()
            self.main.show_health(self._health(self._last), self.now())

    def refresh_now(self, *, full: bool = True) -> None:
        """Read now, replacing any read in progress (the newest request wins)."""
        if not self.paused:
            self._start_refresh(full=full)

    def _start_refresh(self, full: bool) -> None:
        self._dirty = False
        now, flt, watermark, live = self.now(), self.filter, self.watermark, self.ingest is not None

        def fetch(r: Reader) -> Screenful | None:
            return read_screen(r, flt, watermark, now=now, live=live, full=full)

        self._refresh = self.gateway.read(fetch, lambda result: self._apply(result, now, full), group="refresh",
                                          exclusive=full)

    def _apply(self, result: Screenful | None, now: datetime, full: bool) -> None:
        if result is None:
            return
        snap, changed, per_second = result
        if self.watermark == 0:
            self.per_second = per_second
        else:
            self.per_second.update(per_second)
            oldest = second(now - ACTIVITY_WINDOW)
            for key in [k for k in self.per_second if k < oldest]:
                del self.per_second[key]
        self.watermark = snap.watermark
        self._last = snap
        if snap.stats is None:  # a filter whose figures are read apart: the rows do not wait for them
            if full:
                self._stats = None
            snap.stats = self._stats  # this filter's last figures, while newer ones are read
            if full or time.monotonic() - self._stats_at >= SLOW_STATS_S:
                self._count(now)
        else:
            self._stats = snap.stats
        # The table takes new rows at most once a second while data pours in (each update draws
        # every visible cell again); the summary, health and event stream keep the tick's pace.
        self._held.update(changed)
        table = full or self.ingest is None or time.monotonic() - self._table_at >= TABLE_TICK_S
        self.main.show(snap, self._held if table else {}, self._health(snap), now, per_second=self.per_second, full=full,
                       table=table)
        if table:
            self._held = {}
            self._table_at = time.monotonic()
        self.refreshes += 1
        if self.refreshes == 1:
            self.call_after_refresh(self.collect_normally)  # once these rows are drawn: it collects

    @staticmethod
    def collect_normally() -> None:
        """The garbage collector as the app runs with it, once it has drawn its first rows (or a
        few seconds after start, whichever comes first): `smsmon.cli.main` turned it off for the
        start-up. Start-up's garbage is collected once, after the first frame; what remains lives as
        long as the app and is frozen out of full collections; young collections come less often
        (see GC_YOUNG)."""
        if gc.isenabled() and gc.get_threshold()[0] == GC_YOUNG:
            return
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
        gc.enable()

    def _count(self, now: datetime, limit: int | None = None) -> None:
        """The figures of the filter in force, read in their own worker (the newest wins). With
        none shown yet, the first RAW_FIRST messages are counted first, at once, then RAW_LIMIT
        (at 10M events a prefix of numbers takes 40 ms, then 0.7 s)."""
        flt = self.filter
        self._stats_at = time.monotonic()
        if limit is None:
            limit = figures.RAW_FIRST if self._stats is None else figures.RAW_LIMIT

        def counted(stats: Any) -> None:
            if flt is self.filter and self._last is not None:  # still the filter in force
                self._stats = stats
                self.main.show_summary(stats, self.per_second, self._last.dead_letters, now)
                if stats.partial and stats.limit < figures.RAW_LIMIT:  # a first look: count on
                    self._count(now, figures.RAW_LIMIT)

        self._counting = self.gateway.read(lambda r: r.stats(flt, now=now, limit=limit), counted, group="stats",
                                           exclusive=True)

    def _health(self, snap: Snapshot) -> HealthInfo:
        """One record for the health line: this process's ingest when live, the database's poll
        runs when browsing."""
        if self.ingest is not None:
            h = self.ingest.health
            fwd = h.forward and ForwardState(h.forward.waiting, h.forward.last_error if h.forward.waiting else None)
            return HealthInfo(live=True, db=self.db, callback_url=h.callback_url, last_callback=self.ingest.last_callback,
                              pollers=tuple(h.pollers), paused=self.paused, store_error=self.ingest.store_error, forward=fwd,
                              polls={p: PollState(o.ok, o.finished_at, o.error_code) for p, o in h.polls.items()})
        return HealthInfo(live=False, db=self.db, pollers=tuple(sorted(snap.polls)), paused=self.paused,
                          polls={p: PollState(bool(r["ok"]), r["finished_at"], r["error_code"]) for p, r in snap.polls.items()})

    # ── what the screens and widgets ask for ────────────────────────────────
    def on_filter_bar_changed(self, message: FilterBar.Changed) -> None:
        self._use_filter(message.filter)

    def set_filter(self, text: str) -> None:
        """From the command palette. Raises FilterError for the caller to show."""
        self._use_filter(filters.parse(text, self.now()))
        self.main.show_filter(self.filter.source)

    def _use_filter(self, flt: Filter) -> None:
        self.filter = flt
        self.sub_title = self.sub_title.split(" · ")[0] + (f" · filter: {flt.source}" if flt.source else "")
        self.refresh_now(full=True)

    def on_messages_table_need_more(self, message: MessagesTable.NeedMore) -> None:
        table = message.table
        now, flt = self.now(), table.filter or self.filter

        def then(rows: list[dict[str, Any]]) -> None:
            if flt is (table.filter or self.filter):  # else a new filter replaced the table meanwhile
                table.append(rows, now)

        self.gateway.read(lambda r: r.page(flt, after=message.after, limit=PAGE, now=now), then, group="more")

    def on_messages_table_opened(self, message: MessagesTable.Opened) -> None:
        from smsmon.ui.screens.message import MessageScreen

        self.push_screen(MessageScreen(message.message_id, self.gateway, self.now, zone=self.zone, live=self.ingest is not None,
                                       show_clock=self.show_clock))

    def on_message_screen_filter_wanted(self, message: Any) -> None:
        """Show the messages of a filter a message screen offered (the same failure, say)."""
        self.switch_to_main()
        self.set_filter(message.expression)

    def switch_to_main(self) -> None:
        while len(self.screen_stack) > 2 and self.screen is not self.main:
            self.pop_screen()

    def on_messages_table_newest_wanted(self, message: MessagesTable.NewestWanted) -> None:
        if message.control is self.main.table:
            self.refresh_now(full=True)

    def on_insights_screen_open(self, message: Any) -> None:
        """A row of insights: its messages (exactly those it counted), or one stale message."""
        if message.message_id:
            self.on_messages_table_opened(MessagesTable.Opened(message.message_id))
            return
        from smsmon.ui.screens.filtered import FilteredScreen

        flt = filters.parse(message.expression, self.now())
        self.push_screen(FilteredScreen(message.title, flt, self.gateway, self.now, zone=self.zone, show_clock=self.show_clock))

    def on_message_screen_ask_provider(self, message: Any) -> None:
        self.run_worker(self._ask_provider(message.screen), group="ask")

    async def _ask_provider(self, screen: Any) -> None:
        mid = screen.message_id
        if self.ingest is None:
            self.notify("offline: browsing a database, no provider to ask", severity="warning")
            return
        if not self.ingest.can_refresh(mid):
            self.notify(f"no poller is configured for {mid.partition(':')[0]}", severity="warning", markup=False)
            return
        self.notify(f"asking the provider about {mid} …", markup=False)
        outcome = await self.ingest.refresh(mid)
        if outcome.ok:
            self.notify(f"{outcome.new_events} new events" if outcome.new_events else "no change")
        else:
            self.notify(f"{outcome.error_code}: {outcome.error}", severity="error", markup=False)
        screen.load()

    def on_dead_letters_screen_replay(self, message: Any) -> None:
        if self._replaying:
            self.notify("a replay is running: wait for its result", severity="warning")
            return
        self._replaying = True
        self.run_worker(self._replay(message.screen, message.ids), group="replay")

    async def _replay(self, screen: Any, ids: tuple[int, ...] | None) -> None:
        """Through this process's writer when live (and its forwarding), else with a writer of
        its own on the file (a `serve` writing it meanwhile waits its turn)."""
        from smsmon.ingest.replay import replay

        try:
            if self.ingest is not None and self.ingest.committer is not None:
                result = await self.ingest.replay_dead_letters(ids)
            else:
                result = await asyncio.to_thread(replay, self.db, ids=ids, region=self.region, forward=self.forward)
        except SmsmonError as exc:
            self.notify(f"replay failed: {exc}", severity="error", markup=False)
            return
        finally:
            self._replaying = False
        self.notify(result.summary() + ("" if not result.failed else f"; still refused: {result.failed[0][1]}"),
                    severity="warning" if result.failed else "information", markup=False)
        self._dirty = True  # the main screen's rows and dead-letter count
        screen.load()

    def action_pause(self) -> None:
        self.toggle_pause()

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self.notify("paused: live updates held (p resumes)" if self.paused else "resumed")
        if self._last is not None:
            self.main.show_health(self._health(self._last), self.now())
        if not self.paused:
            self.refresh_now(full=True)

    def action_insights(self) -> None:
        from smsmon.ui.screens.insights import InsightsScreen

        self.push_screen(InsightsScreen(self.gateway, self.filter, self.window, self.now, zone=self.zone,
                                        show_clock=self.show_clock))

    def action_dead_letters(self) -> None:
        from smsmon.ui.screens.dead_letters import DeadLettersScreen

        self.push_screen(DeadLettersScreen(self.gateway, zone=self.zone, show_clock=self.show_clock))

    def action_help(self) -> None:
        from smsmon.ui.screens.help import HelpScreen

        # Screens are imported when first opened: name them without importing them.
        first = {"MessageScreen": "message", "InsightsScreen": "insights", "FilteredScreen": "filtered",
                 "DeadLettersScreen": "letters"}.get(type(self.screen).__name__, "main")
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(first, show_clock=False))
