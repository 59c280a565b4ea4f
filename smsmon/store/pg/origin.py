"""What a PostgreSQL database (the URL's schema) holds, as store.origin tells it of a file: `new`
(no smsmon tables yet, or none of them holding anything), `demo` (only simulated traffic: the
`meta` row) or `real`. Read-only: nothing is created or upgraded by looking."""

from __future__ import annotations

import psycopg

from smsmon.database import PostgresUrl
from smsmon.errors import NotSmsmonDatabase, SchemaTooNew
from smsmon.store.origin import DEMO_KEY, Origin
from smsmon.store.pg import schema
from smsmon.store.pg.connection import connect, pg_error

META_VERSION = 2  # the schema step that made `meta` (the demo mark)


def inspect(url: PostgresUrl) -> Origin:
    """Raises StoreError (a server that cannot be reached, another program's tables, a newer
    smsmon's schema) with a one-line reason."""
    conn = connect(url, read_only=True)
    try:
        try:
            v = schema.version(conn)
        except NotSmsmonDatabase as exc:
            raise NotSmsmonDatabase(f"{url} {exc}") from None
        if v > schema.SCHEMA_VERSION:
            raise SchemaTooNew(f"{url} has schema version {v}; this smsmon knows up to {schema.SCHEMA_VERSION}:"
                               " upgrade smsmon")
        if v == 0:
            return Origin(url, "new")  # type: ignore[arg-type]
        demo = v >= META_VERSION and conn.execute("SELECT 1 FROM meta WHERE key = $1", (DEMO_KEY,)).fetchone() is not None
        messages = conn.execute("SELECT coalesce(sum(n), 0) FROM facet_counts WHERE dim = 'provider'").fetchone()[0]  # type: ignore[index]
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]  # type: ignore[index]
        polls = conn.execute("SELECT EXISTS (SELECT 1 FROM poll_runs)").fetchone()[0]  # type: ignore[index]
    except psycopg.Error as exc:
        raise pg_error(exc, url) from None
    finally:
        conn.close()
    kind = "demo" if demo else "real" if (messages or letters or polls) else "new"
    return Origin(url, kind, int(messages), int(letters))  # type: ignore[arg-type]
