"""`smsmon export` from PostgreSQL: the same lines as from SQLite (export.py), made here.

SQLite writes each line itself (json_object, format); PostgreSQL's own JSON would spell numbers
and escapes its own way, so the lines are made in Python from a server-side cursor (rows come a
batch at a time: memory stays flat) with msgspec, in the SQLite export's shapes: the same
columns in the same order, the same quoting in CSV, the event's payload as the object it is.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterator

import msgspec
import psycopg

from smsmon.filters import Filter
from smsmon.store.export import _PLAIN, EVENT_COLUMNS, FETCH, MESSAGE_COLUMNS, _csv_text, _json_value
from smsmon.store.payloads import codec_for
from smsmon.store.pg.connection import Connection, clean_params, translate
from smsmon.store.queries import _conditions, _plan
from smsmon.timeutil import fmt

_encode = msgspec.json.Encoder().encode
_EVENT_SQL = {"id": "e.id", "message_id": "m.id", "provider": "m.provider"}


def _csv(columns: list[str]) -> Any:
    plain = [c in _PLAIN or c == "id" for c in columns]

    def line(row: tuple) -> bytes:
        return ",".join(
            ("" if v is None else str(v)) if p else '"' + ("" if v is None else str(v)).replace('"', '""') + '"'
            for v, p in zip(row, plain)).encode()

    return line


def _json(columns: list[str]) -> Any:
    def line(row: tuple) -> bytes:
        return _encode(dict(zip(columns, row)))

    return line


def _stream(raw: psycopg.Connection, sql: str, params: list[Any]) -> Iterator[list[tuple]]:
    raw.server_cursor_factory = psycopg.RawServerCursor  # type: ignore[assignment]
    with raw.cursor(name="smsmon_export") as cur:
        cur.itersize = FETCH
        cur.execute(translate(sql), clean_params(params))
        while rows := cur.fetchmany(FETCH):
            yield rows


def messages(raw: psycopg.Connection, f: Filter, *, now: datetime, window: timedelta, as_json: bool) -> Iterator[list[bytes]]:
    """The matching messages, newest first, in batches of lines (MESSAGE_COLUMNS each)."""
    _, conds, params = _plan(Connection(raw), f, now, window)
    columns = [c for c in MESSAGE_COLUMNS if c != "stale"]
    stale = "is_final = 0 AND last_event_at < ?"
    sql = (f"SELECT {', '.join(columns)}, {stale} FROM messages WHERE {' AND '.join(conds) or 'true'}"
           " ORDER BY last_event_at DESC, seq DESC")
    make = _json(MESSAGE_COLUMNS) if as_json else _csv(MESSAGE_COLUMNS)
    for rows in _stream(raw, sql, [fmt(now - window), *params]):
        yield [make(r) for r in rows]


def events(raw: psycopg.Connection, f: Filter, *, now: datetime, window: timedelta, as_json: bool) -> Iterator[list[bytes]]:
    """Every event of the matching messages, in arrival order, in batches of lines (EVENT_COLUMNS)."""
    conds, params = _conditions(f, now, window, t="m.")
    columns = EVENT_COLUMNS[:-1]
    select = ", ".join(_EVENT_SQL.get(c, "e." + c) for c in columns)
    sql = (f"SELECT {select}, e.raw FROM events e JOIN messages m ON m.seq = e.message_seq"
           f" WHERE {' AND '.join(conds) or 'true'} ORDER BY e.id")
    unpack = codec_for(Connection(raw)).bytes_unpacker()
    make = _json(columns) if as_json else _csv(columns)
    for rows in _stream(raw, sql, params):
        if as_json:
            yield [make(r[:-1])[:-1] + b',"raw":' + _json_value(unpack(r[-1])) + b"}" for r in rows]
        else:
            yield [make(r[:-1]) + b"," + _csv_text(unpack(r[-1])) for r in rows]
