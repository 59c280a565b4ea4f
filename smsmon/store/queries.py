"""The read side: message pages, timelines, lookups, facets, stats, new events (SPEC §2, §9).

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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator

from smsmon.errors import Ambiguous, LookupFailed
from smsmon.filters import Filter
from smsmon.lifecycle import PROVIDERS, Outcome, Status, is_stale, outcome_of
from smsmon.providers._coerce import phone
from smsmon.store.schema import MESSAGE_COLUMNS, STORED_FLAGS, flag_condition
from smsmon.timeutil import fmt, now_utc

WATCH_WINDOW = timedelta(hours=72)
PAGE = 50
SMALL = 5000  # a driving index that selects fewer rows than this is read whole and sorted
_PUBLIC_COLS = [c for c in MESSAGE_COLUMNS if c not in ("status_key", "attr_at", "seq")]
_COLS = "rowid AS seq, " + ", ".join(_PUBLIC_COLS)
Cursor = tuple[str, int]  # (last_event_at, seq) of the last row of a page
FACET_DIMS = ("status", "outcome", "provider", "error_code", "network", "country_code")
_OUTCOME_STATUSES = {o.value: [s.value for s in Status if any(outcome_of(p, s) is o for p in PROVIDERS)] for o in Outcome}


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _phone_forms(number: str) -> tuple[str, ...]:
    """A number as stored with and without its leading +."""
    bare = number.lstrip("+")
    return (bare, "+" + bare) if bare.isdigit() else (number,)


def _text_ids_sql(text: str) -> tuple[str, list[Any]]:
    """Free text: the ids of messages whose id, provider id, number or reference starts with it,
    each branch an index range."""
    branches, params = [], []

    def prefix(column: str, value: str) -> None:
        branches.append(f"SELECT id FROM messages WHERE {column} >= ? AND {column} < ?")
        params.extend([value, value + "\U0010ffff"])

    for value in dict.fromkeys((text, text.lower())):
        if value.split(":", 1)[0] in PROVIDERS:
            prefix("id", value)
        else:
            for p in PROVIDERS:
                prefix("id", f"{p}:{value}")
    number = phone(text) or text
    for form in _phone_forms(number):
        prefix("dest", form)
    prefix("reference", text)
    return " UNION ".join(branches), params


def _conditions(f: Filter, now: datetime, window: timedelta, t: str = "") -> tuple[list[str], list[Any]]:
    """SQL conditions for a filter. `t` prefixes every column ("m." when messages is joined)."""
    conds: list[str] = []
    params: list[Any] = []

    def one_of(column: str, values: Iterable[str]) -> None:
        values = list(values)
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
    if f.dests:
        parts = []
        for v in f.dests:
            if v.endswith("*"):
                forms = _phone_forms(v[:-1])
                parts += [f"{t}dest LIKE ? ESCAPE '\\'"] * len(forms)
                params.extend(_like_prefix(x) for x in forms)
            else:
                forms = _phone_forms(v)
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
    if f.text:
        sub, sub_params = _text_ids_sql(f.text)
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
    if f.errors:
        out.append((_facet_count(conn, "error_code", f.errors), "ix_messages_error"))
    if f.networks:
        out.append((_facet_count(conn, "network", f.networks), "ix_messages_network"))
    if f.dests and not any(v.endswith("*") for v in f.dests):
        out.append((0, "ix_messages_dest"))
    if f.text:
        sub, params = _text_ids_sql(f.text)
        out.append((_probe(conn, f"SELECT 1 FROM ({sub})", params), "sqlite_autoindex_messages_1"))
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
    if after is not None:
        conds.append("last_event_at <= ? AND (last_event_at < ? OR rowid < ?)")
        params += [after[0], after[0], after[1]]
    sql = (f"SELECT {_COLS} FROM messages{hint or ' INDEXED BY ix_messages_time'} WHERE {' AND '.join(conds) or '1'}"
           " ORDER BY last_event_at DESC, rowid DESC LIMIT ?")
    return [_row(r, now, window) for r in conn.execute(sql, [*params, limit])]


def cursor(row: dict[str, Any]) -> Cursor:
    return (row["last_event_at"], row["seq"])


_ORDERED = ("ix_messages_open", "ix_messages_flag_")


def _plan(conn: sqlite3.Connection, f: Filter, now: datetime, window: timedelta) -> tuple[str, list[str], list[Any]]:
    """(index hint, conditions, parameters). The hint names the index of the most selective
    condition when it selects fewer than SMALL rows, or else a partial index already in page
    order, or else the time index when since/until bound it; it is empty when nothing helps."""
    conds, params = _conditions(f, now, window)
    drivers = _drivers(conn, f, now, window)
    small = [d for d in drivers if d[0] < SMALL]
    ordered = [d for d in drivers if d[1].startswith(_ORDERED)]
    if small or ordered:
        return f" INDEXED BY {min(small or ordered)[1]}", conds, params
    if f.since or f.until:
        # Without this, SQLite may walk a GROUP BY column's index over the whole table.
        return " INDEXED BY ix_messages_time", conds, params
    return "", conds, params


def iter_messages(conn: sqlite3.Connection, f: Filter | None = None, *, batch: int = 1000, now: datetime | None = None,
                  window: timedelta = WATCH_WINDOW) -> Iterator[dict[str, Any]]:
    """Every matching message, newest first, a keyset page at a time."""
    after = None
    while True:
        rows = page(conn, f, after=after, limit=batch, now=now, window=window)
        yield from rows
        if len(rows) < batch:
            return
        after = cursor(rows[-1])


def message(conn: sqlite3.Connection, message_id: str, *, now: datetime | None = None,
            window: timedelta = WATCH_WINDOW) -> dict[str, Any] | None:
    r = conn.execute(f"SELECT {_COLS} FROM messages WHERE id = ?", (message_id,)).fetchone()
    return _row(r, now or now_utc(), window) if r else None


def timeline(conn: sqlite3.Connection, message_id: str) -> list[dict[str, Any]]:
    """A message's events by event time, then arrival."""
    rows = conn.execute(
        "SELECT id, event_key, message_id, provider, source, event_type, raw_status, status, error_code, event_time,"
        " received_at, flags, raw FROM events WHERE message_seq = (SELECT seq FROM messages WHERE id = ?)"
        " ORDER BY event_time, id",
        (message_id,),
    ).fetchall()
    return [dict(r) for r in rows]


