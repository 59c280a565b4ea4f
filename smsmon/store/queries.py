"""The read side: message pages, timelines, lookups, new events (SPEC §2, §9); the figures
(stats, facets) are in stats.py, on the same plans.

Every query is index-backed so it answers in milliseconds on a million events:
- pages are ordered by the time of each message's latest event (then rowid), and keyset-paged
  on that pair (never OFFSET), walking `ix_messages_time`, which also bounds since/until;
- a rare value of status, error, network, destination or free text is read through its own
  index and sorted; stale and flag filters walk partial indexes kept in page order;
- totals and unfiltered facets come from `facet_counts`, which the writer maintains;
- latency percentiles walk the partial index on `deliver_seconds`, stale counts the partial
  index of open messages.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Iterable

from smsmon.errors import Ambiguous, LookupFailed
from smsmon.filters import NONE, Filter
from smsmon.lifecycle import PROVIDERS, WATCH_WINDOW, Outcome, Status, is_stale, outcome_of
from smsmon.errors import LocalNumber
from smsmon.normalize import e164_strict, phone_forms
from smsmon.store import keyindex, text_match
from smsmon.store.payloads import codec_for
from smsmon.store.schema import MESSAGE_COLUMNS, STORED_FLAGS, flag_condition
from smsmon.timeutil import fmt, now_utc

PAGE = 50
SMALL = 5000  # a driving index that selects fewer rows than this is read whole and sorted
TEXT_INDEX = "sqlite_autoindex_messages_1"  # what drives free text that matches few (the ids it matches)
TOP = 20  # rows of a ranking (failures by code, network, ...)
# The columns of a message a reader sees (not the merge rule's bookkeeping), and its rowid: the
# tie-break of page order, which `ix_messages_time` carries (rowid, not seq: the index holds it).
PUBLIC_COLUMNS = [c for c in MESSAGE_COLUMNS if c not in ("status_key", "attr_at", "seq")]
_COLS = "rowid, " + ", ".join(PUBLIC_COLUMNS)
Cursor = tuple[str, int]  # (last_event_at, rowid) of the last row of a page
_OUTCOME_STATUSES = {o.value: [s.value for s in Status if any(outcome_of(p, s) is o for p in PROVIDERS)] for o in Outcome}


def _prefix_end(prefix: str) -> str | None:
    """The first text after every text that starts with `prefix` (`+2332` -> `+2333`), or None."""
    if not prefix or ord(prefix[-1]) >= 0x10FFFF:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _conditions(f: Filter, now: datetime, window: timedelta, t: str = "", *,
                text_rows: bool = False) -> tuple[list[str], list[Any]]:
    """SQL conditions for a filter. `t` prefixes every column ("m." when messages is joined).
    `text_rows`: free text tested on each row (`text_match.row_sql`), not as the ids it matches."""
    conds: list[str] = []
    params: list[Any] = []

    def one_of(column: str, values: Iterable[str]) -> None:
        values = list(values)
        if NONE in values and column in NULLABLE:  # error:none, network:none, country:none (issue 12)
            conds.append(nullable_condition(f"{t}{column}", values, params))
            return
        conds.append(f"{t}{column} IN ({','.join('?' * len(values))})")
        params.extend(values)

    if f.statuses:
        one_of("status", f.statuses)
    if f.outcomes:
        one_of("outcome", f.outcomes)
        if not f.statuses:  # implied, and lets the status index drive an outcome filter
            one_of("status", dict.fromkeys(s for o in f.outcomes for s in _OUTCOME_STATUSES[o]))
    if f.providers:
        one_of("provider", f.providers)
    if f.errors:
        one_of("error_code", f.errors)
    if f.networks:
        one_of("network", f.networks)
    if f.countries:  # issue 12
        one_of("country_code", f.countries)
    if f.dests:
        parts = []
        for v in f.dests:
            if v.endswith("*"):
                for x in phone_forms(v[:-1]):
                    end = _prefix_end(x)
                    if end is None:
                        parts.append(f"{t}dest LIKE ? ESCAPE '\\'")
                        params.append(_like_prefix(x))
                    else:  # a range, which ix_messages_dest serves (LIKE scanned every message: 1 s on 1M)
                        parts.append(f"({t}dest >= ? AND {t}dest < ?)")
                        params += [x, end]
            else:
                forms = phone_forms(v)
                parts.append(f"{t}dest IN ({','.join('?' * len(forms))})")
                params.extend(forms)
        conds.append("(" + " OR ".join(parts) + ")")
    for special in f.special:
        if special == "open":
            conds.append(f"{t}is_final = 0")
        elif special == "final":
            conds.append(f"{t}is_final = 1")
        elif special == "stale":
            conds.append(f"{t}is_final = 0 AND {t}last_event_at < ?")
            params.append(fmt(now - window))
    for flag in f.flags:
        conds.append(flag_condition(flag, t) if flag in STORED_FLAGS else f"{t}is_final = 0 AND {t}last_event_at < ?")
        if flag not in STORED_FLAGS:  # stale is derived, not stored
            params.append(fmt(now - window))
    if f.since:
        conds.append(f"{t}last_event_at >= ?")
        params.append(fmt(f.since))
    if f.until:
        conds.append(f"{t}last_event_at < ?")
        params.append(fmt(f.until))
    if f.text and text_rows:
        cond, text_params = text_match.row_sql(f.text, f.text_number, f.text_messages, t)
        conds.append(cond)
        params.extend(text_params)
    elif f.text:
        sub, sub_params = text_match.ids_sql(f.text, f.text_number, f.text_messages)
        conds.append(f"{t}id IN ({sub})")
        params.extend(sub_params)
    return conds, params


def _facet_count(conn: sqlite3.Connection, dim: str, values: Iterable[str]) -> int:
    values = list(values)
    q = f"SELECT coalesce(sum(n), 0) FROM facet_counts WHERE dim = ? AND value IN ({','.join('?' * len(values))})"
    return conn.execute(q, [dim, *values]).fetchone()[0]


def _probe(conn: sqlite3.Connection, sql: str, params: list[Any]) -> int:
    """How many rows a driving condition selects, counted up to SMALL."""
    return conn.execute(f"SELECT count(*) FROM ({sql} LIMIT {SMALL})", params).fetchone()[0]


def _drivers(conn: sqlite3.Connection, f: Filter, now: datetime, window: timedelta) -> list[tuple[int, str]]:
    """(estimated rows, index) for each condition of `f` that an index can drive. The partial
    indexes (flags, open) are in page order, so they serve any size; the others need a sort."""
    out: list[tuple[int, str]] = []
    if f.statuses or f.outcomes:
        counts = []
        if f.statuses:
            counts.append(_facet_count(conn, "status", f.statuses))
        if f.outcomes:
            counts.append(_facet_count(conn, "outcome", f.outcomes))
        out.append((min(counts), "ix_messages_status"))
    if f.errors and NONE not in f.errors:  # none (NULL) is not counted in facet_counts: no estimate (issue 12)
        out.append((_facet_count(conn, "error_code", f.errors), "ix_messages_error"))
    if f.networks and NONE not in f.networks:
        out.append((_facet_count(conn, "network", f.networks), "ix_messages_network"))
    if f.dests and not any(v.endswith("*") for v in f.dests):
        out.append((0, "ix_messages_dest"))
    elif f.dests:
        conds, params = _conditions(replace(Filter(), dests=f.dests), now, window)
        out.append((_probe(conn, f"SELECT 1 FROM messages INDEXED BY ix_messages_dest WHERE {conds[0]}", params),
                    "ix_messages_dest"))
    if f.text:
        sub, params = text_match.ids_sql(f.text, f.text_number, f.text_messages, union="UNION ALL")
        out.append((_probe(conn, sub, params), TEXT_INDEX))
    for flag in f.flags:
        if flag in STORED_FLAGS:
            out.append((_probe(conn, f"SELECT 1 FROM messages WHERE {flag_condition(flag)}", []), f"ix_messages_flag_{flag}"))
    if "stale" in f.special or "stale" in f.flags:
        out.append((_probe(conn, "SELECT 1 FROM messages WHERE is_final = 0 AND last_event_at < ?", [fmt(now - window)]),
                    "ix_messages_open"))
    return out


def _row(r: sqlite3.Row, now: datetime, window: timedelta) -> dict[str, Any]:
    d = dict(r)
    d["stale"] = is_stale(bool(d["is_final"]), d["last_event_at"], now, window)
    return d


def page(
    conn: sqlite3.Connection,
    f: Filter | None = None,
    *,
    after: Cursor | None = None,
    limit: int = PAGE,
    now: datetime | None = None,
    window: timedelta = WATCH_WINDOW,
) -> list[dict[str, Any]]:
    """Messages by latest event time, newest first. `after` is `cursor(row)` of the last row of
    the previous page (keyset paging, never OFFSET)."""
    f = f or Filter()
    now = now or now_utc()
    hint, conds, params = _plan(conn, f, now, window)
    if not hint and f.countries:  # no index holds countries: the aggregates say which hours to read
        hours = _hours_for_page(conn, f, limit, after)
        if hours is not None:
            if not hours:
                return []
            conds.append("(" + " OR ".join(["(last_event_at >= ? AND last_event_at < ?)"] * len(hours)) + ")")
            params += [bound for h in hours for bound in (h, _prefix_end(h))]
    if after is not None:
        conds.append("last_event_at <= ? AND (last_event_at < ? OR rowid < ?)")
        params += [after[0], after[0], after[1]]
    sql = (f"SELECT {_COLS} FROM messages{hint or ' INDEXED BY ix_messages_time'} WHERE {' AND '.join(conds) or '1'}"
           " ORDER BY last_event_at DESC, rowid DESC LIMIT ?")
    return [_row(r, now, window) for r in conn.execute(sql, [*params, limit])]


def _hours_for_page(conn: sqlite3.Connection, f: Filter, limit: int, after: Cursor | None) -> list[str] | None:
    """The newest hours that hold a page of an aggregable filter's messages (None: not one the
    aggregates answer). Walking the time index for a rare country read every message: 2.4 s for
    `country:none` at 10M events."""
    from smsmon.store.stats import aggregable, match_hours  # (stats reads through this module)

    if not aggregable(f):
        return None
    chosen: list[str] = []
    enough = 0
    cursor_hour = after[0][:13] if after else None
    hours = match_hours(conn, f, after[0] if after else None)
    try:
        for hour, n in hours:
            chosen.append(hour)
            enough += n if hour != cursor_hour else 0  # the cursor's hour may have fewer left
            if enough >= limit:
                break
    finally:
        hours.close()  # its statement ends here, not whenever the generator is collected
    return chosen


def cursor(row: dict[str, Any]) -> Cursor:
    return (row["last_event_at"], row["rowid"])


_ORDERED = ("ix_messages_open", "ix_messages_flag_")


def _plan(conn: sqlite3.Connection, f: Filter, now: datetime, window: timedelta) -> tuple[str, list[str], list[Any]]:
    """(index hint, conditions, parameters). The hint names the index of the most selective
    condition when it selects fewer than SMALL rows, or else a partial index already in page
    order, or else the time index when since/until bound it; it is empty when nothing helps."""
    drivers = _drivers(conn, f, now, window)
    many = any(index == TEXT_INDEX and n >= SMALL for n, index in drivers)  # a text that matches many
    conds, params = _conditions(f, now, window, text_rows=many)
    small = [d for d in drivers if d[0] < SMALL]
    ordered = [d for d in drivers if d[1].startswith(_ORDERED)]
    if small or ordered:
        return f" INDEXED BY {min(small or ordered)[1]}", conds, params
    if f.since or f.until:
        # Without this, SQLite may walk a GROUP BY column's index over the whole table.
        return " INDEXED BY ix_messages_time", conds, params
    return "", conds, params


def message(conn: sqlite3.Connection, message_id: str, *, now: datetime | None = None,
            window: timedelta = WATCH_WINDOW) -> dict[str, Any] | None:
    r = conn.execute(f"SELECT {_COLS} FROM messages WHERE id = ?", (message_id,)).fetchone()
    return _row(r, now or now_utc(), window) if r else None


def timeline(conn: sqlite3.Connection, message_id: str) -> list[dict[str, Any]]:
    """A message's events by event time, then arrival."""
    rows = conn.execute(
        "SELECT e.id, e.event_key, m.id AS message_id, m.provider, e.source, e.event_type, e.raw_status, e.status,"
        " e.error_code, e.event_time, e.received_at, e.sent_at, e.flags, e.raw FROM events e JOIN messages m ON m.seq = e.message_seq"
        " WHERE m.id = ? ORDER BY e.event_time, e.id",
        (message_id,),
    ).fetchall()
    codec = codec_for(conn)
    out = []
    for r in rows:
        d = dict(r)
        d["raw"] = codec.unpack(d["raw"])
        out.append(d)
    return out


