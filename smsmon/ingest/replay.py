"""Replaying dead letters (issue 13): after a fix to the parser, run the callbacks it refused
through it again. One that now parses becomes an event (idempotent as always: a callback
already stored is a duplicate and changes nothing) and leaves the dead letters, in the same
transaction; one that still fails stays, with its new reason and the time of the replay.

The event keeps the time the callback was received; its source is `replay` (`sim:replay` in a
demo database). Where forwarding is on, a replayed callback is relayed like any new one.

    replay(db, ids=[12])                          # with a writer of its own (`smsmon dead-letters replay`, browse)
    await replay_live(committer, db, ids=[12])    # through the writer of a running ingest (watch)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from smsmon.errors import Failure, ParseError
from smsmon.ingest.committer import Committer
from smsmon.lifecycle import Event
from smsmon.present import plural
from smsmon.providers import zeckta
from smsmon.store import deadletters
from smsmon.store.origin import simulated, simulated_headers
from smsmon.store.backend import open_reader, open_writer
from smsmon.store.reader import Reader
from smsmon.store.writer import Applied, Writer
from smsmon.timeutil import now_utc, parse_iso

CHUNK = 100  # dead letters read and replayed at a time: at most 100 bodies of 64 KiB in memory
SOURCE = "replay"


@dataclass
class Replayed:
    id: int  # the dead letter's
    message_id: str
    event_key: str
    duplicate: bool  # the callback was stored already (Zeckta retried it after the 400)


@dataclass
class ReplayResult:
    events: list[Replayed] = field(default_factory=list)  # became events, and left the dead letters
    failed: list[tuple[int, str]] = field(default_factory=list)  # still refused: (id, new reason)

    def summary(self) -> str:
        """One line, as `smsmon dead-letters replay` and the app's dead letters screen say it."""
        new = sum(not r.duplicate for r in self.events)
        return (f"replayed {plural(len(self.events) + len(self.failed), 'dead letter')}: {plural(new, 'new event')},"
                f" {len(self.events) - new:,} stored already, {len(self.failed):,} still refused")

    def to_dict(self) -> dict[str, Any]:
        return {"events": [asdict(r) for r in self.events],
                "failed": [{"id": i, "reason": reason} for i, reason in self.failed]}


def _content_type(headers: str | None) -> str:
    try:
        kept = json.loads(headers or "{}")
    except ValueError:
        return ""
    return next((v for k, v in kept.items() if k.lower() == "content-type" and isinstance(v, str)), "")


@dataclass
class _Batch:
    ids: list[int] = field(default_factory=list)  # dead letters that parse now, in the order of `events`
    events: list[Event] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    simulated: list[bool] = field(default_factory=list)  # its callback said so (a simulator's header)
    failed: list[tuple[int, str]] = field(default_factory=list)


def _parse(letters: Sequence[dict[str, Any]], region: str | None) -> _Batch:
    batch = _Batch()
    for d in sorted(letters, key=lambda d: d["id"]):
        body = bytes(d["raw"] or b"")
        try:
            if not body.strip():
                raise ParseError("empty body", Failure.INVALID_JSON)
            event = zeckta.parse_callback(body, received_at=parse_iso(d["received_at"]), source=SOURCE, region=region)
        except ParseError as exc:
            batch.failed.append((d["id"], f"{exc.kind.value}: {exc.reason}"))
            continue
        batch.ids.append(d["id"])
        batch.events.append(event)
        batch.types.append(_content_type(d["headers"]))
        batch.simulated.append(simulated_headers(d["headers"]))
    return batch


def _work(batch: _Batch, forward: bool) -> Callable[[Writer], list[Applied]]:
    """What the writer does, in one transaction."""

    def run(writer: Writer) -> list[Applied]:
        events = [simulated(e) if sim else e for e, sim in zip(batch.events, batch.simulated)]
        applied = writer.stage(events, batch.types if forward else None)
        deadletters.resolve(writer, batch.ids, batch.failed, now_utc())
        return applied

    return run


def _tally(result: ReplayResult, batch: _Batch, applied: list[Applied]) -> None:
    result.events += [Replayed(i, a.message_id, a.event_key, a.duplicate) for i, a in zip(batch.ids, applied)]
    result.failed += batch.failed


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _ids(reader: Reader, ids: Sequence[int] | None, since: str | None) -> list[int]:
    """The dead letters to replay: those of `ids` still there (received since `since`); None: all."""
    known = reader.dead_letter_ids(since=since)
    if ids is None:
        return known
    wanted = set(ids)
    return [i for i in known if i in wanted]


def replay(db: str | Path, *, ids: Sequence[int] | None = None, since: str | None = None, region: str | None = None,
           forward: bool = False) -> ReplayResult:
    """Replay the dead letters `ids` (None: all), received since `since`, with a writer of its own."""
    result = ReplayResult()
    with open_reader(db) as reader, open_writer(db) as writer:
        for chunk in _chunks(_ids(reader, ids, since)):
            batch = _parse(reader.dead_letters_where(ids=chunk, with_bytes=True), region)
            _tally(result, batch, writer.run(_work(batch, forward)))
    return result


async def replay_live(committer: Committer, db: str | Path, *, ids: Sequence[int] | None = None, since: str | None = None,
                      region: str | None = None) -> ReplayResult:
    """The same through a running ingest's writer (its forwarding on or off)."""
    result = ReplayResult()
    reader = open_reader(db)
    try:
        for chunk in _chunks(await asyncio.to_thread(_ids, reader, ids, since)):
            letters = await asyncio.to_thread(reader.dead_letters_where, ids=chunk, with_bytes=True)
            batch = _parse(letters, region)
            _tally(result, batch, await committer.run(_work(batch, committer.forwarding)))
    finally:
        reader.close()
    return result
