"""Composed read models: what a screen or a command shows at once, built from the queries.

- `dashboard()`: the main screen's snapshot: a page of messages, the summary, the new events
  past a watermark and their per-minute counts, the latest poll of each provider, dead letters;
- `message_detail()`: one message with its timeline, explanations and flags in words (`show`,
  the message screen);
- `insights()`: failures by status, code, network and country, the hourly series, stale messages;
- `sightings()`: where an unrecognized error code was seen.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from smsmon.errors import LookupFailed
from smsmon.filters import Filter
from smsmon.lifecycle import Outcome
from smsmon.store import queries
from smsmon.store import stats as figures
from smsmon.timeutil import fmt, now_utc, seconds_between

STREAM_EVENTS = 200  # new events a snapshot carries at most: the newest of a burst
STALE_SHOWN = 50
SAME_NUMBER_SHOWN = 10
RECENT, RECENT_TEXT = timedelta(hours=24), "24h"  # "right now", for how common a failure is


@dataclass
class Snapshot:
    rows: list[dict[str, Any]]
    stats: figures.Stats | None  # None: not counted with this snapshot (a filter only the raw scan answers)
    new_events: list[dict[str, Any]]
    watermark: int
    polls: dict[str, dict[str, Any]] = field(default_factory=dict)  # provider -> latest poll_runs row
    dead_letters: int = 0
    total_messages: int = 0

    @classmethod
    def empty(cls) -> "Snapshot":
        return cls([], figures.Stats(0, 0, {}, None, None, None, 0, [], [], []), [], 0)


def dashboard(conn: sqlite3.Connection, f: Filter, watermark: int, *, limit: int, now: datetime,
              window: timedelta, with_stats: bool = True) -> Snapshot:
    top = queries.latest_event_id(conn)
    new: list[dict[str, Any]] = []
    if top > watermark:
        new = queries.events_after(conn, max(watermark, top - STREAM_EVENTS), limit=STREAM_EVENTS)
    return Snapshot(
        rows=queries.page(conn, f, limit=limit, now=now, window=window),
        stats=figures.stats(conn, f, now=now, window=window) if with_stats else None,
        new_events=new, watermark=top, polls=queries.latest_poll_runs(conn),
        dead_letters=queries.dead_letter_count(conn), total_messages=queries.message_count(conn),
    )


def _flag_entries(flags: str | None) -> list[dict[str, str]]:
    from smsmon import catalogue

    out = []
    for flag in (flags or "").split(","):
        if flag:
            found = catalogue.lookup(flag, "smsmon")
            out.append({"flag": flag, "title": found[0].title if found else flag, "meaning": found[0].meaning if found else ""})
    return out


def _quoted(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


def failure_now(conn: sqlite3.Connection, msg: dict[str, Any], *, now: datetime, window: timedelta) -> dict[str, Any]:
    """How common this message's failure is right now: messages of the last 24 h with the same
    provider, status and error code, overall and on the same network; with the filters that
    show them (the app opens them with a key)."""
    since = now - RECENT
    same = Filter(providers=(msg["provider"],), statuses=(msg["status"],),
                  errors=(msg["error_code"],) if msg["error_code"] is not None else (), since=since)
    expr = f"provider:{msg['provider']} status:{msg['status'].lower()}" + (
        f" error:{msg['error_code']}" if msg["error_code"] is not None else "") + f" since:{RECENT_TEXT}"
    out: dict[str, Any] = {"window": RECENT_TEXT, "messages": queries.count(conn, same, now=now, window=window),
                           "filter": expr, "network": msg["network"]}
    if msg["network"]:
        on = replace(same, networks=(msg["network"],))
        out["on_network"] = queries.count(conn, on, now=now, window=window)
        out["network_filter"] = f"{expr} network:{_quoted(msg['network'])}"
    return out


def message_detail(conn: sqlite3.Connection, message_id: str, *, window: timedelta,
                   now: datetime | None = None) -> dict[str, Any]:
    """Everything `show` prints about one message, as plain data: the message, its timeline,
    explanations and flags in words, the other messages to its number, how common its failure
    is right now, and the command that asks the provider about it while it is open."""
    import json  # here and not at the top, with the catalogue: the first screen shows neither

    from smsmon import catalogue

    now = now or now_utc()
    msg = queries.message(conn, message_id, now=now, window=window)
    if msg is None:
        raise LookupFailed(f"message {message_id} is not in the database")
    events = queries.timeline(conn, message_id)
    prev = None
    for ev in events:
        ev["since_previous_seconds"] = seconds_between(prev, ev["event_time"]) if prev else None
        prev = ev["event_time"]
        try:
            ev["raw"] = json.loads(ev["raw"]) if ev["raw"] else None
        except ValueError:
            pass  # not JSON after all: shown as the text it is
        ev["flags_explained"] = _flag_entries(ev["flags"])
    failed = msg["outcome"] == Outcome.NOT_DELIVERED
    status = catalogue.explain_status(msg["provider"], msg["raw_status"])
    error = catalogue.explain_error(msg["provider"], msg["error_code"], failed=failed)
    flags = _flag_entries(msg["flags"]) + ([] if not msg["stale"] else _flag_entries("stale"))
    return {
        "message": msg,
        "events": events,
        "explanation": {"status": status.to_dict(), "error_code": error.to_dict() if error else None},
        "flags": flags,
        "same_number": queries.same_number(conn, msg["dest"], message_id, limit=SAME_NUMBER_SHOWN) if msg["dest"] else [],
        "failure_now": failure_now(conn, msg, now=now, window=window) if failed else None,
        "ask_provider": None if msg["is_final"] else f"smsmon poll --message {message_id}",
    }


def sightings(conn: sqlite3.Connection, code: str, provider: str | None, database: str) -> dict[str, Any]:
    """How often an (unrecognized) error code appears in the database, by network."""
    networks = queries.error_code_networks(conn, code.strip(), provider)
    return {"database": database, "messages": sum(n for _, n in networks), "networks": networks}


ACTIVITY = timedelta(minutes=30)  # the main screen's chart of events received


def activity(conn: sqlite3.Connection, watermark: int, top: int, *, now: datetime) -> Counter:
    """Events received per second: those of the last half hour on a first look (watermark 0),
    else those past the watermark up to `top` (the snapshot's watermark, so none counts twice)."""
    first = queries.first_event_received_since(conn, fmt(now - ACTIVITY)) if watermark == 0 else watermark + 1
    return Counter(queries.events_per_second(conn, first, top)) if top >= first else Counter()