def resolve(conn: sqlite3.Connection, query: str, *, limit: int = TOP, region: str | None = None) -> str:
    """Find one message by `provider:id`, bare provider id or uuid, reference, phone number (in
    any format; local ones read in `region`) or the event id of one of its events. Raises
    LookupFailed, or Ambiguous with the candidates (newest first)."""
    q = query.strip()
    if not q:
        raise LookupFailed("give a message id, reference, phone number or event id")
    ids = [q] if q.split(":", 1)[0] in PROVIDERS else [f"{p}:{q}" for p in PROVIDERS]
    ids += keyindex.find(conn, q)  # an event id names its message
    sql = [f"SELECT id, last_event_at FROM messages WHERE id IN ({','.join('?' * len(ids))})",
           "SELECT id, last_event_at FROM messages WHERE reference = ?"]
    params: list[Any] = [*ids, q]
    local_hint = None
    try:
        number = e164_strict(q, region)
    except LocalNumber as exc:
        number, local_hint = None, str(exc)
    if number and number.lstrip("+").isdigit():
        sql.append("SELECT id, last_event_at FROM messages WHERE dest IN (?, ?)")
        params.extend(phone_forms(number))
    found = conn.execute(" UNION ".join(sql) + f" ORDER BY last_event_at DESC LIMIT {limit + 1}", params).fetchall()
    if not found:
        raise LookupFailed(local_hint or f"no message matches {q!r} (tried ids, event ids, references and phone numbers)")
    if len(found) == 1:
        return found[0][0]
    cands = conn.execute(
        f"SELECT id, dest, status, reference, last_event_at FROM messages WHERE id IN ({','.join('?' * len(found))})"
        " ORDER BY last_event_at DESC", [r[0] for r in found],
    ).fetchall()
    raise Ambiguous(q, [dict(r) for r in cands[:limit]])


