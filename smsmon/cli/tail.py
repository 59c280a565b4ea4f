"""`smsmon tail`: a headless stream of events as they are committed, by this process or another
(issue 13), like `tail -f`: one line each, or NDJSON with --json, clean for jq.

It follows the events' rowid watermark (SPEC §2), looking every INTERVAL_S: one read of the
newest id, and the new rows only when there are some, so following costs next to nothing. On
PostgreSQL it reads only when a commit is announced (LISTEN/NOTIFY). It
exits 0 on Ctrl+C, on SIGTERM, and as soon as the reader of a pipe goes away (`| head -1`),
even while no event comes (the pipe is watched for that, as GNU tail does).
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from smsmon.cli import cli
from smsmon.cli.options import CONTEXT, filter_option, settings_options

if TYPE_CHECKING:  # annotations only: the commands import what they use when they run
    from smsmon.config import Settings

INTERVAL_S = 0.25  # how often the database is looked at: new events show within a quarter second
LOOK_BACK = 1000  # events read at a time when looking back for the last --lines matching ones
LOOK_BACK_MAX = 100_000  # ... and at most this many: a filter that matches little does not read the whole table


class _Stop(Exception):
    """Ctrl+C, SIGTERM, or nobody reads any more: the end of the stream, not an error."""


def _reader_gone(poller: Any) -> bool:
    """Whether the other end of the pipe on stdout was closed (POLLERR on a pipe's write end)."""
    return poller is not None and any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))


def _pipe_poller() -> Any:
    try:
        mode = os.fstat(sys.stdout.fileno()).st_mode
    except (OSError, ValueError):
        return None
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return None
    poller = select.poll()
    poller.register(sys.stdout.fileno(), 0)  # errors and hang-ups are always reported
    return poller


def _line(row: dict[str, Any], zone: Any) -> str:
    error = f" error {row['error_code']}" if row["error_code"] else ""
    flags = f" [{row['flags']}]" if row["flags"] else ""
    return (f"{zone.show(row['received_at'], fraction=True)}  {row['status']:<13} {row['raw_status'][:20]:<20} "
            f"{row['message_id']}  {row['source']}{error}{flags}")


@cli.command(context_settings=CONTEXT)
@filter_option("Only the events of messages matching this filter (status:failed, provider:eazita, ...).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line (NDJSON), for jq; raw as an object.")
@click.option("--lines", "-n", type=click.IntRange(0), default=10, show_default=True,
              help="Start with the last N events (that match), then follow.")
@settings_options()
def tail(flt: Any, as_json: bool, lines: int, settings: Settings) -> None:
    """Print events as they are stored, by `smsmon serve`, `watch` or anything else writing the
    database, one a line, and keep following (like `tail -f`) until Ctrl+C.

    \b
    smsmon tail
    smsmon tail --filter "status:failed provider:zeckta"
    smsmon tail --json | jq --unbuffered -c '{id: .message_id, status, raw: .raw.message.status}'
    Times are shown in display_timezone; --json keeps UTC.
    """
    from smsmon.cli.output import json_row
    from smsmon.store.export import EVENT_COLUMNS
    from smsmon.store.backend import open_reader as Reader

    def stop(*_: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    zone, out = settings.display_timezone, sys.stdout
    poller = _pipe_poller()

    def write(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            out.write((json.dumps(json_row(row, EVENT_COLUMNS), ensure_ascii=False) if as_json else _line(row, zone))
                      + "\n")
        if rows:
            out.flush()  # a closed pipe raises BrokenPipeError here, which the command group turns into exit 0

    stop_listening = None
    try:
        with Reader(settings.db, window=settings.watch_window, region=settings.default_region) as reader:
            # PostgreSQL announces every commit (LISTEN/NOTIFY): the database is read only then.
            # SQLite announces nothing: its newest id is looked at every INTERVAL_S.
            committed = threading.Event()
            stop_listening = reader.listen(lambda _id: committed.set())
            watermark = reader.latest_event_id()
            write(_last(reader, flt, watermark, lines))
            while True:
                if _reader_gone(poller):
                    raise _Stop
                if stop_listening is None:
                    time.sleep(INTERVAL_S)
                elif not committed.wait(INTERVAL_S):
                    continue  # nothing committed: only the pipe was looked at
                committed.clear()
                top = reader.latest_event_id()
                while top > watermark:
                    rows = reader.events_matching(flt, after=watermark, upto=top, limit=LOOK_BACK)
                    write(rows)
                    watermark = rows[-1]["id"] if len(rows) == LOOK_BACK else top
    except (_Stop, KeyboardInterrupt):
        return
    finally:
        if stop_listening is not None:
            stop_listening()


def _last(reader: Any, flt: Any, top: int, n: int) -> list[dict[str, Any]]:
    """The last `n` matching events up to `top`, oldest first (looking back at most LOOK_BACK_MAX events)."""
    found: list[dict[str, Any]] = []
    upto = top
    while n and upto > 0 and len(found) < n and top - upto < LOOK_BACK_MAX:
        start = max(0, upto - (n if flt.empty else LOOK_BACK))
        found = reader.events_matching(flt, after=start, upto=upto, limit=LOOK_BACK) + found
        upto = start
    return found[-n:] if n else []
