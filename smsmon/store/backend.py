"""The one place that knows there are two stores: `--db` names an SQLite file or a PostgreSQL
URL (smsmon.database), and these give the writer and the reader for it. Code outside
smsmon.store asks here and never knows which it got: both have the same methods and the same
behaviour (the same merge rule, counts, read side; tests run each suite on both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smsmon.database import Database, PostgresUrl, is_postgres
from smsmon.store.reader import Reader


def open_writer(db: Database | str, **kwargs: Any) -> Any:
    """The writer (smsmon.store.writer.Writer, or pg.writer.PgWriter): connected, schema up to
    date, or a StoreError saying why not. Keyword arguments as Writer's."""
    if is_postgres(db):
        from smsmon.store.pg.writer import PgWriter

        return PgWriter(db, **kwargs)  # type: ignore[arg-type]
    from smsmon.store.writer import Writer

    return Writer(Path(db), **kwargs)


def open_reader(db: Database | str, **kwargs: Any) -> Reader:
    """The reader (not opened yet: `.open()` or `with` says early what is wrong). Keyword
    arguments as Reader's."""
    if is_postgres(db):
        from smsmon.store.pg.reader import PgReader

        return PgReader(db, **kwargs)  # type: ignore[arg-type]
    return Reader(Path(db), **kwargs)


def checkpointer(writer: Any) -> Any:
    """SQLite's WAL checkpointer for a writer's file (None for PostgreSQL, which checkpoints itself)."""
    from smsmon.store.writer import Checkpointer, Writer

    return Checkpointer(writer) if isinstance(writer, Writer) else None


def check_writer_can_open(db: Database) -> None:
    """Before the app starts: refuse what the writer would refuse (SQLite only: a server is asked
    when the writer connects)."""
    if not is_postgres(db):
        from smsmon.store.reader import check_writer_can_open as check

        check(Path(db))


def inspect_origin(db: Database | str) -> Any:
    """What the database holds (store.origin.Origin: new, demo or real), read-only."""
    if is_postgres(db):
        from smsmon.store.pg.origin import inspect

        return inspect(db)  # type: ignore[arg-type]
    from smsmon.store.origin import inspect

    return inspect(Path(db))


def figures_source(db: Database | str) -> Any:
    """Where alerts and metrics read their figures (store.window.Source, or its PostgreSQL twin)."""
    if is_postgres(db):
        from smsmon.store.pg.window import PgSource

        return PgSource(db)  # type: ignore[arg-type]
    from smsmon.store.window import Source

    return Source(Path(db))


def exists(db: Database) -> bool:
    """Whether there may be a database to read: a file that exists, or any server URL (asked on opening)."""
    return isinstance(db, PostgresUrl) or Path(db).exists()
