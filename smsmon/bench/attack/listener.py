"""Attacks on the callback listener, each against a real `smsmon serve` subprocess (with a
callback token, and the open-file limit of a common machine), each reporting what was tried
and what happened, with figures:

    fuzz          bodies, content types, encodings and framings an attacker or a broken sender
                  would send: no 500 (nor any 5xx), every well-formed callback accepted and every
                  200 stored, every 400 for a body the parser refused kept as a dead letter
    expect        `Expect: 100-continue` with a huge length: 413 (or 404) before any invitation
    oversize      bodies over 64 KiB, declared, chunked and gzip-compressed: 413, memory flat
    secrets       the token in a 9,000-character request line, with control bytes, in a header:
                  not in any log line nor in the database files; /healthz tells strangers nothing
    log flood     thousands of malformed requests: the log stays a few lines a second
    connections   many idle, half-sent and slow-body connections held while real callbacks are
                  timed: the real ones all succeed, and memory stays bounded
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import random
import resource
import time
from dataclasses import dataclass
from typing import Callable

from smsmon.bench.attack import Context, Result
from smsmon.bench.attack.fuzz import fuzz
from smsmon.bench.attack.hold import hold, source
from smsmon.bench.attack.rawhttp import Answer, read_answer, request
from smsmon.bench.attack.target import Target, callback

AREA = "listener"
# What an attack may add to serve's resident memory (its database page cache grows on its own, up
# to 128 MB): 512 connections each holding 64 KB of a body added 93-122 MB (bench attack).
MEMORY_GROWTH_LIMIT_MB = 160
LOG_LINES_PER_S = 25  # what a flood may make the log write: 20 callback lines and their summary a second,
LOG_LINES_EXTRA = 20  # and each kind of warning once, with its count (and the lines of the attack before, in that second)
ATTACKER_RESERVE = 200  # this process's descriptors beyond the attacking connections


@dataclass(frozen=True)
class Plan:
    fuzz: int  # bodies
    idle: int  # idle and half-sent connections held
    slow: int  # slow-body connections held
    hold_s: float  # how long they are held while real callbacks are timed
    real_rate: int  # real callbacks a second meanwhile
    open_files: int  # serve's open-file limit, soft and hard (1,024 is a common default)
    flood: int  # malformed requests thrown at the log
    fat: int  # connections sending nearly 64 KiB of a body


FULL = Plan(fuzz=20_000, idle=1_100, slow=2_001, hold_s=20, real_rate=50, open_files=1024, flood=6_000, fat=1_000)
QUICK = Plan(fuzz=1_500, idle=300, slow=300, hold_s=5, real_rate=40, open_files=512, flood=1_000, fat=400)


def run(ctx: Context) -> list[Result]:
    plan = QUICK if ctx.quick else FULL
    idle, slow = _affordable(plan, ctx.say)
    results: list[Result] = []

    t = Target(ctx.tmp / "requests", plan.open_files)
    try:
        results.append(asyncio.run(fuzz(t, plan.fuzz, 9, ctx.say)))
        results.append(asyncio.run(expect(t)))
        results.append(asyncio.run(oversize(t)))
        results.append(asyncio.run(fat_bodies(t, plan.fat)))
        statuses = asyncio.run(leak_attempts(t))
        health_ok, health_text = asyncio.run(health_exposure(t))
        flood_s, lines_since = asyncio.run(flood(t, plan.flood))
        _, peak = t.memory_mb()
    finally:
        code = t.stop()
    log = t.log_text()
    found = leaks(t)
    odd = {k: v for k, v in statuses.items() if not v or v >= 500}
    results.append(Result(
        AREA, f"the token in {len(statuses)} hostile requests: a 9,000-character query, path and header, control bytes "
              "and terminal escapes in the request line and headers, HTTP/0.9, then every log line and the database "
              "files searched for it (whole or either half)",
        f"found {found['log']} times in {len(log.splitlines()):,} log lines, {found['database files']} times in the "
        f"database files; escape characters in the log: {log.count(chr(27))}; tracebacks: {log.count('Traceback')}; "
        f"answers {sorted(set(statuses.values()))}",
        not any(found.values()) and chr(27) not in log and "Traceback" not in log and not odd,
        {"hits": found, "answers": statuses, "log_lines": len(log.splitlines())}))
    results.append(Result(AREA, "/healthz asked by a stranger (no token) and by the owner (/healthz/<token>)", health_text,
                          health_ok, {}))
    lines = lines_since(log)
    results.append(Result(
        AREA, f"log flood: {plan.flood:,} malformed requests (not HTTP, wrong token, not JSON, not gzip), 16 at a time",
        f"{plan.flood:,} requests in {flood_s:.1f} s wrote {lines} log lines ({lines / (flood_s + 1):.1f} a second); "
        f"serve's peak RSS over all these attacks {peak:.0f} MB; exit code {code} on SIGTERM",
        lines <= LOG_LINES_PER_S * math.ceil(flood_s + 1) + LOG_LINES_EXTRA and code == 0,
        {"requests": plan.flood, "seconds": round(flood_s, 1), "log_lines": lines, "peak_rss_mb": round(peak, 1),
         "exit_code": code}))

    t = Target(ctx.tmp / "connections", plan.open_files)
    try:
        f = asyncio.run(hold(t, idle=idle, slow=slow, seconds=plan.hold_s, rate=plan.real_rate, say=ctx.say))
    finally:
        code = t.stop()
    log = t.log_text()
    accept_lines = sum("accept" in line for line in log.splitlines())
    real, before, server = f["real"], f["before"], f["server"] or {}
    ok = (real["ok"] == real["sent"] == real["stored"] and f["rss_growth_mb"] < MEMORY_GROWTH_LIMIT_MB and code == 0
          and accept_lines <= 5 and "Traceback" not in log)
    results.append(Result(
        AREA, f"{idle:,} idle and half-sent and {slow:,} slow-body connections (a byte a second of 1,000), reopened as "
              f"soon as closed, held {plan.hold_s:g} s against serve with {plan.open_files:,} open files, while "
              f"{plan.real_rate} real callbacks a second are timed",
        f"serve held at most {server.get('most_at_once', '?')} connections (cap {server.get('cap', '?')}), closed "
        f"{server.get('closed_to_make_room', '?')} to make room and {server.get('closed_idle', '?')} idle too long, refused "
        f"{server.get('refused', '?')}; slow senders cut "
        f"after {f['slow_cut_after_s']} s (median); real callbacks: {real['ok']}/{real['sent']} answered 200, "
        f"{real['stored']} stored, p50 {real['p50_ms']} ms, p99 {real['p99_ms']} ms, max {real['max_ms']} ms "
        f"(before the attack p50 {before['p50_ms']} ms, p99 {before['p99_ms']} ms); peak RSS {f['peak_rss_mb']:.0f} MB "
        f"(+{f['rss_growth_mb']:.0f} MB); "
        f"log lines about accept: {accept_lines}; exit code {code} on SIGTERM",
        ok, dict(f, accept_log_lines=accept_lines, exit_code=code)))
    return results


def _affordable(plan: Plan, say: Callable[[str], None]) -> tuple[int, int]:
    """The attacking connections this process can open: all of the plan's where the open-file
    limit allows (raised to its hard limit first), else fewer, in proportion, and it says so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = plan.idle + plan.slow + plan.real_rate * 2 + ATTACKER_RESERVE
    if soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft >= need:
        return plan.idle, plan.slow
    share = (soft - plan.real_rate * 2 - ATTACKER_RESERVE) / (plan.idle + plan.slow)
    idle, slow = int(plan.idle * share), int(plan.slow * share)
    say(f"    this machine's open-file limit ({hard:,}) allows {idle:,} idle and {slow:,} slow connections, not "
        f"{plan.idle:,} and {plan.slow:,}")
    return idle, slow


