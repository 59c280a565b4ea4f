"""Free text in a filter: the start of a message id, a provider's id, a phone number or a
reference (filters.py), as SQL on the messages. Two forms of the same test: the ids it matches
gathered from an index range each (`ids_sql`, for a text that matches few), or each row tested in
turn (`row_sql`, for one that matches many: the rows are then read in page order)."""

from __future__ import annotations

from typing import Any, Sequence

from smsmon.lifecycle import PROVIDERS
from smsmon.normalize import phone, phone_forms


def ranges(text: str, number: str = "") -> list[tuple[str, str, str]]:
    """Free text: (column, from, to) of the messages whose id, provider id, number or reference
    starts with it, each a range of an index."""
    out = []

    def prefix(column: str, value: str) -> None:
        out.append((column, value, value + "\U0010ffff"))

    for value in dict.fromkeys((text, text.lower())):
        if value.split(":", 1)[0] in PROVIDERS:
            prefix("id", value)
        else:
            for p in PROVIDERS:
                prefix("id", f"{p}:{value}")
    for form in dict.fromkeys([*phone_forms(phone(text) or text), *([number] if number else [])]):
        prefix("dest", form)
    prefix("reference", text)
    return out


def _tests(text: str, number: str, messages: Sequence[str], t: str = "") -> tuple[list[str], list[Any]]:
    """The row tests of free text, one per index range of `ranges` and one for `messages` (those
    with an event of that id), and their parameters; `t` prefixes the columns."""
    tests, params = [], []
    for column, lo, hi in ranges(text, number):
        tests.append(f"{t}{column} >= ? AND {t}{column} < ?")
        params += [lo, hi]
    if messages:
        tests.append(f"{t}id IN ({','.join('?' * len(messages))})")
        params.extend(messages)
    return tests, params


def ids_sql(text: str, number: str = "", messages: Sequence[str] = (), *, union: str = "UNION") -> tuple[str, list[Any]]:
    """Free text: the ids of the messages it matches, each test a branch read from its index: for
    a text that matches few. `union`: "UNION ALL" to count matches branch by branch, stopping at a
    limit (a UNION gathers every match before it yields one)."""
    tests, params = _tests(text, number, messages)
    return f" {union} ".join(f"SELECT id FROM messages WHERE {test}" for test in tests), params


def row_sql(text: str, number: str = "", messages: Sequence[str] = (), t: str = "") -> tuple[str, list[Any]]:
    """The same tests on each row, for a text that matches many: the rows are read in page order
    until the page is full (gathering every match first took 4 s for `+23354` at 10M events)."""
    tests, params = _tests(text, number, messages, t)
    return "(" + " OR ".join(f"({test})" for test in tests) + ")", params
