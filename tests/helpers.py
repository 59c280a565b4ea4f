"""Builders of real provider payloads and shared test strategies."""

from __future__ import annotations

import itertools
import json
import sqlite3
import uuid as uuidlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from smsmon.lifecycle import Event, make_event
from smsmon.providers import eazita, zeckta
from smsmon.timeutil import UTC, zone

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
KARACHI = zone("Asia/Karachi")


# Event ids that differ on every call and come out the same in every run (test ids built from them
# must: pytest-xdist's workers each collect the tests and compare).
_EVENT_IDS = itertools.count(0x5EED << 96)


def callback(event_type: str = "MESSAGE_DELIVERED", *, uuid: str = "m-1", event_id: str | None = None,
             at: datetime | str = NOW - timedelta(minutes=5), **message: Any) -> dict[str, Any]:
    """A Zeckta callback as the provider documents it."""
    ts = at if isinstance(at, str) else at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "482Z"
    return {
        "eventId": event_id or str(uuidlib.UUID(int=next(_EVENT_IDS))),
        "eventType": event_type,
        "timestamp": ts,
        "message": {"uuid": uuid, "src": "ACME", "dest": "+233241234567", "status": event_type.removeprefix("MESSAGE_"),
                    "segments": 1, "units": 1, "attempts": 1, **message},
    }


def zevent(event_type: str = "MESSAGE_DELIVERED", **kw: Any) -> Event:
    return zeckta.parse_callback(json.dumps(callback(event_type, **kw)).encode(), received_at=NOW)


def report_row(status: str = "DELIVERED", *, message_id: int = 569399, sent: str = "2026/11/23 16:50:00",
               done: str | None = "2026/11/23 16:51:00", error_code: str = "0", **extra: Any) -> dict[str, Any]:
    """An Eazita delivery-report row, numbers as strings as in Eazita's own sample."""
    return {"message_id": message_id, "status": status, "price": "0.003", "network": "Zong", "country_code": "92",
            "done_date": done, "sent_date": sent, "error_code": error_code, "reference": None, **extra}


def eevent(status: str = "DELIVERED", **kw: Any) -> Event:
    return eazita.row_event(report_row(status, **kw), tz=KARACHI, received_at=NOW)


ZECKTA_TYPES = ["SUBMITTED", "SENT", "DELIVERED", "FAILED", "UNDELIVERABLE", "EXPIRED", "REJECTED", "QUEUED", "READ"]
EAZITA_STATUSES = ["SUBMIT", "PENDING", "SENT", "EXPIRED", "DELIVERED", "REJECTED", "NOT_ALLOWED", "NOT_DELIVERED",
                   "FAILED", "WHATEVER"]


@st.composite
def message_events(draw):
    """Events of one message: any statuses, times that tie often, distinct fingerprints.
    (Exact replays are the next property's business. A fingerprint twin under another event
    id is a duplicate by rule 1, so the first copy's event key and attributes are the ones
    kept: the one documented place where arrival order shows; see the test after these.)"""
    provider = draw(st.sampled_from(["zeckta", "eazita"]))
    statuses = ZECKTA_TYPES if provider == "zeckta" else EAZITA_STATUSES
    n = draw(st.integers(1, 7))
    events, seen = [], set()
    for i in range(n):
        # Few distinct times (many ties), and now and then one from a clock a year ahead.
        event_time = draw(st.sampled_from([*(f"2026-11-23T10:0{m}:00.000000Z" for m in range(5)), "2027-11-23T10:00:00.000000Z"]))
        ev = make_event(
            provider=provider, provider_message_id="m", source="callback",
            raw_status=draw(st.sampled_from(statuses)),
            event_time=event_time,
            received_at=draw(st.sampled_from(["2026-11-23T10:10:00.000000Z", "2026-11-23T10:03:30.000000Z"])),
            sent_at=draw(st.sampled_from([None, "2026-11-23T09:59:00.000000Z", "2026-11-23T10:01:00.000000Z"])),
            event_key=draw(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])) + str(i),
            error_code=draw(st.sampled_from([None, "0", "101", "8"])),
            attrs={"cost": draw(st.sampled_from([None, 0.01, 0.02])), "network": draw(st.sampled_from([None, "Zong", "Jazz"]))},
        )
        if ev.fingerprint not in seen:
            seen.add(ev.fingerprint)
            events.append(ev)
    return events


def connect(db: Any) -> Any:
    """A connection to look into a database with, whichever store it is: sqlite3's, or the
    PostgreSQL store's sqlite-faced one (the same SQL: `?` placeholders; autocommit). Close it."""
    from smsmon.database import PostgresUrl

    if isinstance(db, PostgresUrl):
        from smsmon.store.pg.connection import Connection
        from smsmon.store.pg.connection import connect as pg_connect

        return _Closing(Connection(pg_connect(db, autocommit=True)))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