# ── expect, oversize ────────────────────────────────────────────────────────────
async def expect(t: Target) -> Result:
    """Headers only, then whatever comes back before any body is sent."""

    async def first_answer(path: str, length: int, expect_value: str = "100-continue") -> Answer:
        reader, writer = await asyncio.open_connection(t.host, t.port)
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nExpect: {expect_value}\r\n\r\n"
                         .encode())
            async with asyncio.timeout(5):
                first = await read_answer(reader, stop_at_interim=True)
                if first.interim:  # invited: send the body, then read the final answer
                    writer.write(json.dumps(callback(random.Random(length))).encode().ljust(length))
                    final = await read_answer(reader)
                    final.interim = first.interim
                    return final
                return first
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            return Answer(0, error=type(exc).__name__)
        finally:
            writer.close()

    huge = await first_answer(t.path, 10_000_000)
    wrong = await first_answer("/callbacks/zeckta/not-the-token", 10_000_000)
    odd = await first_answer(t.path, 500, "200-ok")
    body_len = len(json.dumps(callback(random.Random(600)))) + 10
    fine = await first_answer(t.path, body_len)

    def show(a: Answer) -> str:
        return ("100 Continue, then " if a.interim else "") + str(a.status or a.error)

    ok = (huge.status, huge.interim, wrong.status, wrong.interim, odd.status, odd.interim, fine.interim, fine.status) == \
        (413, [], 404, [], 417, [], [100], 200)
    return Result(AREA, "Expect: 100-continue with a 10 MB Content-Length (right and wrong token), an unknown Expect, "
                        "and a real callback that waits for the invitation",
                  f"10 MB: {show(huge)}; wrong token: {show(wrong)}; unknown Expect: {show(odd)}; real callback: {show(fine)}",
                  ok, {"huge": show(huge), "wrong_token": show(wrong), "unknown_expect": show(odd), "real": show(fine)})


