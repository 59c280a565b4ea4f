"""`smsmon tail` (issue 13): a real subprocess follows the commits of another process (the
writer in this test), one line each or NDJSON; it exits 0 on Ctrl+C, on SIGTERM and when the
reader of its pipe goes away (`smsmon tail --json | head -1`), without a word on stderr. On
SQLite and on PostgreSQL (where commits are announced, LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from smsmon.store.backend import open_writer
from tests.helpers import arg, zevent

SMSMON = [sys.executable, "-m", "smsmon"]


async def start_tail(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*SMSMON, "tail", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)


async def lines(proc: asyncio.subprocess.Process, n: int, timeout: float = 15.0) -> list[str]:
    """The next `n` lines it prints, each within `timeout` seconds (else what it said on stderr)."""
    assert proc.stdout is not None and proc.stderr is not None
    out = []
    for _ in range(n):
        try:
            out.append((await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().rstrip("\n"))
        except TimeoutError:
            proc.kill()
            raise AssertionError(f"no line within {timeout} s; stderr: {(await proc.stderr.read()).decode()}") from None
    return out


@pytest.fixture
def db(make_db: Callable[[], Any]) -> Any:
    """A database of the test's store (SQLite, PostgreSQL) with two events in it."""
    db = make_db()
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="old-1", event_id="o1"), zevent("MESSAGE_FAILED", uuid="old-2", event_id="o2")])
    return db


async def test_it_follows_another_process_as_ndjson_and_stops_cleanly_on_ctrl_c(db: Any) -> None:
    proc = await start_tail("--json", "-n", "1", "--db", arg(db))
    first = json.loads((await lines(proc, 1))[0])
    assert first["event_key"] == "o2" and first["raw"]["message"]["uuid"] == "old-2"  # raw is an object: jq .raw.message
    with open_writer(db) as w:  # another writer, committing while tail follows
        for i in range(3):
            w.apply([zevent("MESSAGE_DELIVERED", uuid=f"new-{i}", event_id=f"n{i}")])
    got = [json.loads(line) for line in await lines(proc, 3)]
    assert [g["event_key"] for g in got] == ["n0", "n1", "n2"]
    assert {g["status"] for g in got} == {"DELIVERED"} and all(g["id"] > first["id"] for g in got)
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert await proc.stderr.read() == b""  # type: ignore[union-attr]


async def test_text_lines_a_filter_and_sigterm(db: Any) -> None:
    proc = await start_tail("--filter", "status:not_delivered", "--db", arg(db))
    (old,) = await lines(proc, 1)  # of the last ten events, the one of a message not delivered
    assert "FAILED" in old and "zeckta:old-2" in old and "callback" in old
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_DELIVERED", uuid="fine", event_id="f1"),
                 zevent("MESSAGE_REJECTED", uuid="bad", event_id="b1")])
    (line,) = await lines(proc, 1)
    assert "REJECTED" in line and "zeckta:bad" in line
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    rest = await proc.stdout.read()  # type: ignore[union-attr]
    assert b"fine" not in rest


def test_a_closed_pipe_ends_it_at_once_with_exit_0(db: Any) -> None:
    """`head -1` takes one line and goes; tail notices without waiting for another event."""
    command = f"set -o pipefail; {shlex.join(SMSMON)} tail --json --db {shlex.quote(arg(db))} | head -1"
    started = time.monotonic()
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (0, "")
    assert json.loads(r.stdout)["event_key"] == "o1"
    assert time.monotonic() - started < 10  # start-up and one look at the pipe, not "until the next event"


def test_no_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    r = subprocess.run([*SMSMON, "tail", "--db", str(tmp_path / "none.db")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr.startswith("error: no database at") and len(r.stderr.splitlines()) == 1
