"""Text and file output of the read-side commands: explanations, drill-down, stats, exports."""

from __future__ import annotations

import csv
import json
import sqlite3
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, TextIO

from smsmon import catalogue
from smsmon.catalogue import Entry
from smsmon.errors import StoreError
from smsmon.store import queries
from smsmon.store.schema import open_readonly
from smsmon.timeutil import human_duration, seconds_between

EVENT_EXPORT_COLUMNS = ["id", "event_key", "message_id", "provider", "source", "event_type", "raw_status", "status",
                        "error_code", "event_time", "received_at", "flags", "raw"]
MESSAGE_EXPORT_COLUMNS = [*queries._PUBLIC_COLS, "stale"]


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, width=96, initial_indent=indent, subsequent_indent=indent)


def render_entry(e: Entry, seen: dict[str, Any] | None = None) -> str:
    head = f"{e.code}  {e.title}"
    where = "unrecognized" if not e.recognized else {"smsmon": "smsmon"}.get(e.provider, e.provider.capitalize())
    kind = e.kind.value.replace("_", " ")
    lines = [head, f"  {where} {kind}" + (f" → smsmon {e.normalized}" if e.normalized else ""), "", _wrap(e.meaning)]
    if e.causes:
        lines += ["", "  Likely causes:"] + [_wrap(f"- {c}", "    ")[0:] for c in e.causes]
    lines += ["", "  What to do:", _wrap(e.action, "    "), ""]
    lines.append(f"  retryable: {e.retryable}   permanent: {e.permanent}   group: {e.group}   meaning: {e.sureness}")
    if seen is not None:
        if seen["messages"]:
            nets = ", ".join(f"{n or 'unknown network'} ({c})" for n, c in seen["networks"])
            lines.append(f"  seen on {seen['messages']} messages in {seen['database']}: {nets}")
        else:
            lines.append(f"  not seen in {seen['database']}")
    return "\n".join(lines)


def sightings(db: Path, code: str, provider: str | None) -> dict[str, Any] | None:
    """How often an (unrecognized) error code appears in the database, by network."""
    if not db.exists():
        return None
    try:
        conn = open_readonly(db)
        cond, params = "error_code = ?", [code.strip()]
        if provider in ("zeckta", "eazita"):
            cond += " AND provider = ?"
            params.append(provider)
        rows = conn.execute(f"SELECT network, count(*) FROM messages WHERE {cond} GROUP BY 1 ORDER BY 2 DESC", params).fetchall()
    except (StoreError, sqlite3.Error):
        return None
    return {"database": str(db), "messages": sum(r[1] for r in rows), "networks": [(r[0], r[1]) for r in rows]}


def _flag_entries(flags: str | None) -> list[dict[str, str]]:
    out = []
    for flag in (flags or "").split(","):
        if flag:
            found = catalogue.lookup(flag, "smsmon")
            out.append({"flag": flag, "title": found[0].title if found else flag, "meaning": found[0].meaning if found else ""})
    return out


def message_detail(conn: sqlite3.Connection, message_id: str, window: timedelta) -> dict[str, Any]:
    """Everything `show` prints about one message, as plain data."""
    msg = queries.message(conn, message_id, window=window)
    if msg is None:
        raise StoreError(f"message {message_id} vanished")
    events = queries.timeline(conn, message_id)
    prev = None
    for ev in events:
        ev["since_previous_seconds"] = seconds_between(prev, ev["event_time"]) if prev else None
        prev = ev["event_time"]
        try:
            ev["raw"] = json.loads(ev["raw"]) if ev["raw"] else None
        except ValueError:
            pass
        ev["flags_explained"] = _flag_entries(ev["flags"])
    status = catalogue.explain_status(msg["provider"], msg["raw_status"])
    error = catalogue.explain_error(msg["provider"], msg["error_code"])
    flags = _flag_entries(msg["flags"]) + ([] if not msg["stale"] else _flag_entries("stale"))
    return {
        "message": msg,
        "events": events,
        "explanation": {"status": status.to_dict(), "error_code": error.to_dict() if error else None},
        "flags": flags,
    }


def _t(iso: str | None) -> str:
    return (iso or "—").replace("T", " ").replace("Z", "")[:23]


