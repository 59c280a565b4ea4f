"""Raw payloads, stored compressed: zstd with a dictionary trained on provider payloads.

A payload is a few hundred bytes of JSON whose keys and shapes repeat from one event to the
next; alone, it barely compresses (zlib: 252 -> 196 bytes), but with a 4 KiB dictionary of
what payloads look like, zstd takes it to about 75 bytes in 3 µs and back in 3 µs (measured on
the events of a generated 1M-event database; zlib with the same dictionary took 100 µs a payload).

The dictionary a database uses is stored in it (`payload_dicts`), so a file stays readable
whatever dictionary a later smsmon ships. A stored payload is a BLOB: one byte naming the
dictionary, then a zstd frame. Text values are payloads from before compression (schema < 4)
and read as they are.

    python -m smsmon.store.payloads train   # retrain payloads.zdict from generated traffic
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from typing import Callable
from pathlib import Path

import zstandard

DICT_FILE = Path(__file__).with_name("payloads.zdict")
DICT_ID = 1  # the id the shipped dictionary gets in a new database
LEVEL = 3  # level 9 saved 3 more bytes a payload at 5x the time (measured)
MAX_PAYLOAD = 1 << 20  # a stored payload is at most the largest line import accepts


class Codec:
    """Compresses with one database's current dictionary; decompresses with any of its own.
    zstd's contexts are not thread-safe: each thread gets its own."""

    def __init__(self, dictionaries: dict[int, bytes], current: int) -> None:
        self._dicts = {i: zstandard.ZstdCompressionDict(data) for i, data in dictionaries.items()}
        self.current = current
        self._dicts[current].precompute_compress(level=LEVEL)  # made ready once, not per payload (7 % of each)
        self._local = threading.local()

    @classmethod
    def of(cls, conn: sqlite3.Connection) -> "Codec":
        rows = dict(conn.execute("SELECT id, data FROM payload_dicts").fetchall())
        return cls(rows, max(rows))

    def _compressor(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=LEVEL, dict_data=self._dicts[self.current],
                                                         write_checksum=False, write_dict_id=False)
        return c

    def _decompressor(self, dict_id: int) -> zstandard.ZstdDecompressor:
        cache = getattr(self._local, "d", None)
        if cache is None:
            cache = self._local.d = {}
        if dict_id not in cache:
            cache[dict_id] = zstandard.ZstdDecompressor(dict_data=self._dicts[dict_id])
        return cache[dict_id]

    def pack(self, text: str) -> bytes:
        return bytes([self.current]) + self._compressor().compress(text.encode())

    def packer(self) -> Callable[[str], bytes]:
        """`pack` for one thread's batch, without finding its compressor again for every payload."""
        compress = self._compressor().compress
        prefix = bytes([self.current])
        return lambda text: prefix + compress(text.encode())

    def bytes_unpacker(self) -> Callable[[bytes | None], bytes | None]:
        """For one thread's long loop (an export) on a connection that returns text as bytes:
        stored payload -> its UTF-8 bytes, never decoded, and without finding this thread's
        contexts again for every payload (a sixth of the time of a million)."""
        contexts: dict[int, zstandard.ZstdDecompressor] = {}

        def unpack(stored: bytes | None) -> bytes | None:
            if not stored:
                return stored
            d = contexts.get(stored[0])
            if d is None:
                if stored[0] not in self._dicts:
                    return stored  # not compressed: text (as bytes) from before schema 4
                d = contexts[stored[0]] = zstandard.ZstdDecompressor(dict_data=self._dicts[stored[0]])
            return d.decompress(memoryview(stored)[1:], max_output_size=MAX_PAYLOAD)

        return unpack

    def unpack(self, stored: bytes | str | None) -> str | None:
        if stored is None or isinstance(stored, str):
            return stored
        return self._decompressor(stored[0]).decompress(stored[1:], max_output_size=MAX_PAYLOAD).decode("utf-8", "replace")


_CODECS: dict[tuple[tuple[int, bytes], ...], Codec] = {}


def codec_for(conn: sqlite3.Connection) -> Codec:
    """The codec of the database behind `conn` (one per set of dictionaries, kept)."""
    key = tuple(conn.execute("SELECT id, data FROM payload_dicts ORDER BY id").fetchall())
    codec = _CODECS.get(key)
    if codec is None:
        codec = _CODECS[key] = Codec(dict(key), max(i for i, _ in key))
    return codec


def shipped_dictionary() -> bytes:
    return DICT_FILE.read_bytes()


def train_dictionary(size: int = 4096, messages: int = 6000) -> bytes:
    """A dictionary from generated traffic of both providers (what `train` writes)."""
    import json
    import random

    from smsmon.sim.generate import traffic

    samples = [json.dumps(a.payload, separators=(",", ":")).encode() for a in traffic(messages, seed=42, days=3)]
    random.Random(1).shuffle(samples)
    return zstandard.train_dictionary(size, samples, k=64, d=8).as_bytes()


if __name__ == "__main__" and sys.argv[1:] == ["train"]:
    DICT_FILE.write_bytes(train_dictionary())
    print(f"wrote {DICT_FILE}", file=sys.stderr)
