"""Real data and simulated data never mix unnoticed (issue 13).

A simulated event says so in its source (`sim:callback`, `sim:poll`, ...: SIMULATED, then the
way it came in). A database that holds nothing but simulated traffic carries the demo mark (a
`meta` row), set by `smsmon demo` and `smsmon sim generate` when they start on a new or empty
file; `inspect()` tells them whether a file is theirs to write. The writer drops the mark as
soon as it stores an event that is not simulated: from then on the file holds real data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from smsmon.errors import NotSmsmonDatabase, SchemaTooNew
from smsmon.lifecycle import Event
from smsmon.store.schema import SCHEMA_VERSION, connect, store_error, version
from smsmon.timeutil import fmt, now_utc

if TYPE_CHECKING:
    from smsmon.store.writer import Writer

log = logging.getLogger("smsmon.store")

SIMULATED = "sim:"
SIMULATED_HEADER = "X-Smsmon-Simulated"  # `smsmon simulate` and the demo send it with their callbacks
DEMO_KEY = "demo"


def simulated(event: Event) -> Event:
    """The same event, its source saying that it is simulated."""
    return event if event.source.startswith(SIMULATED) else dataclasses.replace(event, source=SIMULATED + event.source)


def is_simulated(source: str) -> bool:
    return source.startswith(SIMULATED)


@dataclasses.dataclass(frozen=True)
class Origin:
    """What a database file holds: `new` (no file, an empty file, or an smsmon schema with
    nothing in it), `demo` (only simulated traffic) or `real` (anything else)."""

    path: Path
    kind: str
    messages: int = 0
    dead_letters: int = 0

    @property
    def has_data(self) -> bool:
        return self.kind != "new"

    def describe(self) -> str:
        what = [f"{self.messages:,} messages"] if self.messages else []
        what += [f"{self.dead_letters:,} dead letters"] if self.dead_letters else []
        return ", ".join(what) or "poll runs"


def inspect(path: str | Path) -> Origin:
    """Look, read-only, at what the file at `path` holds. Raises StoreError (another program's
    file, a damaged one, one from a newer smsmon) with a one-line reason."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return Origin(path, "new")
    conn = connect(path, readonly=True)
    try:
        v = version(conn)
        if v > SCHEMA_VERSION:
            raise SchemaTooNew(f"{path} has schema version {v}; this smsmon knows up to {SCHEMA_VERSION}: upgrade smsmon")
        if v <= 0:
            if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                raise NotSmsmonDatabase(f"{path} is not an smsmon database (it holds other tables): give a new file")
            return Origin(path, "new")
        demo = v >= 5 and conn.execute("SELECT 1 FROM meta WHERE key = ?", (DEMO_KEY,)).fetchone() is not None
        messages = conn.execute("SELECT coalesce(sum(n), 0) FROM facet_counts WHERE dim = 'provider'").fetchone()[0]
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        polls = conn.execute("SELECT EXISTS (SELECT 1 FROM poll_runs)").fetchone()[0]
    except sqlite3.Error as exc:
        raise store_error(exc, path) from None
    finally:
        conn.close()
    kind = "demo" if demo else "real" if (messages or letters or polls) else "new"
    return Origin(path, kind, messages, letters)


def mark_demo(writer: "Writer") -> None:
    """Mark the database as holding only simulated traffic (in the caller's transaction)."""
    writer.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (DEMO_KEY, fmt(now_utc())))
    writer.demo = True


def is_demo(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM meta WHERE key = ?", (DEMO_KEY,)).fetchone() is not None


def simulated_headers(headers: str | None) -> bool:
    """Whether a dead letter's kept headers (JSON) say its callback was simulated."""
    try:
        kept = json.loads(headers or "{}")
    except ValueError:
        return False
    return isinstance(kept, dict) and any(k.lower() == SIMULATED_HEADER.lower() for k in kept)


def still_demo_letters(conn: sqlite3.Connection, headers: Iterable[str | None]) -> bool:
    """The same for dead letters: one that a simulator did not send is real traffic, refused."""
    if all(simulated_headers(h) for h in headers):
        return True
    conn.execute("DELETE FROM meta WHERE key = ?", (DEMO_KEY,))
    log.warning("this database held only simulated traffic; it now holds a real callback (a dead letter) too, and demo "
                "commands will no longer write into it")
    return False


def still_demo(conn: sqlite3.Connection, events: Iterable[Event]) -> bool:
    """False, and the mark removed, when one of the events is not simulated (in the caller's
    transaction): a demo database that receives real data is a demo database no more."""
    real = next((e for e in events if not is_simulated(e.source)), None)
    if real is None:
        return True
    conn.execute("DELETE FROM meta WHERE key = ?", (DEMO_KEY,))
    log.warning("this database held only simulated traffic; it now holds real events (source %s) too, and demo "
                "commands will no longer write into it", real.source)
    return False
