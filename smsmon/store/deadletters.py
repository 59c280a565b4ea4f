"""Dead letters: callbacks the parser refused (answered 400), kept with the reason, the request's
headers (secrets masked) and the body, bounded in rows and bytes; and what `smsmon dead-letters
replay` does to them once a fixed parser accepts them (issue 13).

`body` is the body as text (invalid UTF-8 replaced, so that anything can show it); when the
body was not valid UTF-8, `body_bytes` keeps it exactly, so that a replay parses what arrived.
`size` counts the bytes kept (body and headers), which the bound on bytes applies to.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

from smsmon.timeutil import fmt

if TYPE_CHECKING:
    from smsmon.store.writer import Writer

DEAD_LETTER_LIMIT = 10_000
DEAD_LETTER_BODY = 64 * 1024
DEAD_LETTER_BYTES = 16 * 1024 * 1024  # and at most this many bytes of bodies in all (at least 256 full-size ones)
HEADERS_MAX = 8 * 1024  # bytes of headers kept (as JSON) with a dead letter
COLUMNS = ("id", "received_at", "remote", "path", "reason", "body", "size", "headers", "replayed_at")


class DeadLetter(NamedTuple):
    """A rejected callback, kept for troubleshooting. `path` and `headers` (JSON text) must
    already be free of secrets."""

    received_at: str
    remote: str | None
    path: str
    reason: str
    body: bytes
    headers: str | None = None


def keep(conn: sqlite3.Connection, letters: Sequence[DeadLetter], *, limit: int, max_bytes: int) -> None:
    """Insert, then drop the oldest rows beyond the bounds (rows, and bytes kept in all). In the
    caller's transaction."""
    rows = []
    for d in letters:
        raw = d.body[:DEAD_LETTER_BODY]
        body = raw.decode("utf-8", "replace")
        # (a NUL too: PostgreSQL's text cannot hold one and keeps U+2400 in `body` instead)
        exact = None if body.encode() == raw and "\x00" not in body else raw
        headers = d.headers[:HEADERS_MAX] if d.headers else None
        size = len(body.encode()) + len(exact or b"") + len((headers or "").encode())
        rows.append((d.received_at, d.remote, d.path, d.reason[:500], body, size, headers, exact))
    conn.executemany("INSERT INTO dead_letters (received_at, remote, path, reason, body, size, headers, body_bytes)"
                     " VALUES (?,?,?,?,?,?,?,?)", rows)
    newest = conn.execute("SELECT max(id) FROM dead_letters").fetchone()[0]
    conn.execute("DELETE FROM dead_letters WHERE id <= ?", (newest - limit,))
    # The bytes bound: sizes are read from their own index, never from the (large) rows.
    total = conn.execute("SELECT coalesce(sum(size), 0) FROM dead_letters INDEXED BY ix_dead_letters_size").fetchone()[0]
    if total > max_bytes:
        cut = conn.execute(
            "SELECT id FROM (SELECT id, sum(size) OVER (ORDER BY id) AS upto FROM dead_letters INDEXED BY ix_dead_letters_size)"
            " WHERE upto >= ? ORDER BY id LIMIT 1", (total - max_bytes,)).fetchone()[0]
        conn.execute("DELETE FROM dead_letters WHERE id <= ?", (cut,))


def resolve(writer: "Writer", replayed: Sequence[int], failed: Sequence[tuple[int, str]], at: datetime) -> None:
    """After a replay, in the caller's transaction: the dead letters that became events go; the
    others stay with their new reason."""
    conn = writer.conn
    conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(i,) for i in replayed])
    conn.executemany("UPDATE dead_letters SET reason = ?, replayed_at = ? WHERE id = ?",
                     [(reason[:500], fmt(at), i) for i, reason in failed])


# ── the read side ───────────────────────────────────────────────────────────────
def ids(conn: sqlite3.Connection, *, since: str | None = None) -> list[int]:
    """Every dead letter's id (received since `since`), oldest first."""
    sql = "SELECT id FROM dead_letters" + (" WHERE received_at >= ?" if since else "") + " ORDER BY id"
    return [r[0] for r in conn.execute(sql, (since,) if since else ())]


def select(conn: sqlite3.Connection, *, ids: Sequence[int] = (), since: str | None = None, limit: int | None = None,
           with_bytes: bool = False) -> list[dict[str, Any]]:
    """Dead letters by id, or received since `since` (newest first), or all of them; with
    `with_bytes`, each one's body exactly as received (`raw`: bytes)."""
    cols = ", ".join(COLUMNS) + (", coalesce(body_bytes, CAST(body AS BLOB)) AS raw" if with_bytes else "")
    where, params = [], []  # type: ignore[var-annotated]
    if ids:
        where.append(f"id IN ({','.join('?' * len(ids))})")
        params += list(ids)
    if since:
        where.append("received_at >= ?")
        params.append(since)
    sql = f"SELECT {cols} FROM dead_letters" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur]
