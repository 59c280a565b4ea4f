"""Retention on PostgreSQL (issue 14 on issue 15's store): store.prune's batches, with the locks
that several writers on one database need, and the same exact accounting.

A batch is one transaction, in the writers' order (store.pg.writer): first the messages it
removes are locked (`FOR UPDATE`, in id order; one that a writer changed meanwhile is looked at
again as committed, and stays when it is no longer older than the cut-off), then the commit
clock, then the counts are updated and the rows deleted. So a prune never takes away a count a
writer has just moved, and a writer that wants a message being pruned waits for the batch and
then finds it gone (a late callback starts the message again, as on SQLite).

Space: PostgreSQL's autovacuum makes the space of deleted rows reusable by new data; the
database does not shrink by itself (`VACUUM FULL`, by an administrator, gives it back).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

from smsmon.database import PostgresUrl
from smsmon.store import keyindex
from smsmon.store.pg.connection import Connection
from smsmon.store.pg.writer import BUMP_FACET, UPSERT, PgWriter
from smsmon.store.prune import AGG_ROWS, BATCH, Batch, PruneResult, _newest, leaving, plan, prune_others
from smsmon.store.schema import MESSAGE_COLUMNS
from smsmon.store.totals import PRUNED_EVENTS

_LOAD = ", ".join(MESSAGE_COLUMNS)


def prune_batch(conn: Connection, cutoff: str, limit: int = BATCH) -> Batch:
    """Remove up to `limit` of the oldest messages older than `cutoff` and their part of every
    maintained count. Inside a transaction of a PgWriter (`run`)."""
    keep = _newest(conn)  # type: ignore[arg-type]
    rows = conn.execute(
        f"SELECT {_LOAD} FROM messages WHERE seq IN (SELECT seq FROM messages WHERE last_event_at < ? AND seq NOT IN (?, ?)"
        " ORDER BY last_event_at LIMIT ?) AND last_event_at < ? ORDER BY id FOR UPDATE", (cutoff, *keep, limit, cutoff)).fetchall()
    if not rows:
        return Batch()
    conn.execute("SELECT last_event_id FROM commit_clock FOR UPDATE")  # last, as every writer takes it
    facets, moves, seqs, ids = leaving(rows)
    oldest_minute = conn.execute("SELECT min(minute) FROM events_minute").fetchone()[0]
    minutes: Counter[str] = Counter()
    blocks: set[int] = set()
    n_events = 0
    for event_id, received in conn.execute("SELECT id, received_at FROM events WHERE message_seq = ANY(?)", (seqs,)):
        n_events += 1
        blocks.add(event_id // keyindex.BLOCK)
        if oldest_minute is not None and received[:16] >= oldest_minute:
            minutes[received[:16]] -= 1
    # The outbox rows first, by their message, so that they are counted (as on SQLite).
    outbox = conn.execute("DELETE FROM forward_outbox WHERE message_id = ANY(?)", (ids,)).rowcount
    conn.execute("DELETE FROM events WHERE message_seq = ANY(?)", (seqs,))
    conn.execute("DELETE FROM messages WHERE seq = ANY(?)", (seqs,))

    facets[PRUNED_EVENTS] += n_events
    conn.executemany(BUMP_FACET, sorted((d, v, n) for (d, v), n in facets.items() if n))
    conn.execute("DELETE FROM facet_counts WHERE n = 0")
    for table, upserts in moves.rows():
        upserts = sorted(upserts)
        conn.executemany(UPSERT[table], upserts)
        where, width, empty = AGG_ROWS[table]
        conn.executemany(f"DELETE FROM {table} WHERE {where} AND {empty}", [u[:width] for u in upserts])
    conn.executemany("UPDATE events_minute SET n = n + ? WHERE minute = ?", sorted((n, m) for m, n in minutes.items()))
    conn.execute("DELETE FROM events_minute WHERE n <= 0")
    for block in sorted(blocks):
        lo, hi = block * keyindex.BLOCK, (block + 1) * keyindex.BLOCK
        if conn.execute("SELECT 1 FROM events WHERE id >= ? AND id < ? LIMIT 1", (lo, hi)).fetchone() is None:
            conn.execute("DELETE FROM event_key_blocks WHERE block = ?", (block,))
    return Batch(len(seqs), n_events, outbox)


def run_batch(writer: PgWriter, cutoff: str, limit: int = BATCH) -> Batch:
    """One batch in its own transaction. Raises StoreError (nothing removed)."""
    return writer.run(lambda w: prune_batch(w.conn, cutoff, limit))  # type: ignore[arg-type]


def run_others(writer: PgWriter, cutoff: str) -> tuple[int, int, int]:
    return writer.run(lambda w: prune_others(w.conn, cutoff))  # type: ignore[arg-type]


def prune(writer: PgWriter, cutoff: str, *, batch: int = BATCH, vacuum: str = "incremental",
          progress: Callable[[int], None] | None = None, share: bool = True) -> PruneResult:
    """Prune in batches through `writer`, each its own transaction (writers in other processes
    wait for one batch at most: row locks, not a lock of the whole database)."""
    started = time.perf_counter()
    result = PruneResult(cutoff, vacuum="server")  # autovacuum: see the module's docstring
    while True:
        t0 = time.perf_counter()
        done = run_batch(writer, cutoff, batch)
        result.count(done, time.perf_counter() - t0)
        if not done.messages:
            break
        if progress:
            progress(result.messages)
    result.poll_runs, result.dead_letters, orphans = run_others(writer, cutoff)
    result.outbox += orphans

    def kept(w: Any) -> bool:
        keep = _newest(w.conn)
        return w.conn.execute("SELECT count(*) FROM messages WHERE seq IN (?, ?) AND last_event_at < ?",
                              (*keep, cutoff)).fetchone()[0] > 0

    result.kept_newest = writer.run(kept)
    result.seconds = time.perf_counter() - started
    return result


def plan_db(url: PostgresUrl, cutoff: str) -> PruneResult:
    """A dry run, read only. Raises StoreError."""
    from smsmon.store.pg.reader import PgReader

    with PgReader(url, pool_size=1) as reader:
        return reader.call(plan, cutoff)


def prune_db(url: PostgresUrl, cutoff: str, *, busy_timeout: float = 5.0, **kwargs: Any) -> tuple[PruneResult, int]:
    """`prune` through a writer of its own: the result, and the database's size after (bytes)."""
    from smsmon.store.pg.admin import bytes_on_disk

    with PgWriter(url, busy_timeout=busy_timeout) as writer:
        result = prune(writer, cutoff, **kwargs)
    return result, bytes_on_disk(url)
