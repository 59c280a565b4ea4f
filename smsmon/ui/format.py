"""Small text helpers shared by the screens."""

from __future__ import annotations

from datetime import datetime

from smsmon.timeutil import parse_iso

# Outcome -> the suffix of the component classes that colour it (`messages-table--delivered`);
# the colours themselves are theme variables, in smsmon.tcss.
OUTCOME_CLASSES = {"DELIVERED": "delivered", "NOT_DELIVERED": "not-delivered", "IN_FLIGHT": "in-flight", "UNKNOWN": "unknown"}


def ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return "never"
    s = (now - parse_iso(iso)).total_seconds()
    if s < 0:
        return "in the future"
    if s < 60:
        return f"{s:.0f}s ago"
    if s < 3600:
        return f"{s / 60:.0f}m ago"
    if s < 86400:
        return f"{s / 3600:.1f}h ago"
    return f"{s / 86400:.1f}d ago"


def clock(iso: str | None, now: datetime) -> str:
    """HH:MM:SS today, else the date and time."""
    if not iso:
        return "—"
    return iso[11:19] if iso[:10] == now.strftime("%Y-%m-%d") else iso[:16].replace("T", " ")


def short_id(message_id: str, width: int = 22) -> str:
    return message_id if len(message_id) <= width else message_id[: width - 1] + "…"
