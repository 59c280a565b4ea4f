"""`smsmon bench ingest --postgres URL`: `smsmon serve` on PostgreSQL under the load of the SQLite
runs, on a fresh database and on a large one (a copy of the SQLite one), and two serves on one
database, each taking half of the connections (as behind a load balancer), against one."""

from __future__ import annotations

import threading
from typing import Any, Callable

from smsmon.bench import pg as pgbench
from smsmon.bench.ingest import Result, Server, _events, smsmon_server
from smsmon.database import PostgresUrl
from smsmon.errors import SmsmonError


def _two(url: PostgresUrl, load: Callable[..., Result], connections: int) -> tuple[Result, list[Result]]:
    """Two serves on one database, each loaded with half the connections at the same time."""
    servers = [smsmon_server(url), smsmon_server(url)]
    results: list[Result | BaseException] = [None, None]  # type: ignore[list-item]

    def run(i: int) -> None:
        try:
            results[i] = load(servers[i].url + "/callbacks/zeckta", max(1, connections // 2))
        except BaseException as exc:  # noqa: BLE001 -- re-raised below, on the main thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        codes = [s.stop() for s in servers]
    for r in results:
        if isinstance(r, BaseException):
            raise r
    if any(codes):
        raise SmsmonError(f"a serve exited {codes} on SIGTERM")
    halves: list[Result] = results  # type: ignore[assignment]
    both = Result("two serves on one PostgreSQL, fresh", sum(r.rate for r in halves), max(r.p50_ms for r in halves),
                  max(r.p99_ms for r in halves), sum(r.requests for r in halves), sum(r.errors for r in halves))
    return both, halves


def postgres_runs(url: PostgresUrl, measure: Callable[[str, Callable[[], Server]], Result], load: Callable[..., Result],
                  large_sqlite: Any, say: Callable[[str], None], connections: int) -> tuple[list[Result], dict[str, Any]]:
    """The PostgreSQL rows of the table, and their figures. Schemas made here are dropped after."""
    figures: dict[str, Any] = {}
    fresh = pgbench.schema(url, "ingest", fresh=True)
    one = measure("smsmon serve, PostgreSQL, fresh", lambda: smsmon_server(fresh))
    figures["fresh"] = dict(one.as_dict(), stored=_events(fresh), acknowledged=one.requests - one.errors)
    rows = [one]
    if large_sqlite is not None:
        size = _events(large_sqlite)
        large, _ = pgbench.ensure_copy(large_sqlite, url, size, say)
        big = measure(f"smsmon serve, PostgreSQL, {pgbench.events_in(large):,}-event database", lambda: smsmon_server(large))
        figures["large"] = big.as_dict()
        rows.append(big)
    shared = pgbench.schema(url, "ingest2", fresh=True)
    both, halves = _two(shared, load, connections)
    stored = _events(shared)
    figures["two"] = dict(both.as_dict(), stored=stored, acknowledged=both.requests - both.errors,
                          each=[h.as_dict() for h in halves], vs_one=round(both.rate / one.rate, 2))
    rows.append(both)
    say(f"  two serves on one PostgreSQL: stored {stored:,} events for {both.requests - both.errors:,} acknowledged"
        f" callbacks; {both.rate / one.rate:.2f}x one serve")
    for name in ("ingest", "ingest2"):
        pgbench.drop(url, name)
    return rows, figures
