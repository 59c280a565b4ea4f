"""`smsmon import`: newline-delimited JSON through the same parsers and writer as live data.

A line that cannot be read, whatever the reason (not JSON, not UTF-8, a missing field, a time
out of range, an Eazita error envelope, a line over 1 MiB, even a bug in a parser), is a bad
line: counted, reported with its number, skipped; the rest is imported. Lines are committed in
batches bounded by count and by bytes, so memory does not grow with the file or its lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable
from zoneinfo import ZoneInfo

import msgspec

from smsmon.errors import ParseError, ProviderAPIError, StoreError
from smsmon.lifecycle import Event
from smsmon.providers import events_from_object
from smsmon.store.backend import open_writer
from smsmon.store.writer import Writer
from smsmon.timeutil import now_utc

MAX_LINE = 1 << 20
BATCH = 500  # events committed at a time
# Bytes of lines held before a commit. Measured (`/usr/bin/time -v smsmon import`, README) on a
# 1 GB file of 1,000 lines of 1 MB: batching by count alone peaked at 673 MB RSS; with 8 MiB,
# 187 MB, of which 128 MB is SQLite's page cache (store.schema.CACHE_KIB; 53 MB with a 2 MB
# cache), in the same 9 s.
BATCH_BYTES = 8 << 20
KEEP_BAD = 1000
REASON_MAX = 300  # characters of a bad line's reason kept and shown


@dataclass
class ImportResult:
    lines: int = 0
    new: int = 0
    duplicates: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)  # the first KEEP_BAD (line number, reason)
    bad_count: int = 0


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"  # msgspec raises it for invalid UTF-8 inside a string
    if isinstance(exc, msgspec.MsgspecError):
        return f"invalid JSON: {exc}"
    if isinstance(exc, (ParseError, ProviderAPIError)):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return f"cannot be imported: {type(exc).__name__}: {exc}"


class _Batch:
    """Events waiting for a commit, bounded by count and by the bytes of their lines."""

    def __init__(self, writer: Writer, result: ImportResult) -> None:
        self.writer, self.result = writer, result
        self.events: list[Event] = []
        self.size = 0
        self.first_line = 0

    def add(self, line_no: int, events: list[Event], size: int) -> None:
        if not self.events:
            self.first_line = line_no
        self.events += events
        self.size += size
        if len(self.events) >= BATCH or self.size >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.events:
            return
        try:
            applied = self.writer.apply(self.events)
        except StoreError as exc:
            raise StoreError(f"{exc} (lines before {self.first_line} are imported)") from None
        dup = sum(a.duplicate for a in applied)
        self.result.duplicates += dup
        self.result.new += len(applied) - dup
        self.events.clear()
        self.size = 0


def import_lines(stream: BinaryIO, db: Path, *, tz: ZoneInfo, region: str | None = None,
                 progress: Callable[[int], None] | None = None) -> ImportResult:
    """Import every good line; report bad ones by line number. Lines are committed in batches,
    so a failure of the store leaves every earlier batch imported."""
    result = ImportResult()
    decoder = msgspec.json.Decoder()

    def bad(line_no: int, reason: str) -> None:
        result.bad_count += 1
        if len(result.bad) < KEEP_BAD:
            result.bad.append((line_no, reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 1] + "…"))

    with open_writer(db) as writer:
        batch = _Batch(writer, result)
        while True:
            line = stream.readline(MAX_LINE + 1)
            if not line:
                break
            result.lines += 1
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                    pass  # the rest of an over-long line, read and dropped a MiB at a time
                bad(result.lines, f"line longer than {MAX_LINE // 1024} KiB")
                continue
            if not line.strip():
                continue
            try:
                events = events_from_object(decoder.decode(line), tz=tz, received_at=now_utc(), source="import", region=region)
            except Exception as exc:  # noqa: BLE001 - whatever a line does, it is a bad line, not the end of the import
                bad(result.lines, _reason(exc))
                continue
            batch.add(result.lines, events, len(line))
            if progress and result.lines % BATCH == 0:
                progress(result.lines)
        batch.flush()
    return result
