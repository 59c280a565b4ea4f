"""Small text helpers shared by the screens."""

from __future__ import annotations

from datetime import datetime

from smsmon.store import stats as figures
from smsmon.timeutil import parse_iso

FUTURE_S = 1.0  # a negative gap shorter than this is two clocks a little apart, not a time in the future

# Outcome -> the suffix of the component classes that colour it (`messages-table--delivered`);
# the colours themselves are theme variables, in smsmon.tcss.
OUTCOME_CLASSES = {"DELIVERED": "delivered", "NOT_DELIVERED": "not-delivered", "IN_FLIGHT": "in-flight", "UNKNOWN": "unknown"}


def partial_figures(which: str, limit: int, *, stopped: bool = False) -> str:
    """What figures counted from the `which` ("first", "newest") `limit` matching messages only
    are of (a filter no count answers), in the words of the main screen and of insights alike:
    counting on to RAW_LIMIT, or its counting on failed, or there at RAW_LIMIT."""
    head = f"[$warning]figures of the {which} {limit:,} messages only[/]"
    if stopped:
        return f"{head} (counting on failed: see the message)"
    if limit < figures.RAW_LIMIT:
        return f"{head} (counting on to {figures.RAW_LIMIT:,} …)"
    return f"{head} (there may be more: narrow the filter for exact ones)"


def ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return "never"
    s = (now - parse_iso(iso)).total_seconds()
    if s < -FUTURE_S:
        return "in the future"
    if s < 1:
        return "just now"  # a clock a fraction of a second ahead of ours is not news
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


def middle_cut(text: str, width: int) -> str:
    """`3099fd…a9c1`: the start and the end of an id kept, so ids that differ only at the end
    stay distinct."""
    if len(text) <= width:
        return text
    if width < 3:
        return text[:width]
    tail = (width - 1) * 2 // 5
    return text[: width - 1 - tail] + "…" + text[len(text) - tail:]
