"""`smsmon bench attack --area provider`: the pollers against providers that misbehave.

Each attack starts the fake providers (smsmon.sim.servers) on loopback, tells them to misbehave
in one way, and runs the real `smsmon poll --once --json` against them in a subprocess, whose
wall time and peak RSS are measured. One attack runs `smsmon serve` with a live Eazita poller
through a series of misbehaviours, one after the other. The rules checked:

- every failure is classified (a code `smsmon explain` knows), never "internal error";
- a row that cannot be read is skipped and counted, the rest of the answer stored;
- a request ends within its timeout, however slowly the provider drips;
- memory and time stay bounded for a huge answer and for a gzip bomb;
- a Retry-After is capped at the backoff ceiling; a redirect is named, not followed;
- no credential, in any encoding, reaches stdout, stderr, poll_runs or the database file;
- the live poller survives everything and recovers; it stops cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, unquote_plus

from smsmon import catalogue
from smsmon.bench.attack import Context, Result
from smsmon.bench.attack.measure import SUBPROCESS_TIMEOUT_S, Run, command, peak_mb, spawn
from smsmon.sim.servers import FakeEazita, FakeZeckta

AREA = "provider"
# Credentials with every character that encodes differently: a space, @, /, &, non-ASCII.
KEY, PASSWORD, BEARER = "atk-Key-7Qx9Lm2Pz4", "p@ss w/rd&Mör€-9", "zk-Bearer-5Tq8Wn3Rv6"
HUGE_ROWS, HUGE_ROWS_QUICK = 145_000, 10_000  # 145,000 rows is the 30 MB answer
BOMB, BOMB_QUICK = 1 << 30, 256 << 20  # inflated sizes of the gzip bombs
# Bounds the figures must stay within, measured on the project's 2-core machine. `smsmon poll`
# starts at 54 MB; a gzip bomb now peaks at 89 MB (it was 182 MB). The 145,000-row answer peaks
# at 250 MB (it was 596 MB): 110 MB for the answer and Python, the rest SQLite's page cache,
# which grows with the 160 MB database it writes up to 128 MB a connection (store.schema.CACHE_KIB).
MAX_RSS_MB = 150
MAX_HUGE_RSS_MB = 320
MAX_HUGE_SECONDS = 60.0  # measured 20 - 30 s (the writer storing 145,000 new messages), as before
DRIP_TIMEOUT_S = 3
DRIP_SLACK_S = 4.0  # process start-up and shutdown around the 3 s request
GOOD = {"status": "DELIVERED", "price": "0.003", "network": "Zong", "country_code": "92", "error_code": "0",
        "reference": None}


def spellings(text: str) -> set[str]:
    """The text lower-cased, and again with its %-escapes (once or twice, + as a space or not)
    and JSON escapes undone: a credential hidden in any mixture of them shows in one."""
    json_undone = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text).replace("\\/", "/")
    out = set()
    for t in (text, json_undone):
        once, once_plus = unquote(t), unquote_plus(t)
        out |= {t, once, unquote(once), once_plus, unquote_plus(once_plus)}
    return {t.lower() for t in out}


def leaks(text: str) -> list[str]:
    """Which credentials (named, never shown) appear in the text, in any spelling."""
    forms = spellings(text)
    return [name for name, secret in (("eazita key", KEY), ("eazita password", PASSWORD), ("zeckta key", BEARER))
            if any(secret.lower() in f for f in forms)]


def leaks_in_files(paths: list[Path]) -> list[str]:
    found: set[str] = set()
    step, overlap = 4 << 20, 512
    for p in paths:
        data = p.read_bytes()
        for start in range(0, len(data), step):
            found |= set(leaks(data[start : start + step + overlap].decode("utf-8", "replace")))
    return sorted(found)


def poll_runs(db: Path) -> list[dict[str, Any]]:
    """The database's poll_runs rows, oldest first (none if there is no database yet)."""
    from smsmon.errors import StoreError
    from smsmon.store.reader import Reader

    if not db.exists():
        return []
    try:
        with Reader(db) as reader:
            return list(reversed(reader.poll_runs(limit=100_000)))
    except StoreError:
        return []


