"""The app's one way to the store. Each read runs in a thread worker on one shared Reader, and
its result reaches a callback on the UI thread, unless a newer read of the same group has
replaced it meanwhile (the newest request wins). The UI thread never touches SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

from textual.app import App
from textual.worker import Worker, get_current_worker

from smsmon.lifecycle import WATCH_WINDOW
from smsmon.errors import ReadStopped
from smsmon.store.reader import Reader
from smsmon.ui.first_look import app_reader

T = TypeVar("T")


class Gateway:
    def __init__(self, app: App, db: Path, *, window: Any = WATCH_WINDOW, region: str | None = None,
                 reader: Reader | None = None) -> None:
        self.app = app
        self.reader = reader or app_reader(db, window=window, region=region)

    def read(self, fetch: Callable[[Reader], T], then: Callable[[T], None], *, group: str,
             exclusive: bool = True) -> Worker:
        """Run `fetch(reader)` in a thread; hand its result to `then` on the UI thread. With
        `exclusive`, a read of the same group still running is cancelled: SQLite stops it (within
        STOP_CHECK_STEPS steps of its query) and its result, if it had one, is dropped."""

        def deliver(result: T) -> None:
            if self.app.is_running:  # not when the app is closing: its widgets are being removed
                then(result)

        def work() -> None:
            worker = get_current_worker()
            try:
                with self.reader.stoppable(lambda: worker.is_cancelled):  # a newer read replaced it: SQLite stops
                    result = fetch(self.reader)
            except ReadStopped:
                return
            if not worker.is_cancelled:
                self.app.call_from_thread(deliver, result)

        return self.app.run_worker(work, thread=True, group=group, exclusive=exclusive, exit_on_error=False)

    def close(self) -> None:
        self.reader.close()
