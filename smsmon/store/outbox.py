"""The forward outbox (issue 13): accepted callbacks still to be relayed to `--forward-to`.

A row is written by the writer in the same transaction as its event (`add`), so an
acknowledged callback is never lost to the forwarder, even by `kill -9`; it is deleted only
once the target has answered 2xx and that is committed (`settle`). The forwarder
(smsmon.ingest.forward) reads what is due (`due`) and says what happened; the body it sends is
the event's raw payload, exactly as received.

    forward_outbox(event_id -> events.id, message_id, created_at, content_type, attempts,
                   next_at, last_at, last_status, last_error)
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from smsmon.lifecycle import Event
from smsmon.store.payloads import codec_for

if TYPE_CHECKING:
    from smsmon.store.writer import Applied, Writer

SHOWN = 20  # rows `smsmon forward status` lists
_INSERT = ("INSERT OR IGNORE INTO forward_outbox (event_id, message_id, created_at, content_type, next_at)"
           " VALUES (?, ?, ?, ?, ?)")


@dataclass(frozen=True)
class Pending:
    """One callback to relay."""

    event_id: int
    message_id: str
    event_key: str
    content_type: str | None
    body: bytes
    attempts: int


@dataclass(frozen=True)
class Attempt:
    """What one try to relay it gave: `ok` (the target answered 2xx), or the HTTP status and the
    error (already free of secrets), and when to try again."""

    event_id: int
    ok: bool
    at: str
    status: int | None = None
    error: str | None = None
    next_at: str | None = None


def add(conn: sqlite3.Connection, events: Sequence[Event], applied: Sequence["Applied"],
        forward: Sequence[str | None]) -> int:
    """Outbox rows for the new (not duplicate) events whose `forward` entry is not None (their
    Content-Type, "" for none). In the caller's transaction."""
    rows = [(a.event_id, a.message_id, ev.received_at, ctype or None, ev.received_at)
            for ev, a, ctype in zip(events, applied, forward) if ctype is not None and not a.duplicate]
    conn.executemany(_INSERT, rows)
    return len(rows)


def settle(writer: "Writer", attempts: Sequence[Attempt]) -> None:
    """Delivered rows go; the others count the try and wait until their next_at. In the
    caller's transaction (a work item of the committer)."""
    conn = writer.conn
    conn.executemany("DELETE FROM forward_outbox WHERE event_id = ?", [(a.event_id,) for a in attempts if a.ok])
    conn.executemany(
        "UPDATE forward_outbox SET attempts = attempts + 1, next_at = ?, last_at = ?, last_status = ?, last_error = ?"
        " WHERE event_id = ?",
        [(a.next_at or a.at, a.at, a.status, (a.error or "")[:500], a.event_id) for a in attempts if not a.ok])


def claim(writer: "Writer", event_ids: Sequence[int], now: str, until: str) -> set[int]:
    """Where several processes relay one outbox (PostgreSQL, two serves): take the rows still due
    at `now` for this process until `until` (their next_at), so that the others skip them; the
    ones another process took first are not returned. In the caller's transaction."""
    marks = ",".join("?" * len(event_ids))
    rows = writer.conn.execute(f"UPDATE forward_outbox SET next_at = ? WHERE event_id IN ({marks}) AND next_at <= ?"
                               " RETURNING event_id", (until, *event_ids, now)).fetchall()
    return {r[0] for r in rows}


def retry_now(writer: "Writer", now: str) -> int:
    """Everything waiting is due now (after the target was fixed); returns how many rows."""
    return writer.conn.execute("UPDATE forward_outbox SET next_at = ? WHERE next_at > ?", (now, now)).rowcount


# ── the read side ───────────────────────────────────────────────────────────────
def due(conn: sqlite3.Connection, now: str, limit: int) -> list[Pending]:
    """The rows due by `now`, soonest first, with their bodies as received."""
    rows = conn.execute(
        "SELECT o.event_id, o.message_id, e.event_key, o.content_type, e.raw, o.attempts"
        " FROM forward_outbox o INDEXED BY ix_forward_outbox_due JOIN events e ON e.id = o.event_id"
        " WHERE o.next_at <= ? ORDER BY o.next_at, o.event_id LIMIT ?", (now, limit)).fetchall()
    codec = codec_for(conn) if rows else None
    return [Pending(r[0], r[1], r[2], r[3], (codec.unpack(r[4]) or "").encode(), r[5]) for r in rows]  # type: ignore[union-attr]


def next_due(conn: sqlite3.Connection) -> str | None:
    """When the soonest row is due, or None when nothing waits."""
    return conn.execute("SELECT min(next_at) FROM forward_outbox").fetchone()[0]


def depth(conn: sqlite3.Connection) -> tuple[int, str | None]:
    """How many rows wait, and the oldest one's created_at."""
    n, oldest = conn.execute("SELECT count(*), min(created_at) FROM forward_outbox").fetchone()
    return n, oldest


def summary(conn: sqlite3.Connection, *, limit: int = SHOWN) -> dict[str, Any]:
    """What waits: how many, since when, the latest failure, and the first `limit` rows."""
    n, oldest = depth(conn)
    last = conn.execute("SELECT event_id, message_id, last_at, last_status, last_error FROM forward_outbox"
                        " WHERE last_error IS NOT NULL ORDER BY last_at DESC LIMIT 1").fetchone()
    cols = ("event_id", "message_id", "created_at", "content_type", "attempts", "next_at", "last_at", "last_status",
            "last_error")
    rows = conn.execute(f"SELECT {', '.join(cols)} FROM forward_outbox ORDER BY event_id LIMIT ?", (limit,)).fetchall()
    return {
        "waiting": n, "oldest": oldest,
        "last_error": None if last is None else dict(zip(("event_id", "message_id", "at", "status", "error"), last)),
        "rows": [dict(zip(cols, r)) for r in rows],
    }