async def oversize(t: Target) -> Result:
    big = json.dumps(callback(random.Random(1), padding="p" * (1 << 20))).encode()
    bomb = gzip.compress(b" " * (200 << 20), 9)  # 200 MB of spaces in about 200 KB; the 64 KiB limit applies after decoding
    small_bomb = gzip.compress(b"[" + b" " * (64 << 20), 9)[:60_000]  # under 64 KiB on the wire, cut short
    before, _ = t.memory_mb()
    answers = {
        "1 MB, declared": await t.send(request("POST", t.path, big)),
        "1 MB, chunked": await t.send(request("POST", t.path, big, chunked=True)),
        "gzip of 200 MB (200 KB)": await t.send(request("POST", t.path, bomb, headers={"Content-Encoding": "gzip"})),
        "gzip of 64 MB cut to 60 KB": await t.send(request("POST", t.path, small_bomb, headers={"Content-Encoding": "gzip"})),
    }
    after, peak = t.memory_mb()
    shown = {k: a.status or a.error for k, a in answers.items()}
    ok = all(a.status in (413, 400) for a in answers.values()) and answers["1 MB, declared"].status == 413 \
        and after - before < 50
    return Result(AREA, "bodies over 64 KiB: 1 MB declared, 1 MB chunked, a gzip bomb of 200 MB, a cut one under 64 KiB",
                  "; ".join(f"{k}: {v}" for k, v in shown.items()) + f"; resident memory {before:.0f} -> {after:.0f} MB",
                  ok, {"answers": shown, "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1), "peak_mb": round(peak, 1)})


async def fat_bodies(t: Target, n: int) -> Result:
    """n connections each sending 64,000 bytes of a 65,000-byte body, then nothing: the most
    memory a stranger can make serve hold (every held connection with a body buffered)."""
    before, _ = t.memory_mb()
    writers: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> None:
        try:
            async with gate:
                _, writer = await asyncio.open_connection(t.host, t.port, local_addr=(source(i), 0))
            writer.write(f"POST {t.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 65000\r\n\r\n".encode() + b"x" * 64_000)
            await writer.drain()
            writers.append(writer)
        except OSError:
            pass  # closed to make room before it had sent it all

    await asyncio.gather(*(one(i) for i in range(n)))
    held, _ = t.memory_mb()
    real = await t.send(request("POST", t.path, json.dumps(callback(random.Random(n))).encode()))
    for w in writers:
        w.close()
    connections = (await t.health()).get("connections") or {}
    return Result(AREA, f"{n:,} connections each sending 64,000 bytes of a 65,000-byte body, then nothing",
                  f"serve held at most {connections.get('most_at_once')} (cap {connections.get('cap')}); resident memory "
                  f"{before:.0f} MB before, {held:.0f} MB with them held (+{held - before:.0f} MB); a real callback "
                  f"meanwhile: {real.status or real.error}",
                  held - before < MEMORY_GROWTH_LIMIT_MB and real.status == 200,
                  {"connections": n, "rss_before_mb": round(before, 1), "rss_held_mb": round(held, 1), "server": connections,
                   "real": real.status})


# ── secrets ─────────────────────────────────────────────────────────────────────
async def leak_attempts(t: Target) -> dict[str, int]:
    """Requests that carry the token where aiohttp or smsmon might write it down; their statuses."""
    tok = t.token
    pad = "a" * 9000
    raw = [
        ("9,000-character query with the token", f"POST {t.path}?token={tok}&pad={pad} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()),
        ("9,000-character path after the token", f"POST {t.path}{pad} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()),
        ("control bytes after the token", f"POST {t.path}\x01\x1b[31m\x07 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()),
        ("control bytes in the method", f"P\x1bST {t.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
        ("token in a 9,000-character header", f"POST {t.path} HTTP/1.1\r\nHost: x\r\nX-Pad: {tok}{pad}\r\nContent-Length: 0\r\n\r\n".encode()),
        ("token and escapes in a header", f"POST {t.path} HTTP/1.1\r\nHost: x\r\nX-Evil: {tok}\x1b]0;owned\x07\r\nContent-Length: 2\r\n\r\n{{}}".encode()),
        ("bad body on a query with the token", request("POST", f"{t.path}?token={tok}", b"junk")),
        ("real callback on a query with the token", request("POST", f"{t.path}?token={tok}", json.dumps(callback(random.Random(7))).encode())),
        ("token with a NUL", request("POST", f"{t.path}%00", b"{}")),
        ("token, then a dot segment", request("POST", f"{t.path}/../{tok}", b"{}")),
        ("HTTP/0.9 with the token", f"GET {t.path}\r\n\r\n".encode()),
        ("wrong token on /healthz", request("GET", f"/healthz/{tok}x")),
    ]
    out = {}
    for name, data in raw:
        a = await t.send(data)
        out[name] = a.status
    return out


def leaks(t: Target) -> dict[str, int]:
    """Occurrences of the token (whole, or either half) in the log and in the database files."""
    tok = t.token.encode()
    parts = [tok, tok[: len(tok) // 2], tok[len(tok) // 2 :]]
    found = {"log": sum(t.log.read_bytes().count(p) for p in parts) if t.log.exists() else 0}
    db_bytes = b"".join(p.read_bytes() for p in t.db.parent.glob(t.db.name + "*"))
    found["database files"] = sum(db_bytes.count(p) for p in parts)
    return found


async def health_exposure(t: Target) -> tuple[bool, str]:
    stranger = await t.health(with_token=False)
    owner = await t.health(with_token=True)
    ok = set(stranger) == {"status"} and "database" in owner
    return ok, f"/healthz without the token: {json.dumps(stranger)}; with it: {len(owner)} fields (database, store, counts)"


# ── the log under a flood ──────────────────────────────────────────────────────
async def flood(t: Target, n: int) -> tuple[float, Callable[[str], int]]:
    """n malformed requests of four kinds, 16 at a time; returns the seconds it took and a
    counter of the log lines written from its start (to call once serve has stopped)."""
    kinds = [f"GET /\x00{'x' * 20} HTTP/1.1\r\n\r\n".encode(),  # not HTTP: aiohttp's own error
             request("POST", "/callbacks/zeckta/wrong-token", b"{}"),  # 404
             request("POST", t.path, b"{not json"),  # 400 + dead letter
             request("POST", t.path, b"plain", headers={"Content-Encoding": "gzip"})]  # 400, not decodable
    started_wall = time.strftime("%H:%M:%S")
    started = time.perf_counter()
    jobs = iter(range(n))

    async def worker() -> None:
        for i in jobs:
            await t.send(kinds[i % len(kinds)], timeout=10)

    await asyncio.gather(*(worker() for _ in range(16)))
    seconds = time.perf_counter() - started

    def lines_since(text: str) -> int:
        lines = text.splitlines()
        first = next((i for i, line in enumerate(lines) if line[:8] >= started_wall and line[2:3] == ":"), len(lines))
        return sum(1 for line in lines[first:] if "stopping:" not in line and "stopped:" not in line)

    return seconds, lines_since
