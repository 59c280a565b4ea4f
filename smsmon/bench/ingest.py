"""`smsmon bench ingest`: callbacks/s and latency of `smsmon serve` against a bare aiohttp
endpoint, in one run, under the same load on loopback.

The load generator is wrk (Debian package `wrk`) when installed: it is written in C and is not
the bottleneck. Without it a Python generator runs instead, and the output says so, because
it may be. Each request is a Zeckta callback with a random event id (as real uuids are), three
events per message. The steady-rate test sends at a fixed rate whatever the answers' speed
(open loop), so its latencies are not flattered by the client waiting.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from smsmon.errors import SmsmonError

WRK_SCRIPT = r"""
local counter = 0
local hex = "0123456789abcdef"
local types = {"MESSAGE_SUBMITTED", "MESSAGE_SENT", "MESSAGE_DELIVERED"}
local msg = ""
local function rnd(n)
  local t = {}
  for i = 1, n do local r = math.random(1, 16); t[i] = hex:sub(r, r) end
  return table.concat(t)
end
local function uuid() return rnd(8) .. "-" .. rnd(4) .. "-4" .. rnd(3) .. "-a" .. rnd(3) .. "-" .. rnd(12) end
function init(args) math.randomseed(tonumber(args[1]) or os.time()) end
function request()
  counter = counter + 1
  local step = (counter - 1) % 3 + 1
  if step == 1 then msg = uuid() end
  local body = string.format('{"eventId":"%s","eventType":"%s","timestamp":"%s.%09dZ",' ..
    '"message":{"uuid":"%s","src":"ACME","dest":"+23324%07d","segments":1,"units":1,"attempts":1,"cost":null}}',
    uuid(), types[step], os.date("!%Y-%m-%dT%H:%M:%S"), step, msg, math.random(0, 9999999))
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


@dataclass
class Result:
    name: str
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int

    def as_dict(self) -> dict[str, Any]:
        return {"callbacks_per_s": round(self.rate), "p50_ms": round(self.p50_ms, 2), "p99_ms": round(self.p99_ms, 2),
                "requests": self.requests, "non_2xx_or_errors": self.errors}