def stored_ids(db: Path) -> set[str]:
    from smsmon.store.reader import Reader

    with Reader(db) as reader:
        return {m["provider_message_id"] for m in reader.iter_messages()}


def karachi(when: float) -> str:
    from smsmon.timeutil import UTC, zone

    return datetime.fromtimestamp(when, UTC).astimezone(zone("Asia/Karachi")).strftime("%Y/%m/%d %H:%M:%S")


def good_row(message_id: int, when: str) -> dict[str, Any]:
    return dict(GOOD, message_id=message_id, done_date=when, sent_date=when)


def impossible_dates(when: str) -> list[dict[str, Any]]:
    """Rows with dates no clock shows, between two good rows."""
    dates = ["0001/01/01 00:00:00", "9999/12/31 23:59:59", "2026/02/30 10:00:00", "0000/00/00 00:00:00",
             "1900/13/45 99:99:99", "-1/01/01 00:00:00", "\u0660\u0661/01/01 00:00:00"]
    return [good_row(1, when)] + [dict(good_row(10 + i, when), done_date=d) for i, d in enumerate(dates)] + [good_row(2, when)]


Check = Callable[["Run", dict[str, Any], Path, dict[str, str]], list[str]]  # (run, outcome, db, env) -> problems


@dataclass
class Attack:
    name: str  # what is tried, in a line
    provider: str
    inject: tuple[str, Any] | None
    expect: str | None  # the failure code, or None for a poll that succeeds
    env: dict[str, str] = field(default_factory=dict)
    check: Check | None = None  # more rules -> problems
    quick: bool = True
    echo: bool = False
    max_rss: float = MAX_RSS_MB


def _huge_check(n: int) -> Check:
    def check(run: Run, o: dict[str, Any], db: Path, env: dict[str, str]) -> list[str]:
        problems = []
        if (o.get("rows_seen"), o.get("new_events")) != (n, n):
            problems.append(f"{o.get('rows_seen')} rows seen, {o.get('new_events')} stored, of {n}")
        if run.seconds > MAX_HUGE_SECONDS:
            problems.append(f"took {run.seconds:.1f} s (bound {MAX_HUGE_SECONDS:g} s)")
        return problems
    return check


def _dates_check(run: Run, o: dict[str, Any], db: Path, env: dict[str, str]) -> list[str]:
    stored = stored_ids(db)
    problems = [] if {"1", "2"} <= stored else [f"the good rows around the bad ones were not all stored ({sorted(stored)})"]
    if not o.get("bad_rows"):
        problems.append("no row was counted as bad")
    if o.get("new_events", 0) + o.get("bad_rows", 0) != o.get("rows_seen"):
        problems.append(f"{o.get('new_events')} stored + {o.get('bad_rows')} bad != {o.get('rows_seen')} seen")
    stats = spawn(["stats", "--json", "--db", str(db)], env)
    if stats.code != 0:
        problems.append(f"`smsmon stats` on the result failed: {stats.stderr.strip()[-200:]}")
    return problems


def _one_bad_row(run: Run, o: dict[str, Any], db: Path, env: dict[str, str]) -> list[str]:
    return [] if (o.get("bad_rows"), o.get("new_events")) == (1, 1) else ["the bad row was not skipped alone"]


def _names(words: str) -> Check:
    def check(run: Run, o: dict[str, Any], db: Path, env: dict[str, str]) -> list[str]:
        return [] if words in (o.get("error") or "") else [f"the error does not say {words!r}: {o.get('error')!r}"]
    return check


