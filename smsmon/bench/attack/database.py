"""Attacks on the database file under a running `smsmon serve`: removed, replaced, truncated while
callbacks arrive; damaged, read-only and with an impossible schema version at start. The rules:
no acknowledgement for an event that is not in the file at the path, the old write-ahead log
never applied to another file, and a clear refusal (not a traceback, not a silent start)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from smsmon.bench.attack import Context, Result
from smsmon.bench.ingest import smsmon_server
from smsmon.sim.generate import fill
from smsmon.store.reader import Reader
from smsmon.store.schema import check_integrity

RATE = 100  # callbacks a second from the sender, before and after the attack


def _callback(event_id: str) -> bytes:
    return json.dumps({"eventId": event_id, "eventType": "MESSAGE_DELIVERED",
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "message": {"uuid": event_id, "dest": "+233241234567"}}).encode()


async def _send(url: str, seconds: float, sent: list[tuple[float, str, int]]) -> None:
    """Post callbacks at RATE for `seconds`, recording (time, event id, status)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            eid = str(uuid.uuid4())
            started = time.monotonic()
            try:
                async with s.post(url + "/callbacks/zeckta", data=_callback(eid)) as r:
                    sent.append((started, eid, r.status))
            except aiohttp.ClientError:
                sent.append((started, eid, 0))
            await asyncio.sleep(max(0.0, 1 / RATE - (time.monotonic() - started)))


async def _health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url + "/healthz") as r:
        return await r.json(content_type=None)


def _keys(db: Path) -> set[str]:
    with Reader(db) as reader:
        return {e["event_key"] for e in reader.iter_events()}


def _lose_the_file(ctx: Context, how: str) -> Result:
    folder = ctx.tmp / how
    folder.mkdir()
    db, keep, other = folder / "live.db", folder / "old-inode.db", folder / "other.db"
    fill(other, messages=50, seed=3, days=1)
    other_keys = _keys(other)
    server = smsmon_server(db)
    sent: list[tuple[float, str, int]] = []
    seconds = 1.5 if ctx.quick else 4.0

    async def scenario() -> tuple[float, float | None]:
        sender = asyncio.create_task(_send(server.url, 2 * seconds, sent))
        await asyncio.sleep(seconds)
        os.link(db, keep)  # a second name for the file, to read what it holds afterwards
        attacked = time.monotonic()
        if how == "removed":
            db.unlink()
        elif how == "replaced":
            os.replace(other, db)
        else:
            os.truncate(db, 0)
        noticed = None
        while noticed is None and time.monotonic() < attacked + 5:
            if (await _health(server.url)).get("status") == "degraded":
                noticed = time.monotonic()
            else:
                await asyncio.sleep(0.05)
        await sender
        return attacked, noticed

    try:
        attacked, noticed = asyncio.run(scenario())
    finally:
        code = server.stop()
    acked = [(t, eid) for t, eid, status in sent if status == 200]
    after = [eid for t, eid in acked if noticed is not None and t > noticed]
    refused = sum(1 for _, _, status in sent if status == 503)
    lost: list[str] = []
    if how != "truncated":  # the old file (by its second name) must hold every acknowledged event
        stored = _keys(keep)
        lost = [eid for _, eid in acked if eid not in stored]
    intact = True
    if how == "replaced":  # the file now at the path: untouched, our log never applied to it
        intact = _keys(db) == other_keys and check_integrity(db)
    stale_wal = Path(f"{db}-wal").exists() and Path(f"{db}-wal").stat().st_size > 0
    ok = noticed is not None and not after and not lost and intact and not stale_wal and code == 0
    detect = f"noticed in {(noticed - attacked) * 1000:.0f} ms" if noticed else "NOT noticed within 5 s"
    return Result("database", f"database file {how} while `serve` takes {RATE} callbacks/s",
                  f"{detect}; {len(acked)} acknowledged, {len(lost)} of them lost, {len(after)} acknowledged after it was "
                  f"noticed, {refused} answered 503; " + ("the new file untouched; " if how == "replaced" else "")
                  + ("a stale -wal left at the path; " if stale_wal else "") + f"serve exited {code}",
                  ok, {"acknowledged": len(acked), "lost": len(lost), "acknowledged_after_noticed": len(after),
                       "answered_503": refused, "detect_ms": round((noticed - attacked) * 1000) if noticed else None})


def _smsmon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smsmon", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SMSMON_CONFIG": ""})


def _refused(ctx: Context, name: str, what: str, db: Path, expect: str) -> Result:
    r = _smsmon("serve", "--db", str(db), "--listen", "127.0.0.1:0")
    line = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    ok = r.returncode == 1 and expect in r.stderr and "Traceback" not in r.stderr and "internal error" not in r.stderr
    return Result("database", what, f"serve exited {r.returncode}: {line[:160]}", ok)


def _damaged(ctx: Context) -> list[Result]:
    db = ctx.tmp / "damaged.db"
    fill(db, messages=300 if ctx.quick else 3000, seed=4, days=1)
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(size // 2 - size // 2 % 2048)
        f.write(os.urandom(2048 * 8))
    results = [_refused(ctx, "damaged", "serve on a database with 8 pages of garbage in the middle", db, ".recover")]
    outputs = [_smsmon(*cmd, "--db", str(db)) for cmd in (["export", "--table", "events"], ["stats", "--filter", "since:30d"])]
    bad = [r for r in outputs if r.returncode != 0]
    ok = all("damaged" in r.stderr and "internal error" not in r.stderr for r in bad)
    results.append(Result("database", "export and a filtered stats on the damaged database",
                          f"{len(bad)} of 2 refused, each naming the damage" if ok else "an unclear error", ok))
    return results


def _impossible_version(ctx: Context) -> Result:
    db = ctx.tmp / "version.db"
    fill(db, messages=20, seed=5, days=1)
    with open(db, "r+b") as f:  # the header's user_version (bytes 60-63), as a careless tool would write it
        f.seek(60)
        f.write((-7).to_bytes(4, "big", signed=True))
    return _refused(ctx, "version", "serve on a database whose schema version is -7", db, "schema version -7")


def _read_only(ctx: Context) -> Result:
    data, mount = ctx.tmp / "ro-data", ctx.tmp / "ro"
    data.mkdir()
    mount.mkdir()
    fill(data / "ro.db", messages=50, seed=6, days=1)
    if subprocess.run(["mount", "--bind", str(data), str(mount)], capture_output=True).returncode != 0:
        return Result("database", "serve and stats on a read-only mount", "skipped: cannot mount here (needs root)", True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True, capture_output=True)
        serve = _refused(ctx, "ro", "", mount / "ro.db", "read-only file system")
        stats = _smsmon("stats", "--db", str(mount / "ro.db"))
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    ok = serve.ok and stats.returncode == 0
    return Result("database", "serve and stats on a database on a read-only mount",
                  f"{serve.outcome}; stats exited {stats.returncode}", ok)


def run(ctx: Context) -> list[Result]:
    results = [_lose_the_file(ctx, how) for how in ("removed", "replaced", "truncated")]
    results += _damaged(ctx)
    results.append(_impossible_version(ctx))
    results.append(_read_only(ctx))
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    return results
