"""The first screen's data, read while Textual loads.

Importing Textual and building the main screen take most of the time from launch to rows on
screen; the read itself takes a few milliseconds. So the commands that open the app start this
read in a thread before they import Textual (this module does not), and the app draws its first
frame with the rows already in hand instead of an empty table followed by a worker's answer.

`read_screen` is also the app's every refresh: one function for both, so the first frame is
exactly what the refresh loop would have shown.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from typing import Any, Callable

from smsmon.errors import SmsmonError
from smsmon.filters import Filter
from smsmon.store.reader import Reader
from smsmon.store.stats import quick_stats
from smsmon.store.views import Snapshot

PAGE = 200  # rows of the messages table read at a time
UI_CACHE_KIB = 32 * 1024  # the app's page cache: enough for the hot indexes, not the whole file
Screenful = tuple[Snapshot, dict[str, Any], Counter]


def app_reader(db: Any, *, window: Any, region: str | None) -> Reader:
    """The app's one Reader (its Gateway's), on an SQLite file or a PostgreSQL URL."""
    from smsmon.store.backend import open_reader

    return open_reader(db, cache_kib=UI_CACHE_KIB, mmap=False, window=window, region=region)


def read_screen(r: Reader, flt: Filter, watermark: int, *, now: datetime, live: bool, full: bool) -> Screenful | None:
    """What the main screen shows past `watermark`: the snapshot, the messages its new events
    touched (not for a `full` read, which replaces the table), events per second. None when
    browsing and another process wrote nothing new."""
    if not live and not full and watermark and r.latest_event_id() == watermark:
        return None
    # A filter only a scan of the messages answers (a number prefix, text, a stored flag): its
    # figures are read apart (`quick_stats`), so its rows show at once and the summary fills in.
    snap = r.dashboard(flt, watermark, limit=PAGE, now=now, with_stats=quick_stats(flt))
    # A full read replaces the table's rows: the messages its events touched are not needed
    # (at launch they were a query each, 115 of the first look's 153).
    changed = {} if full else r.messages_by_id({e["message_id"] for e in snap.new_events}, now=now)
    return snap, changed, r.activity(watermark, snap.watermark, now=now)


class FirstLook:
    """`read_screen` with no filter, started now in a thread of its own."""

    def __init__(self, reader: Reader, now: Callable[[], datetime], *, live: bool) -> None:
        self.reader = reader
        self.now = now()
        self._result: Screenful | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(live,), name="smsmon-first-look", daemon=True)
        self._thread.start()

    def _read(self, live: bool) -> None:
        try:
            self._result = read_screen(self.reader, Filter(), 0, now=self.now, live=live, full=True)
        except SmsmonError:
            pass  # no first look: the app's own first refresh meets the same error and says it
        finally:
            self._done.set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self) -> Screenful | None:
        """The result once the read is done (None if it failed): blocks, so from a thread."""
        self._done.wait()
        return self._result

    def take(self) -> Screenful | None:
        """The result if it is ready now (None if not, or if it failed): never waits."""
        return self._result if self._done.is_set() else None
