"""The figures alerts and metrics are judged on (store.window), read from PostgreSQL: the same
queries, on a connection of the reader's pool."""

from __future__ import annotations

from typing import Any

from smsmon.database import PostgresUrl
from smsmon.store import window
from smsmon.store.pg.reader import PgReader


class PgSource:
    """store.window.Source for a PostgreSQL database."""

    def __init__(self, url: PostgresUrl) -> None:
        self._reader = PgReader(url, pool_size=1)

    def read(self, **kwargs: Any) -> Any:
        """`window.read()` on this database. Raises StoreError."""
        return self._reader.call(window.read, **kwargs)

    def close(self) -> None:
        self._reader.close()
