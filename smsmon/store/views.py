"""Composed read models: what a screen or a command shows at once, built from the queries.

- `dashboard()`: the main screen's snapshot: a page of messages, the summary, the new events
  past a watermark and their per-minute counts, the latest poll of each provider, dead letters;
- `message_detail()`: one message with its timeline, explanations and flags in words (`show`,
  the message screen);
- `insights()`: failures by status, code, network and country, the hourly series, stale messages;
- `sightings()`: where an unrecognized error code was seen.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from smsmon import catalogue
from smsmon.errors import LookupFailed
from smsmon.filters import NONE, Filter
from smsmon.lifecycle import Outcome
from smsmon.store import queries
from smsmon.store import stats as figures
from smsmon.timeutil import UTC, fmt, now_utc, parse_iso, seconds_between

STREAM_EVENTS = 200  # new events a snapshot carries at most: the newest of a burst
HOURS = 24
STALE_SHOWN = 50
COUNTRIES_SHOWN = 15
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


def insights(conn: sqlite3.Connection, f: Filter, *, now: datetime, window: timedelta) -> dict[str, Any]:
    """Everything the insights screen shows, for the filter in force, from one tally."""
    if f.empty:
        stats, countries = figures.stats(conn, f, now=now, window=window), figures.facets(
            conn, "country_code", Filter(outcomes=(Outcome.NOT_DELIVERED.value,)), limit=COUNTRIES_SHOWN, now=now, window=window)
    else:
        t, stale_count = figures.tally(conn, f, now=now, window=window)
        stats, countries = figures.figures(t, stale_count), figures.failures_by_country(t, COUNTRIES_SHOWN)
    stale = queries.page(conn, Filter(special=("stale",)), limit=STALE_SHOWN, now=now, window=window)
    return {"stats": stats, "countries": countries, "hours": figures.hourly(conn, f, now=now), "stale": stale}


def _flag_entries(flags: str | None) -> list[dict[str, str]]:
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


# ── issue 12: insights over a period, each row with the filter that lists exactly its messages ──
PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
HOURLY_UP_TO = timedelta(hours=48)  # longer periods are drawn per day


def _median(values: list[float], q: float = 0.5) -> float | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def _secs(concat: str | None) -> list[float]:
    return [float(x) for x in concat.split(",")] if concat else []


def insights_period(conn: sqlite3.Connection, f: Filter, *, period: timedelta, now: datetime,
                    window: timedelta) -> dict[str, Any]:
    """The insights screen: the messages of the filter whose latest activity falls in the
    period (the filter's own since:/until: when it has them, else the last `period`), broken
    down by status, error code, network and country (failure counts and rates, failed ÷
    finished), their delivery over time, their cost per day and per network, and the stale
    messages. Every row carries the Filter of exactly the messages it counts."""
    since = f.since or (now - period).replace(microsecond=0)
    fp = replace(f, since=since)
    end = f.until or now
    failed = Outcome.NOT_DELIVERED.value
    status_rows: Counter = Counter()
    code_rows: Counter = Counter()
    rates: dict[str, dict[Any, Counter]] = {"network": {}, "country": {}}
    cost_net: dict[tuple[str, str | None], list[float]] = {}
    outcomes: Counter = Counter()
    for provider, status, outcome, code, network, country, n, priced, cost in queries.breakdown(conn, fp, now=now, window=window):
        outcomes[outcome] += n
        if outcome == failed:
            status_rows[(provider, status)] += n
            code_rows[(provider, code)] += n
        for dim, value in (("network", network or None), ("country", country or None)):
            rates[dim].setdefault(value, Counter())[outcome] += n
        c = cost_net.setdefault((provider, network or None), [0, 0.0, 0])
        c[0] += priced
        c[1] += cost
        c[2] += n
    nd = (Outcome.NOT_DELIVERED.value,)

    def rate_rows(dim: str, field_name: str) -> list[dict[str, Any]]:
        out = []
        for value, c in rates[dim].items():
            done = c[Outcome.DELIVERED.value] + c[failed]
            out.append({dim: value, "delivered": c[Outcome.DELIVERED.value], "failed": c[failed], "finished": done,
                        "unknown": c[Outcome.UNKNOWN.value], "in_flight": c[Outcome.IN_FLIGHT.value],
                        "rate": c[failed] / done if done else None,
                        "filter": replace(fp, outcomes=nd, **{field_name: (value or NONE,)})})
        return sorted(out, key=lambda r: (-r["failed"], -(r["rate"] or 0), str(r[dim])))

    hourly = (end - since) <= HOURLY_UP_TO
    chars, step = (13, timedelta(hours=1)) if hourly else (10, timedelta(days=1))
    buckets: dict[str, dict[str, Any]] = {}
    for bucket, outcome, n, concat in queries.finals_by_bucket(conn, fp, chars, now=now, window=window):
        b = buckets.setdefault(bucket, {"delivered": 0, "failed": 0, "secs": []})
        if outcome == Outcome.DELIVERED.value:
            b["delivered"] += n
            b["secs"] += _secs(concat)
        elif outcome == failed:
            b["failed"] += n
    start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if not hourly:
        start = start.replace(hour=0)
    series, at, all_secs = [], start, []
    while at <= end:
        key = fmt(at)[:chars]
        b = buckets.get(key, {"delivered": 0, "failed": 0, "secs": []})
        all_secs += b["secs"]
        series.append({"bucket": key, "delivered": b["delivered"], "failed": b["failed"], "median": _median(b["secs"]),
                       "partial": at + step > now})
        at += step
    delivered = outcomes[Outcome.DELIVERED.value]
    stale_filter = replace(f, since=None, until=None, special=tuple(dict.fromkeys((*f.special, "stale"))))
    return {
        "filter": fp, "since": since, "until": f.until, "period": period, "bucket": "hour" if hourly else "day",
        "totals": {"messages": sum(outcomes.values()), "outcomes": dict(outcomes), "median": _median(all_secs),
                   "p90": _median(all_secs, 0.9),
                   "delivery_rate": delivered / (delivered + outcomes[failed]) if delivered + outcomes[failed] else None},
        "by_status": [{"provider": p, "status": s, "failed": n, "filter": replace(fp, providers=(p,), statuses=(s,), outcomes=nd)}
                      for (p, s), n in status_rows.most_common()],
        "by_code": [{"provider": p, "code": c, "failed": n,
                     "filter": replace(fp, providers=(p,), errors=(c if c is not None else NONE,), outcomes=nd)}
                    for (p, c), n in code_rows.most_common()],
        "by_network": rate_rows("network", "networks"),
        "by_country": rate_rows("country", "countries"),
        "series": series,
        "cost_by_day": [{"day": d, "provider": p, "priced": n, "cost": c} for d, p, n, c in queries.cost_by_day(conn, fp, now=now, window=window)],
        "cost_by_network": sorted(({"provider": p, "network": net, "priced": v[0], "cost": v[1], "messages": v[2],
                                    "filter": replace(fp, providers=(p,), networks=(net or NONE,))}
                                   for (p, net), v in cost_net.items() if v[0]), key=lambda r: -r["cost"]),
        "stale": queries.page(conn, stale_filter, limit=STALE_SHOWN, now=now, window=window),
        "stale_count": queries.count(conn, stale_filter, now=now, window=window),
    }
