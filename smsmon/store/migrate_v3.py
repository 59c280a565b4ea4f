"""Schema version 3 (issue 10): send times, time to deliver from them, trusted latest activity,
phone numbers in E.164, event ids findable (keyindex). Existing rows are brought to what the writer now writes, so a database
does not mean one thing for old messages and another for new ones."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from smsmon import normalize
from smsmon.lifecycle import SEND_STEPS, SKEW, Status, is_final
from smsmon.providers.eazita import DEFAULT_TIMEZONE
from smsmon.store import keyindex
from smsmon.timeutil import UTC, fmt, parse_iso, zone

BATCH = 5000


def upgrade(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE messages ADD COLUMN sent_at TEXT")
    conn.execute("ALTER TABLE events ADD COLUMN sent_at TEXT")
    steps = ", ".join(f"'{s.value}'" for s in SEND_STEPS)
    conn.execute(f"UPDATE events SET sent_at = event_time WHERE provider = 'zeckta' AND source != 'status_api'"
                 f" AND status IN ({steps})")
    _eazita_sent_dates(conn)
    conn.execute("UPDATE messages SET sent_at = (SELECT min(e.sent_at) FROM events e WHERE e.message_seq = messages.seq)")
    _deliver_seconds(conn)
    conn.execute("DELETE FROM facet_counts WHERE dim = 'timed'")
    conn.execute("INSERT INTO facet_counts (dim, value, n) SELECT 'timed', '1', count(*) FROM messages"
                 " WHERE deliver_seconds IS NOT NULL")
    _trusted_latest(conn)
    _phones(conn)
    conn.execute("CREATE TABLE event_key_blocks (block INTEGER PRIMARY KEY, bloom BLOB NOT NULL)")
    keyindex.rebuild(conn)


def _naive(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), "%Y/%m/%d %H:%M:%S")
    except (ValueError, AttributeError):
        return None


def _eazita_sent_dates(conn: sqlite3.Connection) -> None:
    """An Eazita row's sent_date, in the zone the row was read in. The zone is not stored, but
    the row's event time is one of its two dates read in it: their difference is the offset."""
    fallback = zone(DEFAULT_TIMEZONE)
    rows = conn.execute("SELECT id, status, event_time, json_extract(raw, '$.sent_date'), json_extract(raw, '$.done_date')"
                        " FROM events WHERE provider = 'eazita'")
    updates: list[tuple[str, int]] = []
    for event_id, status, event_time, sent_text, done_text in rows:
        sent = _naive(sent_text) if sent_text else None
        if sent is None:
            continue
        done = _naive(done_text) if done_text else None
        final = is_final("eazita", Status(status)) if status in Status.__members__ else False
        used = done if final and done else sent
        try:
            offset = parse_iso(event_time).replace(tzinfo=None) - used
            at = sent + offset if abs(offset) <= timedelta(hours=15) else sent.replace(tzinfo=fallback).astimezone(UTC)
            updates.append((fmt(at.replace(tzinfo=UTC) if at.tzinfo is None else at), event_id))
        except (ValueError, OverflowError):
            continue  # a date out of range: this event keeps no send time
        if len(updates) >= BATCH:
            conn.executemany("UPDATE events SET sent_at = ? WHERE id = ?", updates)
            updates.clear()
    conn.executemany("UPDATE events SET sent_at = ? WHERE id = ?", updates)


def _deliver_seconds(conn: sqlite3.Connection) -> None:
    updates = []
    for mid, status_at, sent_at in conn.execute("SELECT id, status_at, sent_at FROM messages WHERE status = 'DELIVERED'"):
        seconds = None
        if status_at and sent_at:
            seconds = (parse_iso(status_at) - parse_iso(sent_at)).total_seconds()
            seconds = seconds if seconds >= 0 else None
        updates.append((seconds, mid))
    conn.executemany("UPDATE messages SET deliver_seconds = ? WHERE id = ?", updates)


def _trusted_latest(conn: sqlite3.Connection) -> None:
    """Messages with an event from the future: their latest activity counts it at its arrival."""
    updates = []
    for seq, in conn.execute("SELECT seq FROM messages WHERE flags LIKE '%clock_skew%'").fetchall():
        latest = None
        for event_time, received_at in conn.execute("SELECT event_time, received_at FROM events WHERE message_seq = ?", (seq,)):
            ahead = event_time > received_at and parse_iso(event_time) > parse_iso(received_at) + SKEW
            t = received_at if ahead else event_time
            latest = t if latest is None or t > latest else latest
        updates.append((latest, seq))
    conn.executemany("UPDATE messages SET last_event_at = ? WHERE seq = ?", updates)


def _phones(conn: sqlite3.Connection) -> None:
    """Numbers stored without their + become E.164 where they are valid international numbers
    (the raw payloads keep what the provider sent); Zeckta messages get the country they lacked."""
    changed = False
    for dest, in conn.execute("SELECT DISTINCT dest FROM messages WHERE dest IS NOT NULL AND dest NOT LIKE '+%'").fetchall():
        new = normalize.e164(dest)
        if new and new != dest:
            conn.execute("UPDATE messages SET dest = ? WHERE dest = ?", (new, dest))
            conn.execute("UPDATE messages SET country_code = ? WHERE dest = ? AND provider = 'zeckta' AND country_code IS NULL",
                         (normalize.calling_code(new), new))
            changed = True
    if changed:  # the maintained counts of countries follow
        conn.execute("DELETE FROM facet_counts WHERE dim = 'country_code'")
        conn.execute("INSERT INTO facet_counts (dim, value, n) SELECT 'country_code', coalesce(country_code, ''), count(*)"
                     " FROM messages GROUP BY 2")
