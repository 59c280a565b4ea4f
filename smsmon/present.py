"""How a message's facts and timeline read, in the same words and formats for `smsmon show` and
the app's message screen. Pure: plain data in (as store.views.message_detail gives it), text out.
Times are shown in the display zone (setting display_timezone), which the headers name."""

from __future__ import annotations

from typing import Any

from smsmon.normalize import country_name
from smsmon.timeutil import UTC_ZONE, DisplayZone, human_duration

CURRENCY_NOTE = "currency not given by the provider"  # neither Zeckta nor Eazita states the currency of a cost


def deliver_text(m: dict[str, Any]) -> str | None:
    """The time to deliver, or why it is unknown; None for a message not delivered."""
    if m["status"] != "DELIVERED":
        return None
    if m["deliver_seconds"] is not None:
        return f"{human_duration(m['deliver_seconds'])} after it was sent"
    if m["sent_at"] is None:
        return "unknown: no send time is known (only later steps were reported)"
    return "unknown: the delivery is dated before the send (a clock problem)"


def facts(m: dict[str, Any], zone: DisplayZone = UTC_ZONE) -> list[tuple[str, str]]:
    """(label, text) of every fact the providers gave about a message, in a fixed order."""
    out: list[tuple[str, str]] = [
        ("status", f"{m['status']} ({m['raw_status']} from {m['provider']}), outcome {m['outcome']}"
                   + (", STALE" if m.get("stale") else "")),
    ]
    for label, key in (("to", "dest"), ("from", "src"), ("reference", "reference"), ("network", "network")):
        if m[key] is not None:
            out.append((label, str(m[key])))
    if m["country_code"] is not None:
        out.append(("country", country_name(m["country_code"])))
    if m["error_code"] is not None:
        out.append(("error code", str(m["error_code"])))
    for label, key in (("segments", "segments"), ("units", "units"), ("attempts", "attempts")):
        if m[key] is not None:
            out.append((label, f"{m[key]:g}" if isinstance(m[key], float) else str(m[key])))
    if m["cost"] is not None:
        out.append(("cost", f"{m['cost']:g} ({CURRENCY_NOTE})"))
    out.append(("sent", zone.show(m["sent_at"], fraction=True) if m["sent_at"] else "not known"))
    out.append(("first event", zone.show(m["first_event_at"], fraction=True)))
    out.append(("final", zone.show(m["final_at"], fraction=True) if m["final_at"] else "not yet"))
    if (took := deliver_text(m)) is not None:
        out.append(("time to deliver", took))
    out.append(("events", f"{m['events_count']} stored, {m['duplicates_count']} duplicates acknowledged"))
    return out


TIMELINE_COLUMNS = ("event time", "status", "raw", "source", "after previous", "received", "sent", "flags")


def timeline_header(zone: DisplayZone = UTC_ZONE) -> list[str]:
    """The timeline's column names, the times' zone named."""
    return [f"{c} ({zone.label})" if c in ("event time", "received") else c for c in TIMELINE_COLUMNS]


def timeline_rows(events: list[dict[str, Any]], zone: DisplayZone = UTC_ZONE) -> list[list[str]]:
    """One row per event: its time, status, raw status, source, time since the previous step,
    arrival, the send time it states where that is not its own time (Eazita's sent_date), flags."""
    rows = []
    for ev in events:
        prev = ev["since_previous_seconds"]
        sent = ev.get("sent_at")
        rows.append([
            zone.show(ev["event_time"], fraction=True), ev["status"], ev["raw_status"], ev["source"],
            "" if prev is None else "+" + human_duration(prev), zone.show(ev["received_at"], fraction=True),
            zone.show(sent, fraction=True) if sent and sent != ev["event_time"] else "",
            "; ".join(f"{f['flag']}: {f['title']}" for f in ev["flags_explained"]),
        ])
    return rows


def plural(n: int, word: str, words: str | None = None) -> str:
    """`1 message`, `2 messages`, `1,204 dead letters` (`words` for an irregular plural)."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"
