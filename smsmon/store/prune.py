"""Retention (issue 14): remove messages whose latest activity is older than a cut-off, with their
events and forward-outbox rows, and poll runs and dead letters of the same age; and take exactly
what those messages contributed out of every count the writer maintains, in the transaction
that deletes them, so that every figure read afterwards equals a recount of the rows left.

What a message contributes, and where it is taken out (the writer puts it in, writer.py):
- `facet_counts`: one count per dimension of `aggregates.FACETS` (status, outcome, provider, error
  code, network, country, failures by code, network and status, the latency bucket), and
- `agg_hour` / `agg_day` (one row each, with its events) and `agg_latency_*` (delivered ones):
  all from the message's `Place`, moved out with `Deltas` as the writer moves it between places;
- `events_minute`: its events by minute of arrival, for the minutes still kept there;
- the events themselves: the unfiltered event total is the newest events.id less the events
  pruned so far, which is kept in `facet_counts` as ('pruned', 'events') (`stored_events`);
- `event_key_blocks`: a Bloom filter cannot forget a key (a stale bit only costs a lookup), so a
  block's filter goes only once every event of the block has gone.

The newest message (by arrival, and the one holding the newest event) is never pruned: the
writer numbers new events and messages after the largest ones stored, and the app follows new
events by that number, so the largest must stay for numbers never to be given twice.

Work goes in batches of BATCH messages, one transaction each, so that a writer in another
process (or the callbacks queued behind a batch in the same one) waits for one batch at most.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from smsmon.database import is_postgres
from smsmon.store import aggregates, keyindex
from smsmon.store.aggregates import Deltas, Place
from smsmon.store.schema import MESSAGE_COLUMNS, open_readonly, store_error
from smsmon.store.totals import PRUNED_EVENTS
from smsmon.store.writer import _BUMP_FACET, Writer, _state_from_row

# Messages per transaction. Measured on the 1M-event database (`smsmon bench months`): a message
# costs 75-120 us to delete and uncount, whatever the batch, so a batch of 250 took 20 ms, 500
# 37 ms, 1,000 97 ms, 2,000 241 ms (medians): 500 keeps the wait of a callback queued behind a
# batch short and loses no speed.
BATCH = 500
# Pages given back to the file system per step of incremental vacuum (2 KiB pages: 2 MiB a step).
# Measured: 1,000 pages took 13 ms, 4,096 took 79 ms.
VACUUM_STEP = 1024

_LOAD = ", ".join(MESSAGE_COLUMNS)
_BY_DIMS = "span = ? AND provider = ? AND raw_status = ? AND error_code = ? AND network = ? AND country_code = ?"
_BY_BUCKET = "span = ? AND provider = ? AND error_code = ? AND network = ? AND country_code = ? AND bucket = ?"
# Per aggregate table: one row by its key (the first `width` values of an upsert), and when it is
# empty (then deleted, so that pruned spans leave no rows behind). Both stores' prunes use these.
AGG_ROWS: dict[str, tuple[str, int, str]] = {
    "agg_hour": (_BY_DIMS, 6, "n = 0 AND events = 0"),
    "agg_day": (_BY_DIMS, 6, "n = 0 AND events = 0"),
    "agg_latency_hour": (_BY_BUCKET, 6, "n = 0"),
    "agg_latency_day": (_BY_BUCKET, 6, "n = 0"),
    "agg_cost_hour": ("span = ? AND sent_day = ? AND provider = ? AND raw_status = ? AND error_code = ? AND network = ?"
                      " AND country_code = ?", 7, "priced = 0 AND cost_micros = 0"),
}


@dataclass
class PruneResult:
    """What a prune removed (or, dry, would remove)."""

    cutoff: str
    dry_run: bool = False
    messages: int = 0
    events: int = 0
    outbox: int = 0
    poll_runs: int = 0
    dead_letters: int = 0
    kept_newest: bool = False  # the newest message is older than the cut-off and was kept (see the module's docstring)
    batches: int = 0
    seconds: float = 0.0
    longest_batch_s: float = 0.0
    pages_freed: int = 0
    bytes_freed: int = 0
    vacuum: str = "incremental"  # incremental | none (made without auto_vacuum) | full | skipped | refused (another writer)
    # | server (PostgreSQL: its autovacuum)
    shared: bool = False  # another process wrote the database meanwhile, so batches paused for it

    def count(self, done: "Batch", seconds: float) -> None:
        """One batch run: its time, and (when it removed any) what it removed."""
        self.longest_batch_s = max(self.longest_batch_s, seconds)
        if done.messages:
            self.batches += 1
            self.messages += done.messages
            self.events += done.events
            self.outbox += done.outbox

    @property
    def removed_anything(self) -> bool:
        return bool(self.messages or self.outbox or self.poll_runs or self.dead_letters)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _newest(conn: sqlite3.Connection) -> tuple[int, int]:
    """The seqs never pruned: the newest message, and the message of the newest event."""
    top_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
    row = conn.execute("SELECT message_seq FROM events ORDER BY id DESC LIMIT 1").fetchone()
    return top_seq, row[0] if row else top_seq


# ── what would go ────────────────────────────────────────────────────────────────
def leaving(rows: Iterable[Sequence[Any]]) -> tuple[Counter[tuple[str, str]], Deltas, list[int], list[str]]:
    """What pruning these `messages` rows takes out of facet_counts and the aggregates, with
    their seqs and ids: the same for every store."""
    moves = Deltas()
    seqs, ids = [], []
    for row in rows:
        r = dict(zip(MESSAGE_COLUMNS, row))
        moves.move(Place(_state_from_row(r)), None)  # out of its counts, into none
        seqs.append(r["seq"])
        ids.append(r["id"])
    return Counter(moves.facets()), moves, seqs, ids


def plan(conn: sqlite3.Connection, cutoff: str) -> PruneResult:
    """A dry run: what `prune` would remove now, read only."""
    keep = _newest(conn)
    messages, events = conn.execute(
        "SELECT count(*), coalesce(sum(events_count), 0) FROM messages INDEXED BY ix_messages_time"
        " WHERE last_event_at < ? AND seq NOT IN (?, ?)", (cutoff, *keep)).fetchone()
    kept = conn.execute("SELECT count(*) FROM messages WHERE seq IN (?, ?) AND last_event_at < ?", (*keep, cutoff)).fetchone()[0]
    result = PruneResult(cutoff, dry_run=True, messages=messages, events=events, kept_newest=kept > 0)
    result.poll_runs = conn.execute("SELECT count(*) FROM poll_runs WHERE started_at < ?", (cutoff,)).fetchone()[0]
    result.dead_letters = conn.execute("SELECT count(*) FROM dead_letters WHERE received_at < ?", (cutoff,)).fetchone()[0]
    result.outbox = conn.execute(
        "SELECT count(*) FROM forward_outbox WHERE created_at < ? OR message_id IN (SELECT id FROM messages"
        " INDEXED BY ix_messages_time WHERE last_event_at < ? AND seq NOT IN (?, ?))", (cutoff, cutoff, *keep)).fetchone()[0]
    return result


# ── one batch ───────────────────────────────────────────────────────────────────
@dataclass
class Batch:
    messages: int = 0
    events: int = 0
    outbox: int = 0


def prune_batch(conn: sqlite3.Connection, cutoff: str, limit: int = BATCH) -> Batch:
    """Remove up to `limit` of the oldest messages older than `cutoff` and their contribution to
    every maintained count. Call inside a write transaction (`Writer` runs it in one)."""
    keep = _newest(conn)
    rows = conn.execute(f"SELECT {_LOAD} FROM messages INDEXED BY ix_messages_time WHERE last_event_at < ?"
                        " AND seq NOT IN (?, ?) ORDER BY last_event_at LIMIT ?", (cutoff, *keep, limit)).fetchall()
    if not rows:
        return Batch()
    facets, moves, seqs, ids = leaving(rows)
    marks = ",".join("?" * len(seqs))
    oldest_minute = conn.execute("SELECT min(minute) FROM events_minute").fetchone()[0]
    minutes: Counter[str] = Counter()
    blocks: set[int] = set()
    n_events = 0
    for event_id, received in conn.execute(f"SELECT id, received_at FROM events WHERE message_seq IN ({marks})", seqs):
        n_events += 1
        blocks.add(event_id // keyindex.BLOCK)
        if oldest_minute is not None and received[:16] >= oldest_minute:
            minutes[received[:16]] -= 1
    # The outbox rows first, by their message (ix_forward_outbox_message), so that they are
    # counted: deleting the events would take them anyway (ON DELETE CASCADE), uncounted.
    outbox = conn.execute(f"DELETE FROM forward_outbox WHERE message_id IN ({marks})", ids).rowcount
    conn.execute(f"DELETE FROM events WHERE message_seq IN ({marks})", seqs)
    conn.execute(f"DELETE FROM messages WHERE seq IN ({marks})", seqs)

    facets[PRUNED_EVENTS] += n_events
    conn.executemany(_BUMP_FACET, [(d, v, n) for (d, v), n in facets.items() if n])
    conn.execute("DELETE FROM facet_counts WHERE n = 0")
    for table, upserts in moves.rows():
        conn.executemany(aggregates.UPSERT[table], upserts)
        where, width, empty = AGG_ROWS[table]
        conn.executemany(f"DELETE FROM {table} WHERE {where} AND {empty}", [u[:width] for u in upserts])
    conn.executemany("UPDATE events_minute SET n = n + ? WHERE minute = ?", [(n, m) for m, n in minutes.items()])
    conn.execute("DELETE FROM events_minute WHERE n <= 0")
    for block in blocks:
        lo, hi = block * keyindex.BLOCK, (block + 1) * keyindex.BLOCK
        if conn.execute("SELECT 1 FROM events WHERE id >= ? AND id < ? LIMIT 1", (lo, hi)).fetchone() is None:
            conn.execute("DELETE FROM event_key_blocks WHERE block = ?", (block,))
    return Batch(len(seqs), n_events, outbox)


def prune_others(conn: sqlite3.Connection, cutoff: str) -> tuple[int, int, int]:
    """Poll runs and dead letters older than the cut-off, and outbox rows queued before it (their
    messages may be newer): (poll runs, dead letters, outbox rows). Both tables are bounded
    (100,000 and 10,000 rows), so reading them whole is cheap. Inside a write transaction."""
    runs = conn.execute("DELETE FROM poll_runs WHERE started_at < ?", (cutoff,)).rowcount
    letters = conn.execute("DELETE FROM dead_letters WHERE received_at < ?", (cutoff,)).rowcount
    outbox = conn.execute("DELETE FROM forward_outbox WHERE created_at < ?", (cutoff,)).rowcount
    return runs, letters, outbox


# ── space ───────────────────────────────────────────────────────────────────────
def incremental(conn: sqlite3.Connection) -> bool:
    """Whether the file can give space back a step at a time (auto_vacuum=INCREMENTAL: every
    database smsmon creates; older files and ones made elsewhere may not)."""
    return conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2


def free_pages(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA freelist_count").fetchone()[0]


def vacuum_step(conn: sqlite3.Connection, pages: int = VACUUM_STEP) -> int:
    """Give up to `pages` free pages back to the file system (the file shrinks); the pages freed.
    Outside a transaction: the pragma commits by itself."""
    before = page_count(conn)
    # executescript steps the pragma to its end; execute() would step it once, freeing one page.
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
    return before - page_count(conn)  # free pages, and the pointer-map pages that kept track of them


def page_count(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA page_count").fetchone()[0]


def page_size(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA page_size").fetchone()[0]


# ── through a writer (its transactions, its checks of the file, smsmon's errors) ───
def run_batch(writer: Writer, cutoff: str, limit: int = BATCH) -> Batch:
    """One batch in its own transaction. Raises StoreError (nothing removed)."""
    if not isinstance(writer, Writer):  # PostgreSQL's writer: the same batch with row locks (store.pg.prune)
        from smsmon.store.pg import prune as pg

        return pg.run_batch(writer, cutoff, limit)
    return writer._transaction(lambda: prune_batch(writer.conn, cutoff, limit))


def run_others(writer: Writer, cutoff: str) -> tuple[int, int, int]:
    if not isinstance(writer, Writer):
        from smsmon.store.pg import prune as pg

        return pg.run_others(writer, cutoff)
    return writer._transaction(lambda: prune_others(writer.conn, cutoff))


def step_vacuum(writer: Writer, pages: int = VACUUM_STEP) -> int:
    """One step of incremental vacuum (0 when there is nothing to give back, or the file cannot
    shrink in steps). Raises StoreError."""
    if not isinstance(writer, Writer):
        return 0  # PostgreSQL: autovacuum makes the space reusable; the server gives back nothing by steps
    try:
        if not incremental(writer.conn) or free_pages(writer.conn) == 0:
            return 0
        writer.verify_file()
        return vacuum_step(writer.conn, pages)
    except sqlite3.Error as exc:
        raise store_error(exc, writer.path) from None


# ── the whole run, for `smsmon prune` ───────────────────────────────────────────
QUICK_PAUSE_S = 0.005  # after every batch: a writer whose sleep just ended gets in, and is seen
SHARE_PAUSE_S = 0.1  # the longest step of SQLite's busy handler: a waiting writer wakes within it
LOOK_S = 0.25  # at start: how long to watch for another writer's commits
SHARE_BATCH_S = 0.02  # while sharing, batches sized to hold the write lock about this long
SHARE_MIN_BATCH = 50


def data_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA data_version").fetchone()[0]


class Sharing:
    """Whether another process writes the same database (a running `serve`): SQLite's data_version
    changes when another connection commits. A writer waiting for the lock sleeps in steps of up to
    100 ms (SQLite's busy handler), so a prune that took the lock again at once would starve it
    (measured: callbacks' p50 went to 3.7 s beside a prune that did). Once another writer is seen,
    batches shrink to hold the lock about SHARE_BATCH_S, and each is followed by a pause as long as
    the batch and at least SHARE_PAUSE_S."""

    def __init__(self, conn: sqlite3.Connection, *, look: float = LOOK_S) -> None:
        self.conn = conn
        self.version = data_version(conn)
        if look:
            time.sleep(look)
        self.seen = self.changed()

    def changed(self) -> bool:
        now = data_version(self.conn)
        changed, self.version = now != self.version, now
        return changed

    def size(self, batch: int, took: float, most: int) -> int:
        """The next batch's size: while sharing, one that holds the lock about SHARE_BATCH_S."""
        if not self.seen or took <= 0:
            return batch
        return max(SHARE_MIN_BATCH, min(most, int(batch * SHARE_BATCH_S / took)))

    def pause(self, batch_s: float) -> None:
        """After one of our own commits (which does not change our data_version)."""
        time.sleep(QUICK_PAUSE_S)
        self.seen = self.changed() or self.seen
        if self.seen:
            time.sleep(max(SHARE_PAUSE_S, batch_s))
            self.changed()


def prune(writer: Writer, cutoff: str, *, batch: int = BATCH, vacuum: str = "incremental",
          progress: Callable[[int], None] | None = None, share: bool = True) -> PruneResult:
    """Prune in batches through `writer`, each in its own transaction, then give the space back:
    `vacuum` is "incremental" (in steps, writers get in between), "full" (VACUUM: the file is
    rebuilt, smallest, and no one can write until it ends) or "skipped" (free pages are reused
    by new data; the file does not shrink). With `share`, when another process is seen writing
    the same file, each batch and vacuum step leaves it room (Sharing)."""
    conn = writer.conn
    started = time.perf_counter()
    result = PruneResult(cutoff)
    sharing = Sharing(conn, look=LOOK_S if share else 0)
    size = batch
    while True:
        t0 = time.perf_counter()
        done = run_batch(writer, cutoff, size)
        took = time.perf_counter() - t0
        result.count(done, took)
        if not done.messages:
            break
        if progress:
            progress(result.messages)
        if share:
            sharing.pause(took)
            size = sharing.size(size, took, batch)
    result.poll_runs, result.dead_letters, orphans = run_others(writer, cutoff)
    result.outbox += orphans
    keep = _newest(conn)
    result.kept_newest = conn.execute("SELECT count(*) FROM messages WHERE seq IN (?, ?) AND last_event_at < ?",
                                      (*keep, cutoff)).fetchone()[0] > 0
    if vacuum == "full" and sharing.seen:
        result.vacuum = "refused"  # it would hold the other writer up for seconds, past its busy timeout
    else:
        result.vacuum, result.pages_freed = reclaim(writer, vacuum, sharing=sharing if share else None)
    result.bytes_freed = result.pages_freed * page_size(conn)
    result.seconds = time.perf_counter() - started
    result.shared = sharing.seen
    return result


def reclaim(writer: Writer, how: str = "incremental", *, sharing: Sharing | None = None) -> tuple[str, int]:
    """Give the free pages back to the file system: (what was done, pages given back). What was
    done is "incremental", "full", "skipped", or "none" when the file cannot shrink a step at a
    time (made without auto_vacuum: `--vacuum full` once makes it able to)."""
    conn = writer.conn
    freed = 0
    if how == "full":
        before = page_count(conn)
        writer.verify_file()
        try:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect with the VACUUM: later prunes shrink in steps
            conn.execute("VACUUM")
        except sqlite3.Error as exc:
            raise store_error(exc, writer.path) from None
        freed = before - page_count(conn)
    elif how == "incremental":
        if not incremental(conn):
            return "none", 0
        while True:
            t0 = time.perf_counter()
            if not (step := step_vacuum(writer)):
                break
            freed += step
            if sharing is not None:
                sharing.pause(time.perf_counter() - t0)
    return how, freed


# ── on a file, for the command line ─────────────────────────────────────────────
def plan_file(path: str | Path, cutoff: str) -> PruneResult:
    """A dry run on a database file (or a PostgreSQL database), read only. Raises StoreError."""
    if is_postgres(path):
        from smsmon.store.pg import prune as pg

        return pg.plan_db(path, cutoff)  # type: ignore[arg-type]
    conn = open_readonly(path)
    try:
        return plan(conn, cutoff)
    except sqlite3.Error as exc:
        raise store_error(exc, path) from None
    finally:
        conn.close()


def prune_file(path: str | Path, cutoff: str, *, busy_timeout: float = 5.0, **kwargs: Any) -> tuple[PruneResult, int]:
    """`prune` on a database file, through a writer of its own (it waits up to `busy_timeout`
    for a `serve` writing the same file, a batch at a time): the result, and the file's size after.
    Raises StoreError."""
    if is_postgres(path):
        from smsmon.store.pg import prune as pg

        return pg.prune_db(path, cutoff, busy_timeout=busy_timeout, **kwargs)  # type: ignore[arg-type]
    with Writer(path, busy_timeout=busy_timeout) as writer:
        result = prune(writer, cutoff, **kwargs)
        try:
            writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # so the size below is the file's own
        except sqlite3.Error:
            pass  # a reader holds the log: the size then includes what waits in it
        return result, page_count(writer.conn) * page_size(writer.conn)


def cutoff_for_share(path: str | Path, share: float) -> str:
    """The cut-off below which `share` of the messages fall (by latest activity): for benchmarks."""
    conn = open_readonly(path)
    try:
        total = conn.execute("SELECT coalesce(sum(n), 0) FROM facet_counts WHERE dim = 'provider'").fetchone()[0]
        row = conn.execute("SELECT last_event_at FROM messages INDEXED BY ix_messages_time ORDER BY last_event_at"
                           " LIMIT 1 OFFSET ?", (int(total * share),)).fetchone()
        return row[0] if row else "9999"
    finally:
        conn.close()
