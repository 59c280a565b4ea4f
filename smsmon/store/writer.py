"""The one writer (SPEC §2): applies batches of events in single transactions with the merge rule.

Per batch: one query per chunk of messages loads the touched messages, and one more reads the
event ids and fingerprints they have stored (rule 1); then the merge runs in Python
(smsmon.lifecycle.apply), and events and messages are written with executemany. Each message
is written once per batch, however many of its events the batch holds. The maintained counts
(facet_counts and the aggregates) move each changed message from its Place before the batch to
its Place after it, added up per Place key: a batch writes a row per distinct key, not per message.
"""

from __future__ import annotations

import functools
import gc
import os
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence, TypeVar

from smsmon.lifecycle import ATTRIBUTES, Event, MessageState, Status, apply, is_final, outcome_of
from smsmon.errors import DatabaseGone, upgraded_under
from smsmon.store import aggregates, deadletters, keyindex, origin, outbox
from smsmon.store.aggregates import Deltas, Place
from smsmon.store.deadletters import DEAD_LETTER_BYTES, DEAD_LETTER_LIMIT, DeadLetter
from smsmon.store.payloads import Codec
from smsmon.store.stamps import decode_attr_at, encode_attr_at
from smsmon.timeutil import fmt, parse_iso
from smsmon.store.schema import (MESSAGE_COLUMNS, SCHEMA_VERSION, STORED_MESSAGE_COLUMNS, check_writable, connect, migrate,
                                 store_error)

WAL_SIZE_LIMIT = 4 * 1024 * 1024  # bytes of WAL file kept after it restarts (the committer's WAL_LIMIT)
POLL_RUN_LIMIT = 100_000
EVENTS_MINUTE_KEEP = timedelta(days=2)
CHUNK = 500
T = TypeVar("T")
POLL_RUN_COLUMNS = ("provider", "started_at", "finished_at", "ok", "http_status", "api_code", "rows_seen", "new_events",
                    "error_code", "error")
FACETS = aggregates.FACETS  # the dimensions of facet_counts

_MSG_COLS = STORED_MESSAGE_COLUMNS  # written; the generated ones are computed by SQLite
_LOAD_MESSAGE = ", ".join(MESSAGE_COLUMNS)
_INSERT_MESSAGE = f"INSERT INTO messages ({', '.join(_MSG_COLS)}) VALUES ({', '.join('?' * len(_MSG_COLS))})"
# An update sets every column but the three a message never changes (id, seq, provider: the first
# three of a row). Naming seq would have SQLite check the events that refer to it, for every row.
_FIXED = 3
_UPDATE_MESSAGE = f"UPDATE messages SET {', '.join(f'{c} = ?' for c in _MSG_COLS[_FIXED:])} WHERE id = ?"


def _update_params(row: tuple) -> tuple:
    """_UPDATE_MESSAGE's parameters from a _message_row."""
    return row[_FIXED:] + row[:1]


