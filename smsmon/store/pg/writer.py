"""The writer on PostgreSQL: the SQLite writer's batch, merge rule and maintained counts, in one
transaction per batch, safe when several processes write the same database at once.

One transaction, in two parts:

1. The messages the batch touches are locked (`SELECT ... FOR UPDATE`, in id order, so two
   writers never wait for each other in a circle), their stored events read for duplicates, and
   the merge rule (smsmon.lifecycle.apply) run on them. Writers in other processes do this part
   at the same time, on other messages; one that wants a message locked here waits for its commit
   and then reads the message as it was committed: no update is lost.
2. The commit clock's one row is locked (every writer takes it last, after its messages), which
   hands out the batch's event ids and the new messages' seqs; then everything is written and
   committed. Writers pass this part one at a time, so ids grow in commit order, a reader that
   has seen event N has seen every event below N, and the counts every batch adds to are
   updated without waiting in a circle.

A message that did not exist in part 1 may have been created by another writer before part 2:
then the batch is rolled back and done again (it now finds the message, and its events as
duplicates). What the batch acknowledges is committed when `apply` returns, as with SQLite.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Callable, Iterable, Sequence, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg_pool import PoolTimeout

from smsmon.database import PostgresUrl
from smsmon.errors import BatchRaced, StoreError, StoreUnavailable, upgraded_under
from smsmon.lifecycle import Event, MessageState, apply
from smsmon.store import aggregates, deadletters, keyindex, origin, outbox
from smsmon.store.aggregates import Place
from smsmon.store.deadletters import DEAD_LETTER_BYTES, DEAD_LETTER_LIMIT, DeadLetter
from smsmon.store.payloads import Codec
from smsmon.store.pg.connection import Connection, clean, connect, pg_error, pool
from smsmon.store.pg.schema import SCHEMA_LOCK, SCHEMA_VERSION, SHARE_SCHEMA, migrate
from smsmon.store.schema import MESSAGE_COLUMNS
from smsmon.store.writer import (
    _INSERT_EVENT, _INSERT_MESSAGE, _LOAD_MESSAGE, _UPDATE_MESSAGE, _collector_waits, _update_params, EVENTS_MINUTE_KEEP,
    POLL_RUN_COLUMNS, POLL_RUN_LIMIT, RECEIVED_AT, Applied, changes, _flags_text, _message_row, _Slot, _state_from_row,
)
from smsmon.timeutil import fmt, parse_iso

log = logging.getLogger("smsmon.store")

T = TypeVar("T")
RETRIES = 5  # a batch redone because another writer created one of its messages meanwhile: rare twice in a row
CHANNEL_PREFIX = "smsmon:"  # NOTIFY channel: the prefix and the schema, so two smsmon schemas of one database stay apart
UPSERT = {
    "agg_hour": "INSERT INTO agg_hour (span, provider, raw_status, error_code, network, country_code, n, events)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (span, provider, raw_status, error_code, network, country_code)"
                " DO UPDATE SET n = agg_hour.n + excluded.n, events = agg_hour.events + excluded.events",
    "agg_day": "INSERT INTO agg_day (span, provider, raw_status, error_code, network, country_code, n, events)"
               " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (span, provider, raw_status, error_code, network, country_code)"
               " DO UPDATE SET n = agg_day.n + excluded.n, events = agg_day.events + excluded.events",
    "agg_latency_hour": "INSERT INTO agg_latency_hour (span, provider, error_code, network, country_code, bucket, n)"
                        " VALUES (?,?,?,?,?,?,?) ON CONFLICT (span, provider, error_code, network, country_code, bucket)"
                        " DO UPDATE SET n = agg_latency_hour.n + excluded.n",
    "agg_latency_day": "INSERT INTO agg_latency_day (span, provider, error_code, network, country_code, bucket, n)"
                       " VALUES (?,?,?,?,?,?,?) ON CONFLICT (span, provider, error_code, network, country_code, bucket)"
                       " DO UPDATE SET n = agg_latency_day.n + excluded.n",
    "agg_cost_hour": "INSERT INTO agg_cost_hour (span, sent_day, provider, raw_status, error_code, network, country_code,"
                     " priced, cost_micros) VALUES (?,?,?,?,?,?,?,?,?)"
                     " ON CONFLICT (span, sent_day, provider, raw_status, error_code, network, country_code)"
                     " DO UPDATE SET priced = agg_cost_hour.priced + excluded.priced,"
                     " cost_micros = agg_cost_hour.cost_micros + excluded.cost_micros",
}
assert set(UPSERT) == set(aggregates.UPSERT)
BUMP_FACET = ("INSERT INTO facet_counts (dim, value, n) VALUES (?, ?, ?)"
              " ON CONFLICT (dim, value) DO UPDATE SET n = facet_counts.n + excluded.n")


class PgWriter:
    """The writer of one process on a PostgreSQL database (others may write it too). Not
    thread-safe: give it to one thread, as the SQLite Writer."""

    def __init__(self, url: PostgresUrl, *, busy_timeout: float = 5.0, dead_letter_limit: int = DEAD_LETTER_LIMIT,
                 dead_letter_bytes: int = DEAD_LETTER_BYTES, poll_run_limit: int = POLL_RUN_LIMIT,
                 autocheckpoint: bool = True) -> None:
        """Connects and migrates the schema, or raises StoreError saying why not.
        (`autocheckpoint` is SQLite's business: PostgreSQL checkpoints by itself.)"""
        self.url = self.path = url
        self.dead_letter_limit = dead_letter_limit
        self.dead_letter_bytes = dead_letter_bytes
        self.poll_run_limit = poll_run_limit
        conn = connect(url, busy_timeout=busy_timeout, autocommit=True)
        try:
            if conn.execute("SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'").fetchone()[0]:
                raise StoreError(f"PostgreSQL at {url} is read-only (a replica?): smsmon writes to the primary; browse,"
                                 " show, stats and export can read a replica")
            migrate(conn, str(url))
            self.channel = CHANNEL_PREFIX + conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
            self.codec = Codec.of(Connection(conn))  # type: ignore[arg-type]
            self.demo = origin.is_demo(Connection(conn))  # type: ignore[arg-type]  # holds only simulated traffic
        except psycopg.Error as exc:
            raise pg_error(exc, url) from None
        finally:
            conn.close()
        # While the server is away a batch waits for a connection as long as for a lock: then 503.
        self.pool = pool(url, max_size=1, busy_timeout=busy_timeout, autocommit=True, name="smsmon-writer",
                         timeout=busy_timeout)
        self._batches = 0
        # The transaction's connection while `apply`'s or `run`'s work runs (as the SQLite
        # Writer's `conn`), for work written against the writer: outbox.settle, origin.mark_demo.
        self.conn: Connection | None = None

    # What the committer asks of a writer for SQLite's file and its write-ahead log: nothing to do here.
    def verify_file(self) -> None:
        """The file-replaced checks of SQLite: a server has no file at a path to lose."""

    def checkpoint_if_wal_over(self, limit: int) -> None:
        """PostgreSQL checkpoints by itself."""

    def finish_in_old_file(self) -> None:
        """Only for an SQLite file that was replaced."""

    def abandon_wal(self) -> None:
        return None

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> "PgWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, work: Any) -> Any:
        """`work(connection)` in one transaction, done again when another writer raced it. The
        transaction holds its schema's lock shared (a migration takes it alone, schema.migrate), and
        first checks that no newer smsmon has upgraded the schema since this writer opened it:
        what it wrote from then on would miss what the new schema keeps."""
        for attempt in range(RETRIES):
            try:
                with self.pool.connection() as raw, raw.transaction():
                    self.conn = Connection(raw)
                    try:
                        raw.execute(SHARE_SCHEMA, (SCHEMA_LOCK,))
                        (v,) = self.conn.execute("SELECT max(version) FROM schema_versions").fetchone()  # read after the lock
                        if v is not None and v > SCHEMA_VERSION:
                            raise upgraded_under(self.url, v, SCHEMA_VERSION)
                        return work(self.conn)
                    finally:
                        self.conn = None
            except BatchRaced:
                log.debug("batch raced another writer for a new message: again (%d)", attempt + 1)
            except (pgerrors.DeadlockDetected, pgerrors.SerializationFailure) as exc:
                if attempt == RETRIES - 1:
                    raise pg_error(exc, self.url) from None
            except (psycopg.Error, PoolTimeout) as exc:
                raise pg_error(exc, self.url) from None
        raise StoreUnavailable(f"PostgreSQL at {self.url}: the batch raced other writers {RETRIES} times; try again")

    def latest_event_id(self) -> int:
        """The newest event id handed out (committed): the watermark a new reader starts from."""
        return self._run(lambda c: c.execute("SELECT last_event_id FROM commit_clock").fetchone()[0])

    # ── events ────────────────────────────────────────────────────────────────
    def apply(self, events: Sequence[Event], *, dead_letters: Sequence[DeadLetter] = (),
              poll_runs: Sequence[dict[str, object]] = (), forward: Sequence[str | None] | None = None,
              work: Sequence[Callable[["PgWriter"], object]] = ()) -> list[Applied]:
        """Apply a batch of events, dead letters, poll runs and other `work` (each called with
        this writer) in one transaction; when this returns, all of it is durable. `forward`, one
        entry per event: its Content-Type to relay it with (an outbox row), or None. Raises
        StoreUnavailable (server down, locked) with nothing committed."""
        if not events and not dead_letters and not poll_runs and not work:
            return []
        packed = self._packed(events)  # compressed once, outside the transaction
        demo = self.demo

        def batch(conn: Connection) -> list[Applied]:
            self.demo = demo  # as before this try: a raced try is rolled back, the mark with it
            applied = _collector_waits(self._stage, conn, events, packed, forward)
            if dead_letters:
                deadletters.keep(conn, dead_letters, limit=self.dead_letter_limit,  # type: ignore[arg-type]
                                 max_bytes=self.dead_letter_bytes)
            for run in poll_runs:
                self._poll_run(conn, run)
            for w in work:
                w(self)
            if not events:  # the commit clock all the same (writers commit one at a time), and readers hear of
                # dead letters and poll runs too (the app's health line)
                (last,) = conn.execute("SELECT last_event_id FROM commit_clock FOR UPDATE").fetchone()
                conn.execute("SELECT pg_notify(?, ?)", (self.channel, str(last)))
            return applied

        try:
            return self._run(batch)
        except BaseException:
            self.demo = demo  # nothing was committed: the mark is where it was
            raise

    def run(self, work: Callable[["PgWriter"], T]) -> T:
        """`work(self)` in one transaction, committed when this returns."""
        return self._run(lambda conn: work(self))

    def stage(self, events: Sequence[Event], forward: Sequence[str | None] | None = None) -> list[Applied]:
        """Within a transaction (`run`'s work): apply events, and write the outbox rows of the
        new ones that `forward` names (smsmon.store.outbox)."""
        assert self.conn is not None, "stage() runs inside run()'s transaction"
        return _collector_waits(self._stage, self.conn, events, self._packed(events), forward)

    def _packed(self, events: Sequence[Event]) -> list[bytes]:
        """The events' payloads as stored (smsmon.store.payloads)."""
        return list(map(self.codec.packer(), (ev.raw for ev in events)))

    def _stage(self, conn: Connection, events: Sequence[Event], packed: list[bytes],
               forward: Sequence[str | None] | None) -> list[Applied]:
        if not events:
            return []
        if self.demo:
            self.demo = origin.still_demo(conn, events)  # type: ignore[arg-type]
        slots, plan = self._merge(conn, events)
        first_id = self._take_clock(conn, slots, plan)
        applied = self._write(conn, events, packed, slots, plan, first_id)
        if forward is not None:
            outbox.add(conn, events, applied, forward)  # type: ignore[arg-type]
        conn.execute("SELECT pg_notify(?, ?)", (self.channel, str(first_id + len(plan.rows) - 1)))
        return applied

    def dead_letter(self, *, received_at: str, remote: str | None, path: str, reason: str, body: bytes,
                    headers: str | None = None) -> None:
        """Keep one rejected callback in its own transaction (smsmon.store.deadletters)."""
        self.apply([], dead_letters=[DeadLetter(received_at, remote, path, reason, body, headers)])

    def record_poll_run(self, **run: object) -> None:
        self.apply([], poll_runs=[run])

    def _merge(self, conn: Connection, events: Sequence[Event]) -> tuple[dict[str, _Slot], "_Plan"]:
        """Part 1: lock and read the touched messages, decide every event (duplicate or new, and
        its flags) with the merge rule. Nothing is written yet."""
        slots: dict[str, _Slot] = {}
        mids = sorted({clean(e.message_id) for e in events})
        if mids:
            for row in conn.execute(f"SELECT {_LOAD_MESSAGE} FROM messages WHERE id = ANY(?) ORDER BY id FOR UPDATE", (mids,)):
                r = dict(zip(MESSAGE_COLUMNS, row))
                state = _state_from_row(r)
                slots[r["id"]] = _Slot(state, r["seq"], False, r["last_event_id"], Place(state))
            seen: dict[int, tuple[set[str], set[int]]] = {s.seq: (set(), set()) for s in slots.values()}
            if seen:
                for seq, key, fp in conn.execute("SELECT message_seq, event_key, fingerprint FROM events"
                                                 " WHERE message_seq = ANY(?)", (list(seen),)):
                    seen[seq][0].add(key)
                    seen[seq][1].add(fp)
                for slot in slots.values():
                    slot.seen = seen[slot.seq]
        plan = _Plan()
        for ev in events:
            mid = clean(ev.message_id)
            slot = slots.get(mid)
            if slot is None:
                slot = slots[mid] = _Slot(MessageState(ev.provider, ev.provider_message_id), 0, True, None, None)
                plan.new.append(mid)
            key, fp = (mid, clean(ev.event_key)), (mid, ev.fingerprint)
            duplicate = key in plan.keys or fp in plan.fps
            if not duplicate and slot.seen is not None:
                duplicate = key[1] in slot.seen[0] or ev.fingerprint in slot.seen[1]
            if duplicate:
                slot.state.duplicates_count += 1
                plan.results.append((ev, mid, None, frozenset()))
                continue
            plan.keys.add(key)
            plan.fps.add(fp)
            flags = apply(slot.state, ev)
            plan.results.append((ev, mid, len(plan.rows), flags))
            plan.rows.append((ev, mid, flags))
        return slots, plan

    def _take_clock(self, conn: Connection, slots: dict[str, _Slot], plan: "_Plan") -> int:
        """Part 2 begins: the commit clock, then ids. Returns the batch's first event id."""
        last_id, last_seq = conn.execute(
            "UPDATE commit_clock SET last_event_id = last_event_id + ?, last_seq = last_seq + ? WHERE id = 1"
            " RETURNING last_event_id, last_seq", (len(plan.rows), len(plan.new))).fetchone()
        if plan.new and conn.execute("SELECT 1 FROM messages WHERE id = ANY(?) LIMIT 1", (plan.new,)).fetchone():
            raise BatchRaced()
        for i, mid in enumerate(plan.new):
            slots[mid].seq = last_seq - len(plan.new) + 1 + i
        return last_id - len(plan.rows) + 1

    def _write(self, conn: Connection, events: Sequence[Event], packed: list[bytes], slots: dict[str, _Slot],
               plan: "_Plan", first_id: int) -> list[Applied]:
        raw_of = {id(ev): p for ev, p in zip(events, packed)}
        event_rows = []
        for i, (ev, mid, flags) in enumerate(plan.rows):
            slot = slots[mid]
            slot.last_event_id = first_id + i
            event_rows.append((
                first_id + i, ev.event_key, slot.seq, ev.source, ev.event_type, ev.raw_status, ev.status.value,
                ev.error_code, ev.event_time, ev.received_at, _flags_text(flags), raw_of[id(ev)], ev.fingerprint, ev.sent_at,
            ))
        new_rows = [_message_row(slots[mid]) for mid in plan.new]
        old_rows = [_message_row(s) for mid, s in sorted(slots.items()) if not s.is_new]
        conn.executemany(_INSERT_MESSAGE, new_rows)
        conn.executemany(_UPDATE_MESSAGE, [_update_params(row) for row in old_rows])
        conn.executemany(_INSERT_EVENT, event_rows)
        self._bloom(conn, [(row[0], row[1]) for row in event_rows])
        self._count_minutes(conn, [row[RECEIVED_AT] for row in event_rows])
        self._bump(conn, slots.values())
        return [Applied(ev.event_key, ev.message_id, i is None, None if i is None else first_id + i, flags)
                for ev, mid, i, flags in plan.results]

    def _bloom(self, conn: Connection, rows: Iterable[tuple[int, str]]) -> None:
        """The event id filters of keyindex.py, one row per block of ids, updated in place."""
        by_block: dict[int, list[str]] = {}
        for event_id, key in rows:
            by_block.setdefault(event_id // keyindex.BLOCK, []).append(clean(key))
        if not by_block:
            return
        stored = dict(conn.execute("SELECT block, bloom FROM event_key_blocks WHERE block = ANY(?)", (list(by_block),)))
        out = []
        for block, keys in sorted(by_block.items()):
            bloom = bytearray(stored.get(block) or bytes(keyindex.BITS // 8))
            for key in keys:
                for p in keyindex._positions(key):
                    bloom[p >> 3] |= 1 << (p & 7)
            out.append((block, bytes(bloom)))
        conn.executemany("INSERT INTO event_key_blocks (block, bloom) VALUES (?, ?)"
                         " ON CONFLICT (block) DO UPDATE SET bloom = excluded.bloom", out)

    def _count_minutes(self, conn: Connection, received: list[str]) -> None:
        minutes = Counter(t[:16] for t in received)
        conn.executemany("INSERT INTO events_minute (minute, n) VALUES (?, ?)"
                         " ON CONFLICT (minute) DO UPDATE SET n = events_minute.n + excluded.n", sorted(minutes.items()))
        self._batches += 1
        if self._batches % 1000 == 1 and minutes:
            oldest = fmt(parse_iso(max(minutes) + ":00Z") - EVENTS_MINUTE_KEEP)[:16]
            conn.execute("DELETE FROM events_minute WHERE minute < ?", (oldest,))

    def _bump(self, conn: Connection, slots: Iterable[_Slot]) -> None:
        """facet_counts and the aggregates, as the SQLite writer keeps them."""
        delta, moves = changes(slots)
        conn.executemany(BUMP_FACET, sorted((d, v, n) for (d, v), n in delta.items() if n))
        for table, rows in moves.rows():
            conn.executemany(UPSERT[table], sorted(rows))

    # ── dead letters and poll runs ───────────────────────────────────────────
    def _poll_run(self, conn: Connection, run: dict[str, object]) -> None:
        cols = [c for c in POLL_RUN_COLUMNS if c in run]
        new_id = conn.execute(f"INSERT INTO poll_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING id",
                              [run[c] for c in cols]).fetchone()[0]
        conn.execute("DELETE FROM poll_runs WHERE id <= ?", (new_id - self.poll_run_limit,))


class _Plan:
    """Part 1's decisions: the events to store (in order), the new messages, each event's outcome."""

    __slots__ = ("rows", "new", "results", "keys", "fps")

    def __init__(self) -> None:
        self.rows: list[tuple[Event, str, frozenset[str]]] = []
        self.new: list[str] = []
        self.results: list[tuple[Event, str, int | None, frozenset[str]]] = []
        self.keys: set[tuple[str, str]] = set()
        self.fps: set[tuple[str, int]] = set()
