"""Finding an event by its provider event id (a Zeckta eventId) without an index on it.

An index on `events(event_key)` would put each new event on a random page of a B-tree (event
ids are random uuids), and every commit would write one more page per event: it cost the writer
25-40 % of its throughput on a 1M-event database (measured: 6.4-7.8k against 8.9-10.7k events/s
in commits of 64). Events are stored in arrival order instead, so each block of BLOCK consecutive
ids gets a Bloom filter of its keys (`event_key_blocks`), which the writer keeps up to date as it
appends (one small row per commit). A lookup tests every block's filter (12 MB at 10M events)
and reads only the few blocks that may hold the key.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

try:  # hashlib's own blake2b, without hashlib's import of OpenSSL's hashes (2 ms of every launch)
    from _blake2 import blake2b
except ImportError:  # a Python built without it
    from hashlib import blake2b

BLOCK = 4096  # events per filter
BITS = 40_960  # ~10 bits per key: about 1 % false positives at a full block
HASHES = 7


def _positions(key: str) -> tuple[int, ...]:
    """The HASHES bits of a key: (h1 + i * h2) % BITS for i < HASHES, where h1 and h2 are the
    two little-endian 64-bit halves of its 16-byte BLAKE2b (h2 made odd). Written out: run for
    every event written (a loop over range(HASHES) took 40 % longer)."""
    x = int.from_bytes(blake2b(key.encode(), digest_size=16).digest(), "little")
    h1 = (x & _LOW64) % BITS
    h2 = ((x >> 64) | 1) % BITS
    return (h1, (h1 + h2) % BITS, (h1 + 2 * h2) % BITS, (h1 + 3 * h2) % BITS, (h1 + 4 * h2) % BITS,
            (h1 + 5 * h2) % BITS, (h1 + 6 * h2) % BITS)


_LOW64 = (1 << 64) - 1
if HASHES != 7:  # pragma: no cover - _positions is written out for 7
    raise ImportError("keyindex._positions writes out HASHES = 7 positions")


def add(conn: sqlite3.Connection, rows: Iterable[tuple[int, str]]) -> None:
    """Record (events.id, event_key) pairs of new events in their blocks' filters."""
    by_block: dict[int, list[str]] = {}
    for event_id, key in rows:
        by_block.setdefault(event_id // BLOCK, []).append(key)
    for block, keys in by_block.items():
        _add_to_block(conn, block, keys)


def add_run(conn: sqlite3.Connection, first_id: int, keys: list[str]) -> None:
    """The same for the keys of consecutive events.id from `first_id` (what a commit appends)."""
    start = 0
    while start < len(keys):
        block = (first_id + start) // BLOCK
        end = min(len(keys), (block + 1) * BLOCK - first_id)
        _add_to_block(conn, block, keys[start:end])
        start = end


def _add_to_block(conn: sqlite3.Connection, block: int, keys: Iterable[str]) -> None:
    row = conn.execute("SELECT bloom FROM event_key_blocks WHERE block = ?", (block,)).fetchone()
    bloom = bytearray(row[0]) if row else bytearray(BITS // 8)
    for key in keys:
        for p in _positions(key):
            bloom[p >> 3] |= 1 << (p & 7)
    if row is None:
        conn.execute("INSERT INTO event_key_blocks (block, bloom) VALUES (?, ?)", (block, bytes(bloom)))
    else:  # an update of the same size: SQLite writes over the row's pages, and only those whose bytes changed
        conn.execute("UPDATE event_key_blocks SET bloom = ? WHERE block = ?", (bytes(bloom), block))


def find(conn: sqlite3.Connection, key: str) -> list[str]:
    """The message ids of the events with this event key, newest first."""
    return find_from(conn, key, 0)[0]


def find_from(conn: sqlite3.Connection, key: str, first_block: int) -> tuple[list[str], int]:
    """The same in the blocks from `first_block` on, and the last block there is now (the one
    still filling): a caller that keeps both and starts there next time reads only what was
    added since (the filter of a live view)."""
    positions = _positions(key)
    last = first_block
    blocks = []
    for block, bloom in conn.execute("SELECT block, bloom FROM event_key_blocks WHERE block >= ? ORDER BY block DESC",
                                     (first_block,)):
        last = max(last, block)
        if all(bloom[p >> 3] & (1 << (p & 7)) for p in positions):
            blocks.append(block)
    found: list[str] = []
    for block in blocks:
        found += [r[0] for r in conn.execute(
            "SELECT m.id FROM events e JOIN messages m ON m.seq = e.message_seq WHERE e.id >= ? AND e.id < ? AND e.event_key = ?",
            (block * BLOCK, (block + 1) * BLOCK, key))]
    return list(dict.fromkeys(found)), last


def rebuild(conn: sqlite3.Connection) -> None:
    """The filters of every stored event (a migration; also after events are removed)."""
    conn.execute("DELETE FROM event_key_blocks")
    batch: list[tuple[int, str]] = []
    for row in conn.execute("SELECT id, event_key FROM events ORDER BY id"):
        batch.append(row)
        if len(batch) >= BLOCK * 8:
            add(conn, batch)
            batch = []
    add(conn, batch)