def _retry_check(run: Run, o: dict[str, Any], db: Path, env: dict[str, str]) -> list[str]:
    from smsmon.ingest.poller import MAX_BACKOFF_S

    ra = o.get("retry_after")
    return [] if ra is not None and ra <= MAX_BACKOFF_S else [f"Retry-After kept as {ra} s (ceiling {MAX_BACKOFF_S:g} s)"]


def _drip_check(run: Run, o: dict[str, Any], db: Path, env: dict[str, str]) -> list[str]:
    bound = DRIP_TIMEOUT_S + DRIP_SLACK_S
    return [] if run.seconds <= bound else [f"ran {run.seconds:.1f} s with a {DRIP_TIMEOUT_S} s timeout (bound {bound:g} s)"]


def attacks(quick: bool) -> list[Attack]:
    huge = HUGE_ROWS_QUICK if quick else HUGE_ROWS
    bomb = BOMB_QUICK if quick else BOMB
    now = karachi(time.time() - 60)
    found = [
        Attack("Eazita rows with impossible dates (0001/01/01, 9999/12/31, Feb 30, month 13, Arabic digits) among good rows",
               "eazita", ("rows", impossible_dates(now)), None, check=_dates_check),
        Attack("an answer that says gzip and is not", "eazita", ("bad_gzip", None), "poll_undecodable"),
        Attack(f"a gzip bomb ({bomb >> 20} MiB of JSON once inflated, {len_bomb(bomb) >> 10} KiB on the wire)", "eazita",
               ("gzip_bomb", bomb), "poll_too_large"),
        Attack(f"a {huge:,}-row answer ({huge * 205 / 1e6:.0f} MB)", "eazita", ("big", huge), None, check=_huge_check(huge),
               max_rss=MAX_HUGE_RSS_MB),
        Attack(f"one byte a second, with SMSMON_EAZITA_TIMEOUT={DRIP_TIMEOUT_S}s", "eazita", ("drip", 60), "poll_timeout",
               env={"SMSMON_EAZITA_TIMEOUT": f"{DRIP_TIMEOUT_S}s"}, check=_drip_check),
        Attack("429 with Retry-After: 1e12", "eazita", ("http", (429, "1e12")), "poll_rate_limited", check=_retry_check,
               quick=False),  # quick: the live poller meets it too
        Attack("a redirect to another host (its URL repeats the credentials)", "eazita",
               ("redirect", f"https://elsewhere.example.net/sms?api={KEY}&pass={PASSWORD}"), "poll_redirect",
               check=_names("elsewhere.example.net")),
        Attack("random bytes as JSON", "eazita", ("body", (200, "application/json", bytes(range(256)) * 4)), "poll_invalid_json",
               quick=False),  # quick: the live poller meets garbage too
        Attack("JSON of the wrong shape (`data` an object)", "eazita",
               ("body", (200, "application/json", b'{"code": 1, "data": {"rows": 3}}')), "poll_bad_shape", quick=False),
        Attack("invalid UTF-8 in one row's string, a good row after it", "eazita",
               ("body", (200, "application/json", b'{"code": 1, "data": [{"message_id": 1, "status": "\xff\xfe"}, '
                         + json.dumps(good_row(2, now)).encode() + b"]}")), None, check=_one_bad_row, quick=False),
        Attack("invalid UTF-8 in an error envelope", "eazita",
               ("body", (200, "application/json", b'{"code": -6, "error": "\xff\xfe"}')), "poll_invalid_json", quick=False),
        Attack("an HTML maintenance page", "eazita", ("html", None), "poll_html_body", quick=False),
        Attack("the credentials echoed in every encoding inside report rows", "eazita", ("echo", None), None, echo=True),
        Attack("the credentials echoed in every encoding in an error envelope", "eazita", ("api_error", -6), "poll_api_error",
               echo=True),
        Attack("the Status API echoing the bearer key in every encoding in a good answer", "zeckta", ("echo", None), None),
        Attack("the Status API redirecting", "zeckta", ("redirect", "https://moved.example.org/v1"), "poll_redirect",
               check=_names("moved.example.org"), quick=False),
        Attack("the Status API answering a gzip bomb", "zeckta", ("gzip_bomb", BOMB_QUICK), "poll_too_large", quick=False),
    ]
    return [a for a in found if a.quick or not quick]


