"""What `smsmon tail` reads (issue 13): the events of a range of ids, of the messages matching a
filter. Bounded on both sides, so that looking back for the last few matching events, or catching
up after a burst, reads only that range, however little the filter matches."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Any

from smsmon.filters import Filter
from smsmon.lifecycle import WATCH_WINDOW
from smsmon.store.payloads import codec_for
from smsmon.store.queries import _conditions
from smsmon.timeutil import now_utc

_COLUMNS = ("e.id, e.event_key, m.id AS message_id, m.provider, e.source, e.event_type, e.raw_status, e.status,"
            " e.error_code, e.event_time, e.received_at, e.sent_at, e.flags, e.raw")


def events_between(conn: sqlite3.Connection, f: Filter | None, *, after: int, upto: int, limit: int,
                   now: datetime | None = None, window: timedelta = WATCH_WINDOW) -> list[dict[str, Any]]:
    """Events with `after` < id <= `upto`, in arrival order, at most `limit`, of the matching messages."""
    conds, params = _conditions(f or Filter(), now or now_utc(), window, t="m.")
    where = " AND ".join(["e.id > ?", "e.id <= ?", *conds])
    sql = (f"SELECT {_COLUMNS} FROM events e JOIN messages m ON m.seq = e.message_seq WHERE {where} ORDER BY e.id LIMIT ?")
    cursor = conn.execute(sql, [after, upto, *params, limit])
    names = [d[0] for d in cursor.description]
    codec = codec_for(conn)
    out = []
    for r in cursor:
        d = dict(zip(names, r))
        d["raw"] = codec.unpack(d["raw"])
        out.append(d)
    return out
