"""`smsmon import`: newline-delimited JSON through the same parsers and writer as live data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable
from zoneinfo import ZoneInfo

import msgspec

from smsmon.errors import ParseError, ProviderAPIError, StoreError
from smsmon.lifecycle import Event
from smsmon.providers import events_from_object
from smsmon.store.writer import Writer
from smsmon.timeutil import now_utc

MAX_LINE = 1 << 20
BATCH = 500
KEEP_BAD = 1000


@dataclass
class ImportResult:
    lines: int = 0
    new: int = 0
    duplicates: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)  # the first KEEP_BAD (line number, reason)
    bad_count: int = 0


def import_lines(stream: BinaryIO, db: Path, *, tz: ZoneInfo, progress: Callable[[int], None] | None = None) -> ImportResult:
    """Import every good line; report bad ones by line number. Lines are committed in batches,
    so a failure of the store leaves every earlier batch imported."""
    result = ImportResult()
    batch: list[Event] = []
    decoder = msgspec.json.Decoder()
    with Writer(db) as writer:

        def flush() -> None:
            try:
                applied = writer.apply(batch)
            except StoreError as exc:
                raise StoreError(f"{exc} (lines before {result.lines - len(batch) + 1} are imported)") from None
            dup = sum(a.duplicate for a in applied)
            result.duplicates += dup
            result.new += len(applied) - dup
            batch.clear()

        def bad(reason: str) -> None:
            result.bad_count += 1
            if len(result.bad) < KEEP_BAD:
                result.bad.append((result.lines, reason))

        while True:
            line = stream.readline(MAX_LINE + 1)
            if not line:
                break
            result.lines += 1
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                    pass
                bad(f"line longer than {MAX_LINE // 1024} KiB")
                continue
            if not line.strip():
                continue
            try:
                obj = decoder.decode(line)
                batch.extend(events_from_object(obj, tz=tz, received_at=now_utc(), source="import"))
            except msgspec.MsgspecError as exc:
                bad(f"invalid JSON: {exc}")
            except (ParseError, ProviderAPIError) as exc:
                bad(str(exc))
            except RecursionError:
                bad("JSON nested too deeply")
            if len(batch) >= BATCH:
                flush()
                if progress:
                    progress(result.lines)
        if batch:
            flush()
    return result
