"""The benchmarks on PostgreSQL (`--postgres URL`): each database they build is a schema of the
given database (`smsmon_bench_1m`, ...), kept for the next run as the SQLite files are; the
large ones are copied from the SQLite ones by `smsmon migrate`'s copy (timed: that is the
figure of a migration)."""

from __future__ import annotations

import os
import time
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from smsmon.database import PostgresUrl
from smsmon.errors import SmsmonError

PREFIX = "smsmon_bench_"


def in_schema(url: PostgresUrl, schema: str) -> PostgresUrl:
    """The URL with `schema` first in its search_path (other options kept)."""
    parts = urlsplit(url.reveal())
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join([*(v for k, v in query if k == "options"), f"-csearch_path={schema}"])
    query = [(k, v) for k, v in query if k != "options"] + [("options", options)]
    return PostgresUrl(urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), "")))


def schema(url: PostgresUrl, name: str, *, fresh: bool = False) -> PostgresUrl:
    """A schema of the bench's own (`smsmon_bench_<name>`), emptied first when `fresh`."""
    from smsmon.store.pg.admin import create_schema

    create_schema(url, PREFIX + name, fresh=fresh)
    return in_schema(url, PREFIX + name)


def drop(url: PostgresUrl, name: str) -> None:
    from smsmon.store.pg.admin import drop_schema

    drop_schema(url, PREFIX + name)


def events_in(url: PostgresUrl) -> int:
    from smsmon.store.backend import open_reader

    try:
        with open_reader(url) as r:
            return r.latest_event_id()
    except SmsmonError:
        return 0


def bytes_on_disk(url: PostgresUrl) -> int:
    from smsmon.store.pg.admin import bytes_on_disk as size

    return size(url)


def ensure_copy(sqlite_db: Any, url: PostgresUrl, size: int, say: Callable[[str], None]) -> tuple[PostgresUrl, float | None]:
    """The PostgreSQL twin of an SQLite bench database, copied when missing: (its URL, events/s of
    the copy, None when it was there already)."""
    from smsmon.store.pg.copy import copy_sqlite

    name = f"{size // 1_000_000}m" if size % 1_000_000 == 0 else str(size)
    target = schema(url, name)
    if events_in(target) >= size * 0.95:
        return target, None
    target = schema(url, name, fresh=True)
    say(f"copying it to PostgreSQL (schema {PREFIX}{name}) with smsmon migrate's copy ...")
    started = time.perf_counter()
    result = copy_sqlite(sqlite_db, target)
    rate = result.events_total / (time.perf_counter() - started)
    say(f"  copied {result.events_total:,} events and {result.messages:,} messages at {rate:,.0f} events/s")
    return target, rate


def serve_env(db: Any) -> tuple[list[str], dict[str, str] | None]:
    """`--db` for a `smsmon serve` subprocess, or, for a URL, the environment that carries it (a
    password on a command line is visible to everyone in `ps`)."""
    if isinstance(db, PostgresUrl):
        return [], {**os.environ, "SMSMON_DB": db.reveal()}
    return ["--db", str(db)], None