class _Closing:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def close(self) -> None:
        self._conn.raw.close()


def rows(db: Any, sql: str, *params: Any) -> list[tuple]:
    """What a query returns, as plain tuples: from an open connection, or a database (an SQLite
    file, a PostgreSQL URL) opened (and closed) for it, as another process would."""
    if hasattr(db, "execute"):
        return [tuple(r) for r in db.execute(sql, params)]
    conn = connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def lock_out_writers(db: Any) -> Any:
    """Another process holding the write lock, until `.execute("ROLLBACK")`: SQLite's reserved
    lock, or PostgreSQL's commit clock row (what every writer locks before it writes)."""
    blocker = connect(db)
    if isinstance(blocker, sqlite3.Connection):
        blocker.execute("BEGIN IMMEDIATE")
    else:
        blocker.execute("BEGIN")
        blocker.execute("SELECT * FROM commit_clock FOR UPDATE")
    return blocker


def stored_bytes(db: Any) -> bytes:
    """Everything a database holds, to search for what must never be stored: an SQLite file's
    bytes (with its -wal), or every row of every table of a PostgreSQL schema as text."""
    from smsmon.database import PostgresUrl

    if not isinstance(db, PostgresUrl):
        return b"".join(p.read_bytes() for p in Path(db).parent.glob(Path(db).name + "*"))
    conn = connect(db)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        return "\n".join(r[0] for t in tables for r in conn.execute(f"SELECT CAST(t AS text) FROM {t} AS t")).encode()
    finally:
        conn.close()


def arg(db: Any) -> str:
    """A database as `--db` takes it on a command line."""
    from smsmon.database import PostgresUrl

    return db.reveal() if isinstance(db, PostgresUrl) else str(db)


def upgrade_under(db: Any, version: int) -> None:
    """What a newer smsmon's upgrade leaves for a writer already running to find: a schema
    version this one does not know (in place, as `browse` of a newer version upgrades)."""
    from smsmon.database import PostgresUrl

    look = connect(db)
    try:
        if isinstance(db, PostgresUrl):
            look.execute("INSERT INTO schema_versions VALUES (?, ?, ?)", (version, "2026-11-27T00:00:00Z", "a newer smsmon"))
        else:
            look.execute(f"PRAGMA user_version = {int(version)}")
    finally:
        look.close()


def nul(db: Any) -> str:
    """How a NUL character in a provider's value reads back from this store: itself from SQLite,
    U+2400 from PostgreSQL (whose text cannot hold a NUL)."""
    from smsmon.database import PostgresUrl

    return "\u2400" if isinstance(db, PostgresUrl) else "\x00"


def run_in_terminal(args: list[str], env: dict[str, str], seconds: float, *, ready: str | None = None,
                    size: tuple[int, int] = (40, 120), stop: bytes | int = b"q") -> str:
    """Run a command in a real pseudo-terminal (its own session, the terminal its controlling one),
    press `stop` (q), or send it as a signal when it is a number, once its output matches `ready`
    (or after `seconds`), and return all it printed."""
    import fcntl
    import os
    import pty
    import re
    import select
    import struct
    import subprocess
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))

    def controlling() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
                            preexec_fn=controlling)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + seconds
    pressed = None
    while True:
        ready_fds, _, _ = select.select([master], [], [], 0.1)
        if ready_fds:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break  # the terminal closed: the process ended
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
        now = time.monotonic()
        if pressed is None and (now > deadline or (ready and re.search(ready, out.decode("utf-8", "replace")))):
            if isinstance(stop, int):
                os.kill(proc.pid, stop)
            else:
                os.write(master, stop)
            pressed = now
        if pressed is not None and now > pressed + 20:
            os.killpg(proc.pid, 9)
            break
    proc.wait(10)
    os.close(master)
    return out.decode("utf-8", "replace")


def smsmon_at(commit: str, folder: Path) -> Path:
    """The `smsmon` package as it was at `commit` of this repository, extracted into `folder`
    (put it first on PYTHONPATH to run that version); pytest.skip where git or the commit is
    missing (a shallow clone)."""
    import shutil
    import subprocess
    import tarfile
    from io import BytesIO

    import pytest

    if shutil.which("git") is None:
        pytest.skip("git is not installed: the old code comes from this repository's history")
    root = Path(__file__).parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit, "smsmon"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {commit[:12]} is not in this checkout (a shallow clone?): {archive.stderr.decode()[:200]}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder
