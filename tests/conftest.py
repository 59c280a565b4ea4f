from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from smsmon.database import Database, PostgresUrl
from smsmon.store.backend import open_writer
from tests import pgserver

# Every suite that takes `db` (or `writer`, `make_db`) runs on both stores. The PostgreSQL runs
# are marked `postgres`: `pytest -m "not postgres"` leaves them out of a quick local run.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
TEST_DATABASE = "smsmon_tests"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "smsmon.db"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.Server]:
    """One throwaway PostgreSQL server for the session (initdb, a random port, deleted at the end).
    Each test gets a schema of its own in one database: a schema costs 10 ms, a database 300 ms."""
    reason = pgserver.why_not()
    if reason:
        pytest.skip(f"PostgreSQL: {reason}")
    server = pgserver.Server().start()
    try:
        server.create_database(TEST_DATABASE)
        yield server
    finally:
        server.stop()


def schema_url(server: pgserver.Server, *, tcp: bool = False) -> PostgresUrl:
    """A fresh, empty schema of the test database, as smsmon's --db would name it."""
    schema = f"t{uuid.uuid4().hex[:12]}"
    server.sql(f"CREATE SCHEMA {schema}", TEST_DATABASE)
    base = server.tcp_url(TEST_DATABASE) + "?" if tcp else server.url(TEST_DATABASE) + "&"
    return PostgresUrl(f"{base}options=-csearch_path%3D{schema}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], Database]:
    """New, empty databases of the test's backend: a file name in tmp_path, or a schema."""
    counter = itertools.count()

    def make() -> Database:
        n = next(counter)
        if backend == "sqlite":
            return tmp_path / (f"smsmon-{n}.db" if n else "smsmon.db")
        return schema_url(request.getfixturevalue("pg_server"))

    return make


@pytest.fixture
def db(make_db: Callable[[], Database]) -> Database:
    return make_db()


@pytest.fixture
def writer(db: Database) -> Iterator[Any]:
    w = open_writer(db)
    yield w
    w.close()


@pytest.fixture(scope="module", params=BACKENDS)
def module_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Database:
    """An empty database of either store for a module's tests to share (filled by its fixtures)."""
    if request.param == "sqlite":
        return tmp_path_factory.mktemp("db") / "m.db"
    return schema_url(request.getfixturevalue("pg_server"))


HANG_S = 240.0  # no test takes this long (the slowest, an attack run, about 90 s): past it, say where it waits


@pytest.fixture(autouse=True)
def say_where_a_hung_test_waits(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test still running after HANG_S prints every thread's stack and every asyncio task's
    (once seen: a test waiting on a future nobody resolved, every thread idle), then goes on."""
    import threading

    timer = threading.Timer(HANG_S, _dump_waits, args=(request.node.nodeid,))
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


def _dump_waits(nodeid: str) -> None:
    import asyncio
    import faulthandler
    import gc
    import sys

    print(f"\n==== {nodeid} still running after {HANG_S:.0f} s: threads, then asyncio tasks ====", file=sys.__stderr__)
    faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    for loop in [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]:
        for task in list(asyncio.all_tasks(loop)):
            print(f"-- {task!r}", file=sys.__stderr__)
            task.print_stack(file=sys.__stderr__)
    sys.__stderr__.flush()