def events_after(conn: sqlite3.Connection, after_id: int, *, limit: int = 500) -> list[dict[str, Any]]:
    """New events by the rowid watermark (SPEC §2)."""
    rows = conn.execute(
        "SELECT e.id, m.id AS message_id, m.provider, e.source, e.event_type, e.raw_status, e.status, e.error_code,"
        " e.event_time, e.received_at, e.flags FROM events e JOIN messages m ON m.seq = e.message_seq"
        " WHERE e.id > ? ORDER BY e.id LIMIT ?", (after_id, limit),
    ).fetchall()
    return [dict(r) for r in rows]


def events_of(conn: sqlite3.Connection, f: Filter | None = None, *, after: int = 0, limit: int = 1000,
              now: datetime | None = None, window: timedelta = WATCH_WINDOW) -> list[dict[str, Any]]:
    """Events (in arrival order, from id `after` on) of the messages matching the filter."""
    f = f or Filter()
    conds, params = _conditions(f, now or now_utc(), window, t="m.")
    where = " AND ".join(["e.id > ?", *conds])
    sql = (f"SELECT e.id, e.event_key, m.id AS message_id, m.provider, e.source, e.event_type, e.raw_status, e.status,"
           f" e.error_code, e.event_time, e.received_at, e.sent_at, e.flags, e.raw FROM events e"
           f" JOIN messages m ON m.seq = e.message_seq WHERE {where}"
           " ORDER BY e.id LIMIT ?")
    codec = codec_for(conn)
    out = []
    for r in conn.execute(sql, [after, *params, limit]):
        d = dict(r)
        d["raw"] = codec.unpack(d["raw"])
        out.append(d)
    return out