def len_bomb(size: int) -> int:
    from smsmon.sim.servers import gzip_bomb

    return len(gzip_bomb(size))


def base_env(tmp: Path) -> dict[str, str]:
    """The environment of every subprocess: no SMSMON_* of the caller's, an empty config file."""
    config = tmp / "empty.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSMON_")}
    env.update(SMSMON_CONFIG=str(config), SMSMON_EAZITA_API_KEY=KEY, SMSMON_EAZITA_PASSWORD=PASSWORD,
               SMSMON_ZECKTA_API_KEY=BEARER, SMSMON_EAZITA_TIMEOUT="20s", SMSMON_ZECKTA_TIMEOUT="20s")
    return env


def seed_zeckta(db: Path, uuid: str) -> None:
    """An open Zeckta message, silent for 30 minutes: the Status API poller asks about it."""
    from smsmon.providers import zeckta
    from smsmon.store.writer import Writer
    from smsmon.timeutil import now_utc

    at = (now_utc() - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cb = {"eventId": f"seed-{uuid}", "eventType": "MESSAGE_SENT", "timestamp": at, "message": {"uuid": uuid, "dest": "+233241234567"}}
    with Writer(db) as w:
        w.apply([zeckta.callback_from_object(cb, received_at=now_utc(), source="import")])


async def one(ctx: Context, base: dict[str, str], attack: Attack, index: int, texts: list[str]) -> Result:
    db = ctx.tmp / f"{index:02d}-{attack.provider}.db"
    ez = FakeEazita(KEY, PASSWORD, echo_credentials=attack.echo)
    zk = FakeZeckta(BEARER)
    await ez.start()
    await zk.start()
    try:
        env = dict(base, SMSMON_EAZITA_URL=ez.url, SMSMON_ZECKTA_URL=zk.url, **attack.env)
        if attack.provider == "zeckta":
            seed_zeckta(db, "z-open-1")
            zk.statuses["z-open-1"] = "delivered"
        fake = ez if attack.provider == "eazita" else zk
        if attack.inject:
            fake.fail(attack.inject[0], arg=attack.inject[1])
        run = await asyncio.to_thread(spawn, ["poll", "--once", "--json", "--provider", attack.provider, "--db", str(db)], env)
    finally:
        await ez.stop()
        await zk.stop()
    texts += [run.stdout, run.stderr, *map(str, poll_runs(db))]
    outcome = run.outcomes[0] if run.outcomes else {}
    problems = rule_problems(run, outcome, attack.expect, attack.max_rss)
    if attack.check and outcome:
        problems += attack.check(run, outcome, db, env)
    figures = {"seconds": round(run.seconds, 2), "peak_rss_mb": round(run.peak_mb, 1), "exit": run.code,
               **{k: outcome.get(k) for k in ("error_code", "rows_seen", "new_events", "bad_rows", "retry_after")}}
    said = (f"{outcome.get('error_code')}: {outcome.get('error')}" if outcome.get("error_code") else
            f"ok: {outcome.get('rows_seen')} rows, {outcome.get('new_events')} stored, {outcome.get('bad_rows')} bad")
    if not outcome:
        said = "no outcome: " + (run.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1][:200]
    said += f" ({run.seconds:.1f} s, peak RSS {run.peak_mb:.0f} MB)"
    return Result(AREA, attack.name, said + ("; " + "; ".join(problems) if problems else ""), not problems, figures)


def rule_problems(run: Run, outcome: dict[str, Any], expect: str | None, max_rss: float) -> list[str]:
    problems = []
    if run.killed:
        problems.append(f"killed after {SUBPROCESS_TIMEOUT_S:g} s")
    if "internal error" in run.stderr or "Traceback" in run.stderr:
        problems.append("an internal error: " + run.stderr.strip().splitlines()[-1][:160])
    if not outcome:
        problems.append("no JSON outcome on stdout")
        return problems
    code = outcome.get("error_code")
    if code != expect:
        problems.append(f"classified {code!r}, expected {expect!r}")
    if code and not catalogue.lookup(code):
        problems.append(f"{code!r} has no catalogue entry")
    if run.code != (0 if expect is None else 1):
        problems.append(f"exit code {run.code}")
    if run.peak_mb > max_rss:
        problems.append(f"peak RSS {run.peak_mb:.0f} MB (bound {max_rss:g} MB)")
    if leaked := leaks(run.stdout + run.stderr):
        problems.append(f"on stdout/stderr: the {', '.join(leaked)}")
    return problems


def serve_sequence(quick: bool) -> list[tuple[str, Any, str | None]]:
    """What the live poller meets, one answer after the other: (misbehaviour, arg, expected code)."""
    now = karachi(time.time() - 60)
    bad = [("rows", impossible_dates(now), None), ("bad_gzip", None, "poll_undecodable"),
           ("redirect", "https://elsewhere.example.net/", "poll_redirect"),
           ("body", (200, "application/json", b"\x00garbage"), "poll_invalid_json"), ("drip", 30, "poll_timeout"),
           ("gzip_bomb", BOMB_QUICK, "poll_too_large"), ("echo", None, None), ("http", 500, "poll_server_error")]
    if quick:
        bad = bad[:5]
    out: list[tuple[str, Any, str | None]] = []
    for i, b in enumerate(bad):
        out += [b, ("rows", [good_row(100 + i, now)], None)]  # a good answer after each bad one
    return out + [("http", (429, "1e12"), "poll_rate_limited")]  # last: the capped wait is the next one


async def serve_attack(ctx: Context, base: dict[str, str], texts: list[str]) -> Result:
    """`smsmon serve` with a live Eazita poller every 0.2 s, fed the sequence above."""
    db = ctx.tmp / "serve.db"
    sequence = serve_sequence(ctx.quick)
    ez = FakeEazita(KEY, PASSWORD, echo_credentials=True)
    await ez.start()
    for kind, arg, _ in sequence:
        ez.fail(kind, arg=arg)
    env = dict(base, SMSMON_EAZITA_URL=ez.url, SMSMON_EAZITA_INTERVAL="0.2s", SMSMON_EAZITA_TIMEOUT="1s")
    env.pop("SMSMON_ZECKTA_API_KEY")
    problems: list[str] = []
    peak_file = ctx.tmp / "serve.peak"
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command(["serve", "--listen", "127.0.0.1:0", "--db", str(db)], peak_file),
                                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if len(poll_runs(db)) >= len(sequence):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # the warning after the last poll
            alive = proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                problems.append("still running 30 s after SIGTERM")
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            await ez.stop()
        seconds = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    runs = poll_runs(db)
    texts += [stderr, *map(str, runs)]
    got = [r["error_code"] for r in runs]
    wanted = [code for _, _, code in sequence]
    if got[: len(wanted)] != wanted:
        problems.append(f"poll_runs codes {got} != expected {wanted}")
    if not alive:
        problems.append("the serve process died")
    if proc.returncode != 0:
        problems.append(f"exit code {proc.returncode} after SIGTERM")
    if "internal error" in stderr or "Traceback" in stderr:
        problems.append("an internal error on stderr")
    last = [ln for ln in stderr.splitlines() if "poll_rate_limited" in ln and "next try in" in ln]
    wait = float(last[-1].split("next try in ")[1].split()[0]) if last else None
    from smsmon.ingest.poller import MAX_BACKOFF_S

    if wait is None or wait > MAX_BACKOFF_S:
        problems.append(f"after Retry-After 1e12 the next try is in {wait} s")
    if leaks(stderr):
        problems.append("a credential on stderr")
    recovered = sum(1 for r in runs if r["ok"])
    outcome = (f"{len(runs)} polls recorded, {len(runs) - recovered} failures all classified, {recovered} good polls after them;"
               f" after Retry-After 1e12 the next try is in {wait} s; alive until SIGTERM, exit {proc.returncode}"
               f" ({seconds:.1f} s, peak RSS {peak_mb(peak_file):.0f} MB)")
    return Result(AREA, f"`smsmon serve` with a live poller every 0.2 s through {len(sequence)} answers, each bad one then a good one",
                  outcome + ("; " + "; ".join(problems) if problems else ""), not problems,
                  {"polls": len(runs), "failures": len(runs) - recovered, "next_try_s": wait, "seconds": round(seconds, 1),
                   "peak_rss_mb": round(peak_mb(peak_file), 1), "codes": got})


def config_attacks(ctx: Context, base: dict[str, str], texts: list[str]) -> list[Result]:
    """Secrets that cannot be used: a control character inside, or too short to mask."""
    results = []
    db = str(ctx.tmp / "config.db")
    bad_key = BEARER[:8] + "\r" + BEARER[8:]
    run = spawn(["poll", "--once", "--provider", "zeckta", "--db", db], dict(base, SMSMON_ZECKTA_API_KEY=bad_key))
    texts += [run.stdout, run.stderr]
    problems = [p for p, bad in (("exit code %d" % run.code, run.code != 1),
                                 ("the error does not name zeckta.api_key", "zeckta.api_key" not in run.stderr),
                                 ("the key is on stderr", BEARER[:8] in run.stderr or BEARER[8:] in run.stderr)) if bad]
    results.append(Result(AREA, "a Zeckta API key with a carriage return inside (SMSMON_ZECKTA_API_KEY)",
                          run.stderr.strip().splitlines()[-1][:200] if run.stderr.strip() else "(nothing said)", not problems,
                          {"exit": run.code}))
    run = spawn(["config", "--json"], dict(base, SMSMON_EAZITA_PASSWORD="k"))
    texts += [run.stdout]
    warned = "shorter than" in run.stderr and "eazita.password" in run.stderr
    results.append(Result(AREA, "an Eazita password of one character (masking it would garble every log line)",
                          (run.stderr.strip().splitlines() or ["no warning"])[0][:200], warned and run.code == 0,
                          {"exit": run.code}))
    return results


def secrets_result(ctx: Context, texts: list[str]) -> Result:
    files = sorted(p for p in ctx.tmp.glob("*.db*") if p.is_file())
    in_text = leaks("\n".join(texts))
    in_files = leaks_in_files(files)
    size = sum(p.stat().st_size for p in files)
    ok = not in_text and not in_files
    outcome = (f"none of the 3 credentials, in any spelling, in {len(texts)} outputs and poll_runs rows,"
               f" nor in {len(files)} database files ({size / 2**20:.1f} MB)" if ok else
               f"found: {', '.join(in_text) or 'nothing'} in outputs; {', '.join(in_files) or 'nothing'} in database files")
    return Result(AREA, "every credential, in every encoding, looked for in stdout, stderr, poll_runs and the database files",
                  outcome, ok, {"files": len(files), "database_mb": round(size / 2**20, 1), "leaked_in_text": in_text,
                                "leaked_in_files": in_files})


async def _run(ctx: Context) -> list[Result]:
    base = base_env(ctx.tmp)
    texts: list[str] = []
    results = []
    for i, attack in enumerate(attacks(ctx.quick)):
        ctx.say(f"  {attack.name} ...")
        results.append(await one(ctx, base, attack, i, texts))
    ctx.say("  smsmon serve with a live poller ...")
    results.append(await serve_attack(ctx, base, texts))
    results += await asyncio.to_thread(config_attacks, ctx, base, texts)
    results.append(secrets_result(ctx, texts))
    return results


def run(ctx: Context) -> list[Result]:
    return asyncio.run(_run(ctx))