def resolve(conn: sqlite3.Connection, query: str, *, limit: int = 20) -> str:
    """Find one message by `provider:id`, bare provider id or uuid, reference, or phone number.
    Raises LookupFailed, or Ambiguous with the candidates (newest first)."""
    q = query.strip()
    if not q:
        raise LookupFailed("give a message id, reference or phone number")
    ids = [q] if q.split(":", 1)[0] in PROVIDERS else [f"{p}:{q}" for p in PROVIDERS]
    sql = [f"SELECT id, last_event_at FROM messages WHERE id IN ({','.join('?' * len(ids))})",
           "SELECT id, last_event_at FROM messages WHERE reference = ?"]
    params: list[Any] = [*ids, q]
    number = phone(q)
    if number and number.lstrip("+").isdigit():
        sql.append("SELECT id, last_event_at FROM messages WHERE dest IN (?, ?)")
        params.extend(_phone_forms(number))
    found = conn.execute(" UNION ".join(sql) + f" ORDER BY last_event_at DESC LIMIT {limit + 1}", params).fetchall()
    if not found:
        raise LookupFailed(f"no message matches {q!r} (tried ids, references and phone numbers)")
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
        "SELECT id, message_id, provider, source, event_type, raw_status, status, error_code, event_time, received_at, flags"
        " FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit),
    ).fetchall()
    return [dict(r) for r in rows]


def iter_events(conn: sqlite3.Connection, f: Filter | None = None, *, batch: int = 1000,
                now: datetime | None = None, window: timedelta = WATCH_WINDOW) -> Iterator[dict[str, Any]]:
    """Every event (in arrival order) of the messages matching the filter."""
    f = f or Filter()
    conds, params = _conditions(f, now or now_utc(), window, t="m.")
    join = "" if f.empty else " JOIN messages m ON m.seq = e.message_seq"
    where = " AND ".join(["e.id > ?", *conds])
    sql = (f"SELECT e.id, e.event_key, e.message_id, e.provider, e.source, e.event_type, e.raw_status, e.status,"
           f" e.error_code, e.event_time, e.received_at, e.flags, e.raw FROM events e{join} WHERE {where} ORDER BY e.id LIMIT ?")
    last = 0
    while True:
        rows = conn.execute(sql, [last, *params, batch]).fetchall()
        for r in rows:
            yield dict(r)
        if len(rows) < batch:
            return
        last = rows[-1]["id"]