def latest_event_id(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0


def dead_letters(conn: sqlite3.Connection, *, limit: int = 200) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT * FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,))]


def poll_runs(conn: sqlite3.Connection, *, limit: int = 200) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT * FROM poll_runs ORDER BY id DESC LIMIT ?", (limit,))]


# ── for the pollers ─────────────────────────────────────────────────────────────
def open_messages(conn: sqlite3.Connection, provider: str, *, since: str, older_than: str | None = None,
                  limit: int = 1000) -> list[str]:
    """Provider ids of messages that are not final, heard of since `since` (the watch window)
    and, if given, silent since `older_than`; the longest silent first."""
    sql = ("SELECT provider_message_id FROM messages INDEXED BY ix_messages_open"
           " WHERE is_final = 0 AND provider = ? AND last_event_at >= ?")
    params: list[Any] = [provider, since]
    if older_than is not None:
        sql += " AND last_event_at < ?"
        params.append(older_than)
    return [r[0] for r in conn.execute(sql + " ORDER BY last_event_at LIMIT ?", [*params, limit])]


def stored_keys(conn: sqlite3.Connection, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (message id, event key) pairs are stored."""
    q = "SELECT 1 FROM events WHERE message_seq = (SELECT seq FROM messages WHERE id = ?) AND event_key = ?"
    return {p for p in pairs if conn.execute(q, p).fetchone()}


def raw_statuses(conn: sqlite3.Connection, message_ids: Iterable[str]) -> dict[str, str | None]:
    """The current raw status of each message that exists."""
    q = "SELECT raw_status FROM messages WHERE id = ?"
    out: dict[str, str | None] = {}
    for mid in message_ids:
        if (row := conn.execute(q, (mid,)).fetchone()) is not None:
            out[mid] = row[0]
    return out


def open_statuses(conn: sqlite3.Connection, provider: str) -> dict[str, str | None]:
    """provider id -> raw status of every open message of a provider (the demo's fake Status
    API learns the messages already in a database from this)."""
    return dict(conn.execute("SELECT provider_message_id, raw_status FROM messages INDEXED BY ix_messages_open"
                             " WHERE is_final = 0 AND provider = ?", (provider,)).fetchall())


def latest_poll_runs(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """provider -> its newest `poll_runs` row."""
    return {r["provider"]: dict(r) for r in conn.execute(
        "SELECT * FROM poll_runs WHERE id IN (SELECT max(id) FROM poll_runs GROUP BY provider)")}


def dead_letter_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]


def message_count(conn: sqlite3.Connection) -> int:
    """Every message, from the writer's maintained counts."""
    return conn.execute("SELECT coalesce(sum(n), 0) FROM facet_counts WHERE dim = 'provider'").fetchone()[0]


def events_per_minute(conn: sqlite3.Connection, since: str) -> dict[str, int]:
    """"YYYY-MM-DDTHH:MM" -> events received that minute, from the minute of `since` on (the
    writer keeps these counts)."""
    return dict(conn.execute("SELECT minute, n FROM events_minute WHERE minute >= ?", (since[:16],)).fetchall())


def first_event_received_since(conn: sqlite3.Connection, since: str) -> int:
    """The id of the first event received at or after `since`, by bisecting events.id on
    arrival time (ids grow with arrival) instead of scanning the table."""
    lo, hi = 1, latest_event_id(conn) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute("SELECT received_at FROM events WHERE id >= ? ORDER BY id LIMIT 1", (mid,)).fetchone()
        if row is None or row[0] >= since:
            hi = mid
        else:
            lo = mid + 1
    return lo


def error_code_networks(conn: sqlite3.Connection, code: str, provider: str | None) -> list[tuple[str | None, int]]:
    """(network, messages) carrying an error code, most first."""
    cond, params = "error_code = ?", [code]
    if provider in PROVIDERS:
        cond += " AND provider = ?"
        params.append(provider)
    return [(r[0], r[1]) for r in conn.execute(
        f"SELECT network, count(*) FROM messages WHERE {cond} GROUP BY 1 ORDER BY 2 DESC", params)]


def sample_messages(conn: sqlite3.Connection) -> tuple[dict[str, Any] | None, dict[str, Any] | None, Cursor | None]:
    """For benchmarks: a message with a reference and a number, and a Zeckta message, from the
    middle of the table (so lookups are not of its first pages), and the page cursor there."""
    half = message_count(conn) // 2
    sample = conn.execute("SELECT * FROM messages WHERE reference IS NOT NULL AND dest IS NOT NULL AND rowid > ? LIMIT 1",
                          (half // 2,)).fetchone()
    zeckta = conn.execute("SELECT * FROM messages WHERE provider = 'zeckta' AND rowid > ? LIMIT 1", (half,)).fetchone()
    middle = conn.execute("SELECT last_event_at, rowid FROM messages INDEXED BY ix_messages_time"
                          " ORDER BY last_event_at LIMIT 1 OFFSET ?", (half,)).fetchone()
    return (dict(sample) if sample else None, dict(zeckta) if zeckta else None,
            (middle[0], middle[1]) if middle else None)


def count(conn: sqlite3.Connection, f: Filter, *, now: datetime | None = None, window: timedelta = WATCH_WINDOW,
          limit: int | None = None) -> int:
    """How many messages match a filter, on the filter's plan (at most `limit`)."""
    hint, conds, params = _plan(conn, f, now or now_utc(), window)
    sql = f"SELECT 1 FROM messages{hint} WHERE {' AND '.join(conds) or '1'}"
    if limit is not None:
        sql, params = f"{sql} LIMIT ?", [*params, limit]
    return conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]


def same_number(conn: sqlite3.Connection, dest: str, but: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """The other messages to a number, newest first."""
    return [dict(r) for r in conn.execute(
        "SELECT id, status, outcome, error_code, last_event_at FROM messages WHERE dest = ? AND id != ?"
        " ORDER BY last_event_at DESC LIMIT ?", (dest, but, limit))]


def where_sql(f: Filter, *, now: datetime, window: timedelta = WATCH_WINDOW) -> str:
    """The filter as one SQL WHERE clause on `messages`, with its values written in: what a
    person would type at the sqlite3 shell (the benchmarks time that beside smsmon)."""
    conds, params = _conditions(f, now, window)
    sql = " AND ".join(conds) or "1"
    for p in params:
        literal = str(p) if isinstance(p, (int, float)) else "'" + str(p).replace("'", "''") + "'"
        sql = sql.replace("?", literal, 1)
    return sql


def events_per_second(conn: sqlite3.Connection, first_id: int, last_id: int) -> dict[str, int]:
    """"YYYY-MM-DDTHH:MM:SS" -> events received that second, of the events with ids from
    `first_id` to `last_id` (a range of the primary key)."""
    return dict(conn.execute("SELECT substr(received_at, 1, 19), count(*) FROM events WHERE id BETWEEN ? AND ? GROUP BY 1",
                             (first_id, last_id)).fetchall())


NULLABLE = ("error_code", "network", "country_code")


def nullable_condition(column: str, values: list[str], params: list[Any]) -> str:
    """`column IS NULL OR column IN (...)` for a filter value list holding NONE (issue 12)."""
    rest = [v for v in values if v != NONE]
    params.extend(rest)
    return f"({column} IS NULL" + (f" OR {column} IN ({','.join('?' * len(rest))}))" if rest else ")")
