"""The filter language of SPEC §9, shared by the UI and the read-side commands. Pure.

    free text                 the start of a message id, destination number or reference (and,
                              16 characters or more, exactly an event id: the store looks it up)
    status:failed,rejected    a normalized status, an outcome (delivered, not_delivered,
                              in_flight, unknown), or open / final / stale
    provider:zeckta           zeckta or eazita
    dest:+233241234567        a destination number; a trailing * matches a prefix
    error:101                 an error code
    network:Zong              a network name
    country:GH  country:233   a country, by ISO code or calling code
    error:none  network:none  country:none    the provider gave none
    flag:late_dlr             an anomaly flag
    since:2h  until:2026-06-09    a duration ago, a date, an ISO time, today or yesterday

Fields combine with AND; comma-separated values of one field combine with OR. Quote values
with spaces: network:"Ghana Telecom".
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, fields
from datetime import datetime

from smsmon.errors import FilterError
from smsmon.lifecycle import KEY_PREFIX, PROVIDERS, STATUS_API_KEY_PREFIX, Flag, Outcome, Status
from smsmon.normalize import calling_code_of, code, phone
from smsmon.timeutil import UTC, parse_when

FIELDS = ("status", "provider", "dest", "error", "network", "country", "flag", "since", "until")
NONE = "none"  # error:none, network:none, country:none: messages the provider gave no value for
SPECIAL_STATUSES = ("open", "final", "stale")
_ALIASES = {"to": "dest", "phone": "dest", "code": "error", "net": "network", "from": "since"}
_NULLABLE = ("error", "network", "country")


@dataclass(frozen=True)
class Filter:
    text: str = ""
    statuses: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    special: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    dests: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()  # calling codes ("233"), or NONE
    flags: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    source: str = field(default="", compare=False)
    text_number: str = ""  # the free text read as the start of a local phone number, in international form
    text_messages: tuple[str, ...] = ()  # the messages whose event ids equal the free text (the store fills it)

    @property
    def empty(self) -> bool:
        return all(not getattr(self, f.name) for f in fields(self) if f.name not in ("source", "text_number", "text_messages"))


def _values(raw: str) -> list[str]:
    return [v.strip() for v in raw.split(",") if v.strip()]


# An event key smsmon made for an event without an id of its own (lifecycle.derived_key): `ez:` and
# 16 hex digits is free text (an event id), not a field.
_DERIVED_KEY = re.compile(rf"^({'|'.join((*KEY_PREFIX.values(), STATUS_API_KEY_PREFIX))}):[0-9a-f]{{16}}$")


def parse(text: str, now: datetime) -> Filter:
    """Parse a filter expression. Raises FilterError saying what is wrong."""
    try:
        tokens = shlex.split(text or "")
    except ValueError:
        raise FilterError("unclosed quote in filter") from None
    words: list[str] = []
    acc: dict[str, list] = {k: [] for k in ("statuses", "outcomes", "special", "providers", "dests", "errors", "networks",
                                            "countries", "flags")}
    since = until = None
    for tok in tokens:
        name, sep, value = tok.partition(":")
        key = _ALIASES.get(name.lower(), name.lower())
        if not sep or (key not in FIELDS and (not name.isalpha() or name.lower() in PROVIDERS)) or _DERIVED_KEY.match(tok):
            words.append(tok)  # free text: a message id like zeckta:016205e1-..., a time, a number
            continue
        if key not in FIELDS:
            raise FilterError(f"unknown filter field {name!r}: use {', '.join(f + ':' for f in FIELDS)}")
        if not value:
            raise FilterError(f"{key}: needs a value, e.g. {_EXAMPLES[key]}")
        if key in ("since", "until"):
            try:
                when = parse_when(value, now)
            except ValueError as exc:
                raise FilterError(f"{key}: {exc}") from None
            since, until = (when, until) if key == "since" else (since, when)
            continue
        for v in _values(value):
            _add(acc, key, v)
    if since and until and since >= until:
        raise FilterError("since: is not before until:")
    return Filter(text=" ".join(words), since=since, until=until, source=(text or "").strip(),
                  **{k: tuple(dict.fromkeys(v)) for k, v in acc.items()})


_EXAMPLES = {"status": "status:failed", "provider": "provider:zeckta", "dest": "dest:+233241234567", "error": "error:101",
             "network": "network:Zong", "country": "country:GH", "flag": "flag:late_dlr", "since": "since:2h",
             "until": "until:2026-06-09"}


def _add(acc: dict[str, list], key: str, v: str) -> None:
    if key == "status":
        up = v.upper()
        if up in Status.__members__:
            acc["statuses"].append(up)
        elif up in Outcome.__members__:
            acc["outcomes"].append(up)
        elif v.lower() in SPECIAL_STATUSES:
            acc["special"].append(v.lower())
        else:
            valid = [s.lower() for s in Status] + [o.lower() for o in Outcome if o.value not in Status.__members__]
            raise FilterError(f"status: unknown value {v!r}; use one of {', '.join(valid + list(SPECIAL_STATUSES))}")
    elif key == "provider":
        if v.lower() not in PROVIDERS:
            raise FilterError(f"provider: unknown value {v!r}; use {' or '.join(PROVIDERS)}")
        acc["providers"].append(v.lower())
    elif key in _NULLABLE and v.lower() == NONE:
        acc[{"error": "errors", "network": "networks", "country": "countries"}[key]].append(NONE)
    elif key == "country":
        calling = calling_code_of(v)
        if calling is None:
            raise FilterError(f"country: unknown value {v!r}; use a country code (GH, PK) or a calling code (233, +92), or none")
        acc["countries"].append(calling)
    elif key == "dest":
        star = v.endswith("*")
        number = phone(v.rstrip("*")) or v.rstrip("*")
        acc["dests"].append(number + ("*" if star else ""))
    elif key == "error":
        acc["errors"].append(code(v) or v)
    elif key == "network":
        acc["networks"].append(v)
    elif key == "flag":
        if v.lower() not in {f.value for f in Flag}:
            raise FilterError(f"flag: unknown value {v!r}; use one of {', '.join(f.value for f in Flag)}")
        acc["flags"].append(v.lower())


def _quote(value: str) -> str:
    return f'"{value}"' if any(c.isspace() or c in "\"'," for c in value) else value


def expression(f: Filter) -> str:
    """The filter written back in the language: `parse(expression(f))` selects the same
    messages. Times are written as UTC ISO times, so the expression means the same later."""
    words = [f.text] if f.text else []
    status = [s.lower() for s in f.statuses] + [o.lower() for o in f.outcomes] + list(f.special)
    for name, values in (("status", status), ("provider", f.providers), ("dest", f.dests), ("error", f.errors),
                         ("network", f.networks), ("country", f.countries), ("flag", f.flags)):
        if values:
            words.append(f"{name}:" + ",".join(_quote(v) for v in values))
    for name, when in (("since", f.since), ("until", f.until)):
        if when is not None:
            words.append(f"{name}:" + when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return " ".join(words)