_INSERT_EVENT = (
    "INSERT INTO events (id, event_key, message_seq, source, event_type, raw_status, status, error_code, event_time,"
    " received_at, flags, raw, fingerprint, sent_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
RECEIVED_AT = 9  # the position of received_at in an event row
_BUMP_FACET = (
    "INSERT INTO facet_counts (dim, value, n) VALUES (?, ?, ?)"
    " ON CONFLICT (dim, value) DO UPDATE SET n = n + excluded.n"
)
# Rule 1 of the merge: the event ids and fingerprints already stored for the batch's messages.
_SEEN = "SELECT message_seq, event_key, fingerprint FROM events WHERE message_seq IN ({})"


class Applied(NamedTuple):
    """What happened to one event of a batch."""

    event_key: str
    message_id: str
    duplicate: bool
    event_id: int | None  # events.id, None for a duplicate
    flags: frozenset[str]


_applied = functools.partial(tuple.__new__, Applied)  # Applied from a tuple, without its Python __new__ (per event)
_NO_FLAGS: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Slot:
    state: MessageState
    seq: int
    is_new: bool
    last_event_id: int | None
    place: Place | None  # where it was counted in the aggregates before this batch (None: new)
    # The event keys and fingerprints stored for it, and (in the SQLite writer, which adds them as it
    # goes) those of this batch so far: rule 1. None for a new message in the PostgreSQL writer.
    seen: tuple[set[str], set[int]] | None = None


SQLITE_HEADER = b"SQLite format 3\x00"


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _identity_or_none(path: Path) -> tuple[int, int] | None:
    try:
        return _identity(path)
    except OSError:
        return None


def _flags_text(flags: Iterable[str]) -> str | None:
    return ",".join(sorted(flags)) or None


def _facet_values(state: MessageState) -> tuple[str | None, ...]:
    """The message's value of each of FACETS."""
    _, status, raw_status, d, b, _ = Place(state).key
    return aggregates.facet_values(status, raw_status, d, b)


_STATUS = {s.value: s for s in Status}  # a dict, not Status(text): the enum's call is ten times slower


def _state_from_row(r: dict[str, Any]) -> MessageState:
    return MessageState(
        provider=r["provider"],
        provider_message_id=r["id"][len(r["provider"]) + 1:],  # from the key itself (SQLite's text functions stop at a NUL)
        status=_STATUS.get(r["status"]) or Status(r["status"]),
        raw_status=r["raw_status"],
        error_code=r["error_code"],
        status_at=r["status_at"],
        status_key=r["status_key"],
        attrs={k: r[k] for k in ATTRIBUTES if r[k] is not None},
        attr_at=decode_attr_at(r["attr_at"], [r["status_at"], r["status_key"]]),
        first_event_at=r["first_event_at"],
        last_event_at=r["last_event_at"],
        sent_at=r["sent_at"],
        events_count=r["events_count"],
        duplicates_count=r["duplicates_count"],
        flags=set(r["flags"].split(",")) if r["flags"] else set(),
    )


# The columns _message_row writes, in its order; checked against the table's below.
_ROW_COLUMNS = ("id", "seq", "provider", "src", "dest", "status", "raw_status", "outcome", "is_final", "error_code",
                "network", "country_code", "segments", "units", "attempts", "cost", "reference", "first_event_at",
                "last_event_at", "events_count", "duplicates_count", "flags", "status_at", "status_key", "attr_at",
                "last_event_id", "deliver_seconds", "sent_at")
if _ROW_COLUMNS != _MSG_COLS:  # pragma: no cover - a schema change that forgot the row
    raise ImportError(f"writer._message_row writes {_ROW_COLUMNS}, the messages table has {_MSG_COLS}")


def _message_row(slot: _Slot) -> tuple:
    """The `messages` row of a slot, in _ROW_COLUMNS order: written out, the one function of the
    writer run per message per batch (a dict put in column order took twice as long)."""
    s = slot.state
    a = s.attrs.get
    provider, status, status_at = s.provider, s.status, s.status_at
    final = is_final(provider, status)
    return (
        s.id, slot.seq, provider, a("src"), a("dest"), status._value_, s.raw_status, outcome_of(provider, status)._value_,
        int(final), s.error_code, a("network"), a("country_code"), a("segments"), a("units"), a("attempts"), a("cost"),
        a("reference"), s.first_event_at, s.last_event_at, s.events_count, s.duplicates_count,
        ",".join(sorted(s.flags)) or None, status_at, s.status_key,
        encode_attr_at(s.attr_at, [status_at, s.status_key]) if s.attr_at else None, slot.last_event_id,
        s.deliver_seconds, s.sent_at,
    )


def changes(slots: Iterable[_Slot]) -> tuple[defaultdict[tuple[str, str], int], Deltas]:
    """What a batch's messages change in facet_counts (+1/-1 per (dimension, value)) and in the
    aggregates: the same for every store's writer."""
    moves = Deltas()
    for slot in slots:
        if slot.last_event_id is not None:
            moves.move(slot.place, Place(slot.state))
    return moves.facets(), moves


def _collector_waits(work: Callable[..., list[Applied]], *args: Any) -> list[Applied]:
    """work(arg) with Python's cyclic garbage collector held off until it returns: a batch makes
    thousands of objects that live until its end (states, rows, counts), which the collector
    would otherwise scan several times over for nothing. It runs at the next allocation after,
    as it would have. The collector is left as it was found (the app turns it on after its first
    frame; whoever turned it on meanwhile is not undone)."""
    if not gc.isenabled():
        return work(*args)
    gc.disable()
    try:
        return work(*args)
    finally:
        gc.enable()


def _chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Writer:
    """The single writer of one database. Not thread-safe: give it to one thread or task."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0, dead_letter_limit: int = DEAD_LETTER_LIMIT,
                 dead_letter_bytes: int = DEAD_LETTER_BYTES, poll_run_limit: int = POLL_RUN_LIMIT,
                 autocheckpoint: bool = True) -> None:
        """`autocheckpoint=False` leaves WAL checkpoints to someone else (the committer's
        background thread), so that commits never wait for one."""
        self.path = Path(path)
        self.dead_letter_limit = dead_letter_limit
        self.dead_letter_bytes = dead_letter_bytes
        self.poll_run_limit = poll_run_limit
        check_writable(self.path)
        # No memory map for a writer: a file truncated under a mapping kills the process (SIGBUS)
        # before it can notice and stop acknowledging (found by `smsmon bench attack --area database`).
        self.conn = connect(self.path, busy_timeout=busy_timeout, mmap=False)
        if not autocheckpoint:
            self.conn.execute("PRAGMA wal_autocheckpoint=0")
        # A WAL file, once grown, keeps its size: past the committer's limit every commit then checkpointed (95% of commits
        # at 1,000 callbacks/s, measured; callbacks' p50 23 -> 13 ms with this). Truncated to the limit when it restarts.
        self.conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        try:
            migrate(self.conn, self.path)
        except sqlite3.Error as exc:
            self.conn.close()
            raise store_error(exc, self.path) from None
        except BaseException:
            self.conn.close()
            raise
        self._identity = _identity(self.path)
        self.codec = Codec.of(self.conn)
        self.demo = origin.is_demo(self.conn)  # holds only simulated traffic (smsmon.store.origin)
        self._batches = 0
        self._wal_identities = {sfx: _identity_or_none(Path(f"{self.path}{sfx}")) for sfx in ("-wal", "-shm")}

    def abandon_wal(self) -> Path | None:
        """After the file at the path stopped being this database: move this database's
        write-ahead log out of the way (and drop its shared-memory index), so that whatever file
        is at the path next never has it applied. SQLite itself leaves them when the database was
        unlinked or renamed. Returns where the log went, for the operator (it holds the changes
        not yet copied into the old file). Call after close()."""
        moved = None
        for sfx, identity in self._wal_identities.items():
            name = Path(f"{self.path}{sfx}")
            if identity is None or _identity_or_none(name) != identity:
                continue  # not ours (or gone): leave it
            try:
                if sfx == "-wal":
                    moved = name.with_name(f"{name.name}.abandoned-{time.strftime('%Y%m%dT%H%M%S')}")
                    os.replace(name, moved)
                else:
                    name.unlink()
            except OSError:
                pass  # cannot move it (read-only, vanished): the error line already names the file
        return moved

    def verify_file(self) -> None:
        """Raise DatabaseGone unless the file at the path is still the one this writer opened, with
        an SQLite header: removed, replaced (`mv other.db live.db`) and truncated files are caught
        here, before a commit and before one is acknowledged."""
        try:
            now = _identity(self.path)
            with open(self.path, "rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            raise DatabaseGone(f"the database file {self.path} was removed while smsmon was writing it", "removed") from None
        except OSError as exc:
            raise DatabaseGone(f"the database file {self.path} cannot be read any more: {exc.strerror}", "removed") from None
        if now != self._identity:
            raise DatabaseGone(f"the database file {self.path} was replaced by another file while smsmon was writing it",
                               "replaced")
        if header != SQLITE_HEADER:
            raise DatabaseGone(f"the database file {self.path} was truncated or overwritten while smsmon was writing it",
                               "truncated")

    def finish_in_old_file(self) -> None:
        """Copy the write-ahead log into the file this writer opened, through its own open
        descriptor: after a remove or a replace that is the old file (where the log belongs), not
        the one now at the path. Never after a truncation (the same file, emptied)."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # what stays in the log is kept with it by abandon_wal

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass  # only a planner hint: closing matters more
        self.conn.close()

    def checkpoint_if_wal_over(self, limit: int) -> None:
        """Copy the WAL back into the database when it has grown past `limit` bytes: under
        continuous writes a checkpoint from another connection may never finish, and the WAL
        would grow without bound."""
        try:
            if os.stat(f"{self.path}-wal").st_size > limit:
                self.verify_file()  # never copy pages into a file that is not this database any more
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (OSError, sqlite3.Error, DatabaseGone):
            pass  # a checkpoint is an optimisation: the next commit tries again (and finds a lost file)

    def latest_event_id(self) -> int:
        """The newest `events.id`: the watermark a new reader starts from."""
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ── events ────────────────────────────────────────────────────────────────
    def apply(self, events: Sequence[Event], *, dead_letters: Sequence[DeadLetter] = (),
              poll_runs: Sequence[dict[str, object]] = (), forward: Sequence[str | None] | None = None,
              work: Sequence[Callable[["Writer"], object]] = ()) -> list[Applied]:
        """Apply a batch of events, dead letters, poll runs and other `work` (each called with
        this writer) in one transaction; when this returns, all of it is durable. `forward`, one
        entry per event: its Content-Type to relay it with (an outbox row), or None. Raises
        StoreUnavailable (locked, disk) with nothing committed."""
        if not events and not dead_letters and not poll_runs and not work:
            return []

        def run() -> list[Applied]:
            applied = self.stage(events, forward)
            if dead_letters:
                deadletters.keep(self.conn, dead_letters, limit=self.dead_letter_limit, max_bytes=self.dead_letter_bytes)
                if self.demo:
                    self.demo = origin.still_demo_letters(self.conn, [d.headers for d in dead_letters])
            for poll in poll_runs:
                self._poll_run(poll)
            for w in work:
                w(self)
            return applied

        return self._transaction(run)

    def run(self, work: Callable[["Writer"], T]) -> T:
        """`work(self)` in one transaction, committed when this returns."""
        return self._transaction(lambda: work(self))

    def stage(self, events: Sequence[Event], forward: Sequence[str | None] | None = None) -> list[Applied]:
        """Within a transaction (`apply`'s work, `run`): apply events, and write the outbox rows
        of the new ones that `forward` names (smsmon.store.outbox)."""
        applied = _collector_waits(self._apply, events) if events else []
        if forward is not None and applied:
            outbox.add(self.conn, events, applied, forward)
        return applied

    def _transaction(self, work):  # type: ignore[no-untyped-def]
        """Run `work` in one transaction. The file is checked before and after: what was
        committed into a file that is no longer at the path raises DatabaseGone, so that the
        caller never acknowledges it."""
        conn = self.conn
        self.verify_file()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from None
        try:
            # A newer smsmon may have upgraded the file since this writer opened it (`browse` of a
            # newer version upgrades in place): under the write lock the version is the one this
            # transaction writes to.
            if (v := conn.execute("PRAGMA user_version").fetchone()[0]) > SCHEMA_VERSION:
                raise upgraded_under(self.path, v, SCHEMA_VERSION)
            result = work()
            conn.execute("COMMIT")
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite may have rolled back itself (disk full, I/O error); the original error matters
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, self.path) from None
            raise
        self.verify_file()
        return result

    def _apply(self, events: Sequence[Event]) -> list[Applied]:
        conn = self.conn
        if self.demo:
            self.demo = origin.still_demo(conn, events)
        slots: dict[str, _Slot] = {}
        seen: dict[int, tuple[set[str], set[int]]] = {}  # by message seq
        mids = [e.message_id for e in events]  # made once: an f-string per call
        for chunk in _chunks(list(dict.fromkeys(mids))):
            q = f"SELECT {_LOAD_MESSAGE} FROM messages WHERE id IN ({','.join('?' * len(chunk))})"
            for row in conn.execute(q, chunk):
                r = dict(zip(MESSAGE_COLUMNS, row))
                state = _state_from_row(r)
                known = seen[r["seq"]] = (set(), set())
                slots[state.id] = _Slot(state, r["seq"], False, r["last_event_id"], Place(state), known)
        # What they have stored already, in a query per chunk of messages rather than one per
        # message (one per message: 4,000 queries for 100,000 events written to a fresh file).
        for chunk in _chunks(list(seen)):
            for seq, key, fp in conn.execute(_SEEN.format(",".join("?" * len(chunk))), chunk):
                keys, fingerprints = seen[seq]
                keys.add(key)
                fingerprints.add(fp)

        next_id = (conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0) + 1
        next_seq = (conn.execute("SELECT max(seq) FROM messages").fetchone()[0] or 0) + 1
        pack = self.codec.packer()
        event_rows: list[tuple] = []
        results: list[Applied] = []
        for ev, mid in zip(events, mids):
            slot = slots.get(mid)
            if slot is None:
                slot = slots[mid] = _Slot(MessageState(ev.provider, ev.provider_message_id), next_seq, True, None, None,
                                          (set(), set()))
                next_seq += 1
            keys, fingerprints = slot.seen  # type: ignore[misc]  # always set here
            if ev.event_key in keys or ev.fingerprint in fingerprints:  # stored, or earlier in this batch
                slot.state.duplicates_count += 1
                results.append(_applied((ev.event_key, mid, True, None, _NO_FLAGS)))
                continue
            keys.add(ev.event_key)
            fingerprints.add(ev.fingerprint)
            flags = apply(slot.state, ev)
            event_rows.append((
                next_id, ev.event_key, slot.seq, ev.source, ev.event_type, ev.raw_status, ev.status._value_, ev.error_code,
                ev.event_time, ev.received_at, ",".join(sorted(flags)) if flags else None, pack(ev.raw), ev.fingerprint,
                ev.sent_at,
            ))
            slot.last_event_id = next_id
            results.append(_applied((ev.event_key, mid, False, next_id, flags)))
            next_id += 1

        new_rows = [_message_row(s) for s in slots.values() if s.is_new and s.last_event_id is not None]
        old_rows = [_message_row(s) for s in slots.values() if not s.is_new]
        conn.executemany(_INSERT_MESSAGE, new_rows)
        conn.executemany(_UPDATE_MESSAGE, map(_update_params, old_rows))
        conn.executemany(_INSERT_EVENT, event_rows)
        if event_rows:
            keyindex.add_run(conn, event_rows[0][0], [row[1] for row in event_rows])
        self._count_minutes([row[RECEIVED_AT] for row in event_rows])
        self._bump_facets(slots.values())
        return results

    def _count_minutes(self, received: list[str]) -> None:
        """Events per minute of arrival (the app's sparkline), kept for EVENTS_MINUTE_KEEP."""
        minutes = Counter(t[:16] for t in received)
        self.conn.executemany("INSERT INTO events_minute (minute, n) VALUES (?, ?)"
                              " ON CONFLICT DO UPDATE SET n = n + excluded.n", minutes.items())
        self._batches += 1
        if self._batches % 1000 == 1 and minutes:  # now and then: old minutes go
            oldest = fmt(parse_iso(max(minutes) + ":00Z") - EVENTS_MINUTE_KEEP)[:16]
            self.conn.execute("DELETE FROM events_minute WHERE minute < ?", (oldest,))

    def _bump_facets(self, slots: Iterable[_Slot]) -> None:
        """The maintained counts: facet_counts, and the aggregates (aggregates.py)."""
        delta, moves = changes(slots)
        self.conn.executemany(_BUMP_FACET, [(d, v, n) for (d, v), n in delta.items() if n])
        for table, rows in moves.rows():
            self.conn.executemany(aggregates.UPSERT[table], rows)

    # ── dead letters and poll runs ───────────────────────────────────────────
    def dead_letter(self, *, received_at: str, remote: str | None, path: str, reason: str, body: bytes,
                    headers: str | None = None) -> None:
        """Keep one rejected callback in its own transaction (smsmon.store.deadletters)."""
        self.apply([], dead_letters=[DeadLetter(received_at, remote, path, reason, body, headers)])

    def record_poll_run(self, **run: object) -> None:
        """Record one poll (columns of `poll_runs`) in its own transaction."""
        self._transaction(lambda: self._poll_run(run))

    def _poll_run(self, run: dict[str, object]) -> None:
        """One `poll_runs` row, keeping the newest `poll_run_limit` rows."""
        cols = [c for c in POLL_RUN_COLUMNS if c in run]
        cur = self.conn.execute(
            f"INSERT INTO poll_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [run[c] for c in cols])
        self.conn.execute("DELETE FROM poll_runs WHERE id <= ?", ((cur.lastrowid or 0) - self.poll_run_limit,))


class Checkpointer:
    """A second connection that copies the WAL back into the database (PASSIVE: it never waits
    for the writer), so that a commit never waits for a checkpoint. It copies only into the file
    its writer verified: a checkpoint into a truncated file would make it look whole again."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.conn = connect(writer.path, busy_timeout=0.1, mmap=False)

    def checkpoint(self) -> None:
        try:
            self.writer.verify_file()
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (sqlite3.Error, DatabaseGone):
            pass  # busy or failing now: the next round tries again; a lost file is the writer's to report

    def close(self) -> None:
        self.checkpoint()
        self.conn.close()
