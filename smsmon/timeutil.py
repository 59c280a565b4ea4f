"""Time parsing and formatting. Pure.

All stored times are UTC ISO-8601 strings of one fixed shape, `2026-06-09T13:04:57.487133Z`,
so they sort as text in time order.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc

_EAZITA = re.compile(r"^\s*(\d{4})[/-](\d{1,2})[/-](\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|w)\s*$", re.I)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "w": 604800}


def fmt(dt: datetime) -> str:
    """Format an aware datetime as the canonical UTC string."""
    # isoformat is several times faster than strftime, and this runs for every event.
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def now_utc() -> datetime:
    return datetime.now(UTC)


def parse_iso(text: str) -> datetime:
    """Parse ISO-8601 tolerantly (Python's own parser: any number of fractional digits, kept to
    microseconds; `Z` or an offset; `T` or a space); a time without a zone is taken as UTC.
    A date alone is not a time. Raises ValueError, also for times that do not fit in UTC."""
    if not isinstance(text, str):
        raise ValueError(f"not an ISO-8601 time: {str(text)[:60]!r}")
    t = text.strip()
    if len(t) < 16 or t[10] not in "Tt ":
        raise ValueError(f"not an ISO-8601 time: {t[:60]!r}")
    try:
        dt = datetime.fromisoformat(t[:10] + "T" + t[11:].upper())
        return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"not an ISO-8601 time in range: {t[:60]!r}") from None


def parse_local(text: str, zone: ZoneInfo) -> datetime:
    """Parse Eazita's naive `YYYY/MM/DD HH:MM:SS` in the provider's zone. Raises ValueError."""
    m = _EAZITA.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"not a YYYY/MM/DD HH:MM:SS time: {str(text)[:60]!r}")
    y, mo, d, h, mi, s = (int(x or 0) for x in m.groups())
    try:
        return datetime(y, mo, d, h, mi, s, tzinfo=zone).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time out of range: {text[:60]!r}") from None


def zone(name: str) -> ZoneInfo:
    """A time zone by IANA name; ValueError with a clear message when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Asia/Karachi)") from exc


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `3d`, `1w` -> timedelta. Raises ValueError."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 2h, 3d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_when(text: str, now: datetime) -> datetime:
    """A point in time for filters: a duration ago (`2h`), an ISO date or time, `today` or `yesterday`."""
    t = text.strip().lower()
    if t == "today":
        return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if t == "yesterday":
        return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    try:
        return now - parse_duration(t)
    except ValueError:
        pass  # not a duration: a date or a time, then
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        t += "T00:00:00"
    try:
        return parse_iso(t)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use a duration like 2h, a date like 2026-06-09, or an ISO time)") from None


def seconds_between(a: str, b: str) -> float:
    """Seconds from canonical time a to canonical time b."""
    return (parse_iso(b) - parse_iso(a)).total_seconds()


def human_duration(s: float | None) -> str:
    """12.3s, 4.5m, 2.0h, 3.0d; an em dash for none."""
    if s is None:
        return "—"
    if abs(s) < 60:
        return f"{s:.1f}s"
    if abs(s) < 3600:
        return f"{s / 60:.1f}m"
    if abs(s) < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


class DisplayZone:
    """The zone times are shown in (setting `display_timezone`): UTC, the machine's local zone,
    or a named zone. `label` names it in column headers; `show()` formats a stored time."""

    def __init__(self, name: str, tz: tzinfo) -> None:
        self.name = name
        self.tz = tz

    @classmethod
    def parse(cls, text: str) -> "DisplayZone":
        t = text.strip()
        if t.upper() == "UTC":
            return cls("UTC", UTC)
        if t.lower() == "local":
            return cls("local", _local_zone())
        return cls(t, zone(t))

    @property
    def label(self) -> str:
        if self.name == "local":
            key = getattr(self.tz, "key", None)
            return f"local, {key}" if key else f"local, UTC{datetime.now(self.tz).strftime('%z')}"
        return self.name

    def show(self, iso: str | None, *, seconds: bool = True, fraction: bool = False) -> str:
        """`2026-06-09 18:04:57` (with `.487` when `fraction`) in this zone; an em dash for none."""
        if not iso:
            return "—"
        dt = parse_iso(iso).astimezone(self.tz)
        text = dt.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
        return text + f".{dt.microsecond // 1000:03d}" if fraction else text

    def clock(self, iso: str | None, now: datetime) -> str:
        """HH:MM:SS when it is today in this zone, else the date and time to the minute."""
        if not iso:
            return "—"
        dt = parse_iso(iso).astimezone(self.tz)
        return dt.strftime("%H:%M:%S") if dt.date() == now.astimezone(self.tz).date() else dt.strftime("%Y-%m-%d %H:%M")

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DisplayZone) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def _local_zone() -> tzinfo:
    """The machine's zone: $TZ or /etc/localtime's name where there is one, else its offset now."""
    import os

    for name in (os.environ.get("TZ", "").lstrip(":"), _localtime_name()):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return datetime.now().astimezone().tzinfo or UTC


def _localtime_name() -> str | None:
    import os

    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return None
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else None


UTC_ZONE = DisplayZone("UTC", UTC)