def render_detail(d: dict[str, Any]) -> str:
    m = d["message"]
    lines = [f"{m['id']}", f"  status   {m['status']} ({m['raw_status']} from {m['provider']})   outcome {m['outcome']}"
             + ("   STALE" if m["stale"] else "")]
    facts = [("to", m["dest"]), ("from", m["src"]), ("reference", m["reference"]), ("network", m["network"]),
             ("country", m["country_code"]), ("error code", m["error_code"]), ("segments", m["segments"]),
             ("cost", m["cost"])]
    lines.append("  " + "   ".join(f"{k} {v}" for k, v in facts if v is not None))
    took = seconds_between(m["first_event_at"], m["final_at"]) if m["final_at"] and m["first_event_at"] else None
    lines.append(f"  first event {_t(m['first_event_at'])}   final {_t(m['final_at'])}"
                 + (f" ({human_duration(took)} after the first event)" if took is not None else ""))
    lines.append(f"  events {m['events_count']}   duplicates {m['duplicates_count']}")
    for f in d["flags"]:
        lines.append(_wrap(f"! {f['flag']}: {f['title']}. {f['meaning']}", "  "))
    lines += ["", "Timeline (by event time, then arrival)",
              f"  {'event time (UTC)':<23}  {'status':<13} {'raw':<14} {'source':<10} {'after prev':>10}  {'received (UTC)':<23}  flags"]
    for ev in d["events"]:
        lines.append(f"  {_t(ev['event_time']):<23}  {ev['status']:<13} {ev['raw_status'][:14]:<14} {ev['source']:<10}"
                     f" {human_duration(ev['since_previous_seconds']) if ev['since_previous_seconds'] is not None else '':>10}"
                     f"  {_t(ev['received_at']):<23}  {ev['flags'] or ''}")
    ex = d["explanation"]
    st = ex["status"]
    lines += ["", f"Status: {st['title']} ({st['provider']} {st['code']})", _wrap(st["meaning"]), _wrap("What to do: " + st["action"])]
    if ex["error_code"]:
        ec = ex["error_code"]
        lines += ["", f"Error code {ec['code']}: {ec['title']}", _wrap(ec["meaning"]), _wrap("What to do: " + ec["action"])]
    lines += ["", "Raw payloads"]
    for ev in d["events"]:
        lines.append(f"  #{ev['id']} {ev['source']} {ev['raw_status']} received {_t(ev['received_at'])}")
        raw = ev["raw"]
        text = json.dumps(raw, indent=2, ensure_ascii=False) if not isinstance(raw, str) else raw
        lines += ["    " + ln for ln in text.splitlines()]
    return "\n".join(lines)


def render_stats(s: queries.Stats, source: str, window: timedelta) -> str:
    rate = f"{s.delivery_rate:.1%}" if s.delivery_rate is not None else "—"
    lines = [f"{s.messages:,} messages, {s.events:,} events" + (f"  (filter: {source})" if source else ""),
             f"  delivery rate {rate}   (delivered / delivered + not delivered)",
             f"  time to deliver: median {human_duration(s.median_seconds)}, p90 {human_duration(s.p90_seconds)}",
             "  " + "   ".join(f"{k.lower().replace('_', ' ')} {v:,}" for k, v in s.outcomes.items()),
             f"  stale (no news for {human_duration(window.total_seconds())}, not final): {s.stale:,}"]
    if s.failures_by_status:
        lines += ["", "Failures by status"]
        for provider, raw, n in s.failures_by_status:
            lines.append(f"  {n:>8,}  {provider:<7} {raw:<14} {catalogue.explain_status(provider, raw).title}")
    coded = [(p, c, n) for p, c, n in s.failures_by_code if c is not None]
    if coded:
        lines += ["", "Failures by error code"]
        for provider, code, n in coded:
            entry = catalogue.explain_error(provider, code)
            lines.append(f"  {n:>8,}  {provider:<7} {code:<6} {entry.title if entry else ''}")
        uncoded = sum(n for _, c, n in s.failures_by_code if c is None)
        if uncoded:
            lines.append(f"  {uncoded:>8,}  carry no error code (Zeckta sends none)")
    if s.failures_by_network:
        lines += ["", "Failures by network"]
        for network, n in s.failures_by_network:
            lines.append(f"  {n:>8,}  {network or 'not given by the provider'}")
    return "\n".join(lines)


def write_export(rows: Iterable[dict[str, Any]], fmt: str, out: TextIO, columns: list[str]) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            n += 1
    elif fmt == "ndjson":
        for row in rows:
            out.write(json.dumps({k: row.get(k) for k in columns}, ensure_ascii=False) + "\n")
            n += 1
    else:
        out.write("[")
        for row in rows:
            out.write(("," if n else "") + "\n" + json.dumps({k: row.get(k) for k in columns}, ensure_ascii=False))
            n += 1
        out.write("\n]\n" if n else "]\n")
    return n