# ── servers ─────────────────────────────────────────────────────────────────────
class Server:
    """A server subprocess; `url` is read from what it prints. With `log`, every line it prints
    is also written to that file (the attack bench greps them); `popen` goes to subprocess.Popen."""

    def __init__(self, args: list[str], pattern: str, *, log: Path | None = None, **popen: Any) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                     **popen)
        self.lines: list[str] = []
        found = threading.Event()
        self.url = ""
        sink = log.open("a") if log else None

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if sink:
                    sink.write(line)
                    sink.flush()
                if len(self.lines) < 200:
                    self.lines.append(line)
                if not found.is_set() and (m := re.search(pattern, line)):
                    self.url = m.group(1)
                    found.set()
            found.set()
            if sink:
                sink.close()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not found.wait(60) or not self.url:
            self.proc.kill()
            raise SmsmonError("benchmark server did not start:\n" + "".join(self.lines[-20:]))

    def stop(self) -> int:
        """SIGTERM; the exit code, once everything it printed has been read."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.reader.join(10)
        return code


def bare_server() -> Server:
    return Server([sys.executable, "-m", "smsmon.bench.ingest"], r"bare listening on (\S+)")


def smsmon_server(db: Any, *args: str, log: Path | None = None, **popen: Any) -> Server:
    """`smsmon serve` on an SQLite file or a PostgreSQL URL (passed in its environment)."""
    from smsmon.bench.pg import serve_env

    where, env = serve_env(db)
    if env is not None:
        popen["env"] = {**env, **popen.get("env", {})}
    return Server([sys.executable, "-m", "smsmon", "serve", *where, "--listen", "127.0.0.1:0", *args],
                  r"listening on (\S+)", log=log, **popen)


async def _bare_main() -> None:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/callbacks/zeckta", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    print(f"bare listening on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


# ── load generators ─────────────────────────────────────────────────────────────
def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, seconds: int, connections: int, script: Path, seed: int) -> Result:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url, "--", str(seed)],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s|m))$", out, re.M))
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not (rate and total and "50" in lat and "99" in lat):
        raise SmsmonError(f"could not read wrk's output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())

    def parse(v: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
        assert m
        return _ms(*m.groups())

    return Result("", float(rate.group(1)), parse(lat["50"]), parse(lat["99"]), int(total.group(1)), errors)


def _body(rng: random.Random, n: int, msg: list[str]) -> bytes:
    step = n % 3
    if step == 0:
        msg[0] = f"{rng.getrandbits(128):032x}"
    return json.dumps({"eventId": f"{rng.getrandbits(128):032x}",
                       "eventType": ("MESSAGE_SUBMITTED", "MESSAGE_SENT", "MESSAGE_DELIVERED")[step],
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{step:09d}Z",
                       "message": {"uuid": msg[0], "src": "ACME", "dest": f"+23324{rng.randrange(10**7):07d}",
                                   "segments": 1, "units": 1, "attempts": 1, "cost": None}}).encode()


def run_python_closed(url: str, seconds: int, connections: int, seed: int) -> Result:
    """As many requests as `connections` workers can send (the fallback without wrk)."""
    import aiohttp

    async def main() -> Result:
        rng, msg, lat, errors, n = random.Random(seed), [""], [], 0, 0
        end = time.perf_counter() + seconds

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal errors, n
            while time.perf_counter() < end:
                body = _body(rng, n, msg)
                n += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body) as r:
                        await r.read()
                        ok = r.status < 300
                except aiohttp.ClientError:
                    ok = False
                lat.append((time.perf_counter() - t0) * 1000)
                errors += not ok

        start = time.perf_counter()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
            await asyncio.gather(*(worker(s) for _ in range(connections)))
        elapsed = time.perf_counter() - start
        lat.sort()
        return Result("", len(lat) / elapsed, lat[len(lat) // 2], lat[int(len(lat) * 0.99)], len(lat), errors)

    return asyncio.run(main())


def run_steady(url: str, rate: int, seconds: int, seed: int) -> Result:
    """Open loop: one request every 1/rate s, whatever the answers' speed."""
    import aiohttp

    async def main() -> Result:
        rng, msg, lat, errors = random.Random(seed), [""], [], 0

        async def one(session: aiohttp.ClientSession, body: bytes) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body) as r:
                    await r.read()
                    errors += r.status >= 300
            except aiohttp.ClientError:
                errors += 1
            lat.append((time.perf_counter() - t0) * 1000)

        total = rate * seconds
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as s:
            # Warm the connection pool so that connecting is not counted as latency.
            await asyncio.gather(*(one(s, _body(rng, i, msg)) for i in range(64)))
            lat.clear()
            errors = 0
            start = time.perf_counter()
            tasks = []
            for i in range(total):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(s, _body(rng, i + 64, msg))))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - start
        lat.sort()
        return Result("", total / elapsed, lat[len(lat) // 2], lat[int(len(lat) * 0.99)], total, errors)

    return asyncio.run(main())


# ── the benchmark ───────────────────────────────────────────────────────────────
def _events(db: Any) -> int:
    from smsmon.store.backend import open_reader

    with open_reader(db) as reader:
        return reader.latest_event_id()


def _outbox(db: Path) -> int:
    from smsmon.store.backend import open_reader

    with open_reader(db) as reader:
        return reader.outbox_depth()[0]


def ingest_bench(*, seconds: int, connections: int, rate: int, large_db: Path | None, large_events: int, skip_large: bool,
                 say: Callable[[str], None], forward: bool = True, postgres: Any = None) -> dict[str, Any]:
    """With `postgres` (a PostgresUrl), the same runs on PostgreSQL, and two serves on one database."""
    wrk = shutil.which("wrk")
    figures: dict[str, Any] = {"seconds": seconds, "connections": connections}
    with tempfile.TemporaryDirectory(prefix="smsmon-bench-ingest-") as tmp:
        tmpdir = Path(tmp)
        script = tmpdir / "post.lua"
        script.write_text(WRK_SCRIPT)
        seed = [int(time.time())]

        def load(url: str, conns: int = connections) -> Result:
            seed[0] += 1
            if wrk:
                return run_wrk(url, seconds, conns, script, seed[0])
            return run_python_closed(url, seconds, conns, seed[0])

        if wrk:
            version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0].split(" [")[0]
            figures["load_generator"] = f"{version}, 1 thread"
        else:
            figures["load_generator"] = "Python aiohttp client (install wrk for a generator that is not the bottleneck)"
        say(f"load generator: {figures['load_generator']}; {connections} connections; {seconds} s per run; "
            "synchronous=FULL; random event ids")

        def measure(name: str, start: Callable[[], Server]) -> Result:
            server = start()
            try:
                result = load(server.url + "/callbacks/zeckta")
            finally:
                code = server.stop()
            if code != 0:
                raise SmsmonError(f"{name} exited {code} on SIGTERM:\n" + "".join(server.lines[-20:]))
            result.name = name
            return result

        bare = measure("bare aiohttp endpoint (204)", bare_server)
        rows = [bare]
        fresh_db = tmpdir / "fresh.db"
        fresh = measure("smsmon serve, fresh database", lambda: smsmon_server(fresh_db))
        rows.append(fresh)
        stored = _events(fresh_db)
        ok = fresh.requests - fresh.errors
        figures["fresh_stored_vs_acknowledged"] = [stored, ok]

        relayed = None
        if forward:  # the same, relaying every callback to a second bare endpoint (issue 13)
            sink = bare_server()
            forward_db = tmpdir / "forward.db"
            try:
                relayed = measure("smsmon serve, fresh database, forwarding",
                                  lambda: smsmon_server(forward_db, "--forward-to", sink.url + "/callbacks/zeckta"))
                rows.append(relayed)
                # What was left to relay when the load stopped, and how long the next run takes to relay it.
                left = _outbox(forward_db)
                started = time.perf_counter()
                drain = smsmon_server(forward_db, "--forward-to", sink.url + "/callbacks/zeckta")
                try:
                    while _outbox(forward_db) and time.perf_counter() - started < 120:
                        time.sleep(0.2)
                finally:
                    drain.stop()
                figures["forward_left_when_load_stopped"] = left
                figures["forward_drain_seconds"] = round(time.perf_counter() - started, 1)
                figures["forward_left_after_drain"] = _outbox(forward_db)
            finally:
                sink.stop()

        large = None
        if not skip_large:
            db = large_db or tmpdir / "large.db"
            if not db.exists():
                from smsmon.sim.generate import fill

                say(f"building a {large_events:,}-event database at {db} (once; about 2 minutes per million) ...")
                fill(db, events=large_events, seed=1, days=30)
            size = _events(db)
            large = measure(f"smsmon serve, {size:,}-event database", lambda: smsmon_server(db))
            rows.append(large)

        if postgres is not None:
            from smsmon.bench.pg_ingest import postgres_runs

            pg_rows, figures["postgres"] = postgres_runs(postgres, measure, load, db if large else None, say, connections)
            rows += pg_rows

        say("")
        say(f"  {'':<42} {'callbacks/s':>11} {'p50':>9} {'p99':>9} {'failed':>7}  vs bare")
        for r in rows:
            ratio = "" if r is bare else f"  {r.rate / bare.rate:.2f}x"
            say(f"  {r.name:<42} {r.rate:>11,.0f} {r.p50_ms:>7.2f}ms {r.p99_ms:>7.2f}ms {r.errors:>7}{ratio}")
        say(f"  stored {stored:,} events for {ok:,} acknowledged callbacks in the fresh run")
        if relayed:
            say(f"  forwarding on: {relayed.rate / fresh.rate:.2f}x the callbacks/s and {relayed.p99_ms / fresh.p99_ms:.2f}x the"
                f" p99 of forwarding off; {figures['forward_left_when_load_stopped']:,} left to relay when the load stopped,"
                f" relayed by a new run in {figures['forward_drain_seconds']} s"
                f" ({figures['forward_left_after_drain']:,} left)")

        def steady_run(name: str, *args: str) -> Result:
            server = smsmon_server(tmpdir / f"steady-{name}.db", *args)
            try:
                result = run_steady(server.url + "/callbacks/zeckta", rate, seconds, seed[0] + 100)
            finally:
                server.stop()
            say(f"  steady {rate:,} callbacks/s into smsmon serve (fresh database, open loop, Python client{name}): "
                f"achieved {result.rate:,.0f}/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, failed {result.errors}")
            return result

        steady = steady_run("")
        steady_forward = None
        if forward:
            sink = bare_server()
            try:
                steady_forward = steady_run(", forwarding", "--forward-to", sink.url + "/callbacks/zeckta")
            finally:
                sink.stop()

    figures["bare"] = bare.as_dict()
    figures["fresh"] = dict(fresh.as_dict(), ratio=round(fresh.rate / bare.rate, 3))
    if relayed:
        figures["forwarding"] = dict(relayed.as_dict(), ratio=round(relayed.rate / bare.rate, 3),
                                     vs_off=round(relayed.rate / fresh.rate, 3), p99_vs_off=round(relayed.p99_ms / fresh.p99_ms, 2))
    if large:
        figures["large"] = dict(large.as_dict(), ratio=round(large.rate / bare.rate, 3), name=large.name)
    figures["steady"] = dict(steady.as_dict(), target_rate=rate)
    if steady_forward:
        figures["steady_forwarding"] = dict(steady_forward.as_dict(), target_rate=rate)
    return figures


if __name__ == "__main__":
    asyncio.run(_bare_main())