def latest_event_id(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0


def facets(conn: sqlite3.Connection, dim: str, f: Filter | None = None, *, limit: int = 20,
           now: datetime | None = None, window: timedelta = WATCH_WINDOW) -> list[tuple[str | None, int]]:
    """Message counts per value of `dim` (status, outcome, provider, error_code, network,
    country_code), largest first. Unfiltered counts are maintained by the writer."""
    if dim not in FACET_DIMS:
        raise ValueError(f"unknown facet {dim!r}")
    if f is None or f.empty:
        rows = conn.execute(
            "SELECT value, n FROM facet_counts WHERE dim = ? AND n > 0 ORDER BY n DESC, value LIMIT ?", (dim, limit)
        ).fetchall()
        return [(v or None, n) for v, n in rows]
    hint, conds, params = _plan(conn, f, now or now_utc(), window)
    rows = conn.execute(
        f"SELECT {dim}, count(*) AS n FROM messages{hint} WHERE {' AND '.join(conds)} GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


@dataclass
class Stats:
    messages: int
    events: int
    outcomes: dict[str, int]
    delivery_rate: float | None  # delivered / (delivered + not delivered)
    median_seconds: float | None  # first event to DELIVERED
    p90_seconds: float | None
    stale: int
    failures_by_code: list[tuple[str, str | None, int]]  # provider, error code, count
    failures_by_network: list[tuple[str | None, int]]
    failures_by_status: list[tuple[str, str, int]]  # provider, raw status, count

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "events": self.events, "outcomes": self.outcomes,
            "delivery_rate": self.delivery_rate, "median_seconds_to_deliver": self.median_seconds,
            "p90_seconds_to_deliver": self.p90_seconds, "stale": self.stale,
            "failures_by_code": [{"provider": p, "error_code": c, "count": n} for p, c, n in self.failures_by_code],
            "failures_by_network": [{"network": net, "count": n} for net, n in self.failures_by_network],
            "failures_by_status": [{"provider": p, "raw_status": r, "count": n} for p, r, n in self.failures_by_status],
        }


def stats(conn: sqlite3.Connection, f: Filter | None = None, *, now: datetime | None = None,
          window: timedelta = WATCH_WINDOW) -> Stats:
    """Delivery rate, time to deliver, outcomes, stale count and failures, for everything or a filter."""
    now = now or now_utc()
    cutoff = fmt(now - window)
    if f is None or f.empty:
        outcomes = dict(conn.execute("SELECT value, n FROM facet_counts WHERE dim = 'outcome' AND n > 0").fetchall())
        delivered = outcomes.get(Outcome.DELIVERED, 0)
        median = _percentile_indexed(conn, delivered, 0.5)
        p90 = _percentile_indexed(conn, delivered, 0.9)
        stale = conn.execute("SELECT count(*) FROM messages INDEXED BY ix_messages_open WHERE is_final = 0 AND last_event_at < ?",
                             (cutoff,)).fetchone()[0]
        events = latest_event_id(conn)
        top = "SELECT value, n FROM facet_counts WHERE dim = ? AND n > 0 ORDER BY n DESC, value LIMIT 20"
        by_code = [(*v.split(":", 1), n) for v, n in conn.execute(top, ("fail_code",))]
        by_code = [(p, c or None, n) for p, c, n in by_code]
        by_network = [(v or None, n) for v, n in conn.execute(top, ("fail_network",))]
        by_status = [(*v.split(":", 1), n) for v, n in conn.execute(top, ("fail_status",))]
    else:
        hint, conds, params = _plan(conn, f, now, window)
        where = " AND ".join(conds)
        rows = conn.execute(
            f"SELECT outcome, count(*), sum(events_count), sum(is_final = 0 AND last_event_at < ?) FROM messages{hint}"
            f" WHERE {where} GROUP BY 1", [cutoff, *params]).fetchall()
        outcomes = {r[0]: r[1] for r in rows}
        events = sum(r[2] for r in rows)
        stale = sum(r[3] for r in rows)
        delivered = outcomes.get(Outcome.DELIVERED, 0)
        secs = [r[0] for r in conn.execute(
            f"SELECT deliver_seconds FROM messages{hint} WHERE {where} AND deliver_seconds IS NOT NULL", params)]
        secs.sort()
        median = _percentile(secs, 0.5)
        p90 = _percentile(secs, 0.9)
        failed_where = f"{where} AND outcome = 'NOT_DELIVERED'"
        by_code = conn.execute(f"SELECT provider, error_code, count(*) AS n FROM messages{hint} WHERE {failed_where}"
                               " GROUP BY 1, 2 ORDER BY n DESC LIMIT 20", params).fetchall()
        by_network = conn.execute(f"SELECT network, count(*) AS n FROM messages{hint} WHERE {failed_where}"
                                  " GROUP BY 1 ORDER BY n DESC LIMIT 20", params).fetchall()
        by_status = conn.execute(f"SELECT provider, raw_status, count(*) AS n FROM messages{hint} WHERE {failed_where}"
                                 " GROUP BY 1, 2 ORDER BY n DESC LIMIT 20", params).fetchall()
    total = sum(outcomes.values())
    failed = outcomes.get(Outcome.NOT_DELIVERED, 0)
    return Stats(
        messages=total,
        events=events,
        outcomes={o.value: outcomes.get(o.value, 0) for o in Outcome},
        delivery_rate=delivered / (delivered + failed) if delivered + failed else None,
        median_seconds=median,
        p90_seconds=p90,
        stale=stale,
        failures_by_code=[(r[0], r[1], r[2]) for r in by_code],
        failures_by_network=[(r[0] or None, r[1]) for r in by_network],
        failures_by_status=[(r[0], r[1], r[2]) for r in by_status],
    )


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _percentile_indexed(conn: sqlite3.Connection, count: int, q: float) -> float | None:
    if not count:
        return None
    row = conn.execute(
        "SELECT deliver_seconds FROM messages INDEXED BY ix_messages_latency WHERE deliver_seconds IS NOT NULL"
        " ORDER BY deliver_seconds LIMIT 1 OFFSET ?", (min(count - 1, int(q * count)),)).fetchone()
    return row[0] if row else None


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
