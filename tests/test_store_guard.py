"""The database file under a running writer (issue 9, items 6-9 and 21): removed, replaced,
truncated, damaged, read-only, with an impossible schema version; dead letters bounded by bytes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest

from smsmon.errors import DatabaseGone, NotSmsmonDatabase, StoreError
from smsmon.ingest.committer import Committer
from smsmon.ingest.listener import Listener, ListenerConfig
from smsmon.sim.generate import fill
from smsmon.store.reader import Reader
from smsmon.store.schema import check_integrity
from smsmon.store.writer import DeadLetter, Writer
from tests.helpers import callback, rows, zevent


@asynccontextmanager
async def serving(db: Path) -> AsyncIterator[tuple[Committer, str]]:
    committer = Committer(db)
    committer.start()
    listener = Listener(committer, ListenerConfig(host="127.0.0.1", port=0))
    url = await listener.start()
    try:
        yield committer, url
    finally:
        await listener.stop()
        await asyncio.to_thread(committer.stop)


async def post(session: aiohttp.ClientSession, url: str, event_id: str) -> int:
    async with session.post(url + "/callbacks/zeckta", data=json.dumps(callback(event_id=event_id, uuid=event_id))) as r:
        return r.status


async def until(condition: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def event_keys(db: Path) -> set[str]:
    return {r[0] for r in rows(db, "SELECT event_key FROM events")}


# ── removed, replaced, truncated under a running writer ─────────────────────────
@pytest.mark.parametrize("how", ["removed", "replaced", "truncated"])
async def test_losing_the_file_stops_acknowledgements_and_never_writes_elsewhere(tmp_path, how) -> None:
    db = tmp_path / "live.db"
    other = tmp_path / "other.db"
    with Writer(other) as w:
        w.apply([zevent(uuid="theirs", event_id="theirs")])
    keep = tmp_path / "kept-inode.db"  # a second name for the original file, to read it after
    async with serving(db) as (committer, url), aiohttp.ClientSession() as s:
        assert await post(s, url, "before") == 200
        os.link(db, keep)
        if how == "removed":
            db.unlink()
        elif how == "replaced":
            os.replace(other, db)  # `mv other.db live.db`
        else:
            os.truncate(db, 0)
        await until(lambda: committer.gone is not None)  # noticed when idle, within a second or so
        statuses = [await post(s, url, f"after-{i}") for i in range(5)]
        async with s.get(url + "/healthz") as r:
            health = await r.json()
    assert statuses == [503] * 5  # nothing acknowledged once the file is not the one being written
    assert health["status"] == "degraded" and how in health["store"]
    if how != "truncated":  # what was acknowledged is in the file that stood at the path, nothing after
        assert "before" in event_keys(keep) and not any(k.startswith("after") for k in event_keys(keep))
    if how == "replaced":  # the file now at the path is untouched: our write-ahead log never reached it
        assert event_keys(db) == {"theirs"}
        assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert not Path(f"{db}-wal").exists()  # whatever file is at the path next never gets our log applied


async def test_a_replacement_between_two_commits_is_not_acknowledged(tmp_path) -> None:
    """Checked before each commit too, not only once a second: a busy writer notices at once."""
    db = tmp_path / "busy.db"
    w = Writer(db)
    w.apply([zevent(uuid="a", event_id="a")])
    shutil.copy(db, tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", db)  # another file at the path, between two commits
    with pytest.raises(DatabaseGone, match="replaced"):
        w.apply([zevent(uuid="b", event_id="b")])
    w.close()
    assert "b" not in event_keys(db)


# ── damaged, foreign and impossible files ────────────────────────────────────────
def _damage(db: Path) -> None:
    """Overwrite pages in the middle of the file with garbage, as a failing disk would."""
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(size // 2 - size // 2 % 2048)
        f.write(os.urandom(2048 * 8))


@pytest.fixture
def damaged(tmp_path) -> Path:
    db = tmp_path / "damaged.db"
    fill(db, messages=600, seed=4, days=1)
    _damage(db)
    return db


def smsmon(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smsmon", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "SMSMON_CONFIG": ""})


def test_a_damaged_database_is_refused_at_start_with_what_to_do(damaged) -> None:
    with pytest.raises(NotSmsmonDatabase, match=r"damaged.*\.recover"):
        check_integrity(damaged)
    r = smsmon("serve", "--db", str(damaged), "--listen", "127.0.0.1:0")
    assert r.returncode == 1 and "damaged" in r.stderr and ".recover" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1


def test_readers_name_damage_instead_of_an_internal_error(damaged) -> None:
    outputs = [smsmon(*cmd, "--db", str(damaged)) for cmd in (["export", "--table", "events"], ["stats", "--filter", "since:30d"])]
    with Reader(damaged) as reader:
        mid = next(iter(reader.page(limit=1)))["id"]
    outputs.append(smsmon("show", mid, "--db", str(damaged)))
    damaged_ones = [r for r in outputs if r.returncode != 0]
    assert damaged_ones, "reading the damaged pages must fail somewhere"
    for r in damaged_ones:
        assert "damaged" in r.stderr and "internal error" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("value", [-3, -2147483648])
def test_an_impossible_schema_version_is_refused_by_readers_and_writers(tmp_path, value) -> None:
    db = tmp_path / "odd.db"
    Writer(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={value}")
    conn.close()
    with pytest.raises(NotSmsmonDatabase, match=f"schema version {value}"):
        Writer(db)
    with pytest.raises(NotSmsmonDatabase, match=f"schema version {value}"):
        Reader(db).open()
    for cmd in (["serve", "--listen", "127.0.0.1:0"], ["stats"]):
        r = smsmon(*cmd, "--db", str(db))
        assert r.returncode == 1 and f"schema version {value}" in r.stderr and "internal error" not in r.stderr


def test_another_programs_sqlite_file_is_not_taken_over(tmp_path) -> None:
    db = tmp_path / "someone-elses.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(NotSmsmonDatabase, match="other tables"):
        Writer(db)
    assert rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("notes",)]


# ── read-only ────────────────────────────────────────────────────────────────────
@contextmanager
def read_only_mount(source: Path, target: Path) -> Iterator[Path]:
    """`source` seen read-only at `target` (a bind mount: needs root and mount)."""
    target.mkdir()
    try:
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a read-only mount here ({exc}): needs root and mount")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True, capture_output=True)
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False, capture_output=True)


def test_a_database_on_a_read_only_mount_is_read_and_never_served(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    fill(data / "ro.db", messages=200, seed=5, days=1)  # closed cleanly: no -wal left
    with read_only_mount(data, tmp_path / "ro") as ro:
        db = ro / "ro.db"
        stats = smsmon("stats", "--json", "--db", str(db))
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["messages"] == 200
        export = smsmon("export", "--db", str(db))
        assert export.returncode == 0 and export.stdout.count("\n") == 201
        serve = smsmon("serve", "--db", str(db), "--listen", "127.0.0.1:0")
        assert serve.returncode == 1 and "read-only file system" in serve.stderr and serve.stderr.count("\n") == 1
        with pytest.raises(StoreError, match="read-only"):
            Writer(db)


# ── dead letters bounded by bytes ────────────────────────────────────────────────
def test_dead_letters_are_bounded_by_bytes_as_well_as_rows(tmp_path) -> None:
    with Writer(tmp_path / "dl.db", dead_letter_bytes=300_000) as w:
        for i in range(40):
            w.apply([], dead_letters=[DeadLetter("2026-11-23T10:00:00.000000Z", "127.0.0.1", "/callbacks/zeckta",
                                                 f"invalid_json: {i}", b"x" * 64 * 1024)])
        kept = rows(w.conn, "SELECT reason, size FROM dead_letters ORDER BY id")
    assert sum(size for _, size in kept) <= 300_000
    assert kept[-1][0] == "invalid_json: 39" and len(kept) == 300_000 // (64 * 1024)  # the newest, as many as fit
