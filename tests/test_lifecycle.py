"""SPEC §3: normalized statuses, the per-provider mapping, and the merge rule."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmon.lifecycle import (
    ATTRIBUTES, RANK, Flag, Outcome, Status, StatusClass, fold, is_final, normalize, outcome_of, status_class,
)
from tests.helpers import NOW, eevent, message_events, zevent

# SPEC §3 mapping table, row by row.
MAPPING = [
    *[("zeckta", s, s) for s in ("SCHEDULED", "QUEUED", "PROCESSING", "SUBMITTED", "BUFFERED", "SENT",
                                 "DELIVERED", "FAILED", "UNDELIVERABLE", "EXPIRED", "REJECTED")],
    ("eazita", "SUBMIT", "QUEUED"), ("eazita", "PENDING", "SENT"), ("eazita", "SENT", "UNCONFIRMED"),
    ("eazita", "EXPIRED", "EXPIRED"), ("eazita", "DELIVERED", "DELIVERED"), ("eazita", "REJECTED", "REJECTED"),
    ("eazita", "NOT_ALLOWED", "REJECTED"), ("eazita", "NOT_DELIVERED", "UNDELIVERABLE"), ("eazita", "FAILED", "FAILED"),
]


@pytest.mark.parametrize("provider,raw,expected", MAPPING)
def test_every_documented_status_maps(provider: str, raw: str, expected: str) -> None:
    assert normalize(provider, raw) is Status(expected)
    assert normalize(provider, f"  {raw.lower()} ") is Status(expected)  # case-insensitive, trimmed


@pytest.mark.parametrize("raw", ["MESSAGE_DELIVERED", "message_sent", " MESSAGE_FAILED "])
def test_zeckta_event_types_mean_their_status(raw: str) -> None:
    assert normalize("zeckta", raw) is Status(raw.strip().upper().removeprefix("MESSAGE_"))


@pytest.mark.parametrize("provider,raw", [("zeckta", "READ"), ("zeckta", "MESSAGE_CLICKED"), ("eazita", "SUBMITTED"),
                                          ("eazita", ""), ("zeckta", None), ("other", "DELIVERED")])
def test_anything_else_is_unknown(provider: str, raw: str | None) -> None:
    assert normalize(provider, raw) is Status.UNKNOWN


@pytest.mark.parametrize("status,cls,outcome,eazita_cls,eazita_outcome", [
    ("SCHEDULED", "PENDING", "IN_FLIGHT", None, None), ("SENT", "PENDING", "IN_FLIGHT", None, None),
    ("UNCONFIRMED", "SOFT_FINAL", "UNKNOWN", "SOFT_FINAL", "UNKNOWN"),
    ("EXPIRED", "HARD_FINAL", "NOT_DELIVERED", "SOFT_FINAL", "UNKNOWN"),
    ("REJECTED", "HARD_FINAL", "NOT_DELIVERED", None, None), ("UNDELIVERABLE", "HARD_FINAL", "NOT_DELIVERED", None, None),
    ("FAILED", "HARD_FINAL", "NOT_DELIVERED", None, None), ("DELIVERED", "HARD_FINAL", "DELIVERED", None, None),
    ("UNKNOWN", "NONE", "UNKNOWN", None, None),
])
def test_classes_and_outcomes(status, cls, outcome, eazita_cls, eazita_outcome) -> None:
    s = Status(status)
    assert status_class("zeckta", s) is StatusClass[cls]
    assert outcome_of("zeckta", s) is Outcome(outcome)
    assert status_class("eazita", s) is StatusClass[eazita_cls or cls]
    assert outcome_of("eazita", s) is Outcome(eazita_outcome or outcome)


def test_ranks_follow_the_lifecycle() -> None:
    order = ["SCHEDULED", "QUEUED", "PROCESSING", "SUBMITTED", "BUFFERED", "SENT", "UNCONFIRMED", "EXPIRED", "FAILED", "DELIVERED"]
    assert [RANK[Status(s)] for s in order] == sorted(RANK[Status(s)] for s in order)
    assert RANK[Status.UNKNOWN] == 0


def t(minutes: float) -> dict:
    return {"at": NOW - timedelta(minutes=60) + timedelta(minutes=minutes)}


# ── the merge rule, case by case ─────────────────────────────────────────────────
def test_pending_advances_and_a_lower_rank_is_kept_but_ignored() -> None:
    submitted, sent = zevent("MESSAGE_SUBMITTED", **t(0)), zevent("MESSAGE_SENT", **t(1))
    state = fold([sent, submitted])
    assert state.status is Status.SENT
    assert Flag.REGRESSION_IGNORED in state.flags
    assert state.events_count == 2  # rule 2: always stored


def test_final_beats_pending_whatever_the_order() -> None:
    for order in itertools.permutations([zevent("MESSAGE_SUBMITTED", **t(0)), zevent("MESSAGE_SENT", **t(1)),
                                         zevent("MESSAGE_DELIVERED", **t(2))]):
        s = fold(order)
        assert (s.status, s.outcome, s.is_final) == (Status.DELIVERED, Outcome.DELIVERED, True)


def test_sent_after_delivered_is_a_late_event() -> None:
    state = fold([zevent("MESSAGE_DELIVERED", **t(2)), zevent("MESSAGE_SENT", **t(1))])
    assert state.status is Status.DELIVERED
    assert Flag.LATE_EVENT in state.flags


def test_unknown_never_moves_the_status() -> None:
    state = fold([zevent("MESSAGE_SENT", **t(0)), zevent("MESSAGE_READ", **t(5))])
    assert state.status is Status.SENT
    assert Flag.UNMAPPED in state.flags
    assert state.last_event_at == zevent("MESSAGE_READ", **t(5)).event_time


def test_hard_final_replaces_soft_final_as_a_late_dlr() -> None:
    expired = eevent("EXPIRED", sent="2026/11/23 10:00:00", done="2026/11/23 14:00:00")
    delivered = eevent("DELIVERED", sent="2026/11/23 10:00:00", done="2026/11/23 16:00:00")
    state = fold([expired, delivered])
    assert (state.status, state.outcome) == (Status.DELIVERED, Outcome.DELIVERED)
    assert Flag.LATE_DLR in state.flags


def test_eazita_sent_is_soft_final_unconfirmed() -> None:
    state = fold([eevent("PENDING", done=None), eevent("SENT")])
    assert (state.status, state.outcome, state.is_final) == (Status.UNCONFIRMED, Outcome.UNKNOWN, True)


def test_different_hard_finals_conflict_and_the_later_wins_in_either_order() -> None:
    delivered, failed = zevent("MESSAGE_DELIVERED", **t(2)), zevent("MESSAGE_FAILED", **t(3))
    for order in ([delivered, failed], [failed, delivered]):
        state = fold(order)
        assert state.status is Status.FAILED
        assert Flag.TERMINAL_CONFLICT in state.flags


def test_error_code_travels_with_the_winning_status() -> None:
    failed = eevent("FAILED", error_code="103", done="2026/11/23 16:51:00")
    delivered = eevent("DELIVERED", error_code="0", done="2026/11/23 16:55:00")
    assert fold([delivered, failed]).error_code == "0"
    assert fold([failed, delivered]).error_code == "0"


def test_attributes_take_the_latest_non_null_by_event_time() -> None:
    early = zevent("MESSAGE_SENT", cost=None, segments=2, **t(1))
    late = zevent("MESSAGE_DELIVERED", cost=0.05, segments=None, **t(2))
    for order in ([early, late], [late, early]):
        state = fold(order)
        assert state.attrs["cost"] == 0.05
        assert state.attrs["segments"] == 2


def test_duplicates_by_event_id_and_by_fingerprint_change_nothing() -> None:
    ev = zevent("MESSAGE_DELIVERED", event_id="same", **t(2))
    twin = zevent("MESSAGE_DELIVERED", event_id="other-id", **t(2))  # same provider, message, status, code, time
    state = fold([ev, ev, twin])
    assert state.events_count == 1
    assert state.duplicates_count == 2


def test_stale_is_derived_from_the_window() -> None:
    from smsmon.lifecycle import is_stale
    from smsmon.timeutil import fmt

    old = fmt(NOW - timedelta(hours=73))
    assert is_stale(False, old, NOW, timedelta(hours=72))
    assert not is_stale(True, old, NOW, timedelta(hours=72))
    assert not is_stale(False, fmt(NOW - timedelta(hours=1)), NOW, timedelta(hours=72))


# ── properties ───────────────────────────────────────────────────────────────────
def test_a_fingerprint_twin_changes_nothing_even_with_other_attributes() -> None:
    first = zevent("MESSAGE_SENT", event_id="one", segments=1, **t(1))
    twin = zevent("MESSAGE_SENT", event_id="two", segments=3, **t(1))
    assert fold([first, twin]).attrs["segments"] == 1
    assert fold([twin, first]).attrs["segments"] == 3
    assert fold([first, twin]).duplicates_count == 1


def summary(state):
    return (state.status, state.outcome, state.raw_status, state.error_code, state.attrs, state.first_event_at,
            state.last_event_at, state.events_count, state.final_at, state.sent_at, state.deliver_seconds)


@settings(max_examples=300, deadline=None)
@given(message_events(), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_same_message(events, rnd) -> None:
    reference = summary(fold(events))
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert summary(fold(shuffled)) == reference
    assert summary(fold(list(reversed(events)))) == reference


@settings(max_examples=200, deadline=None)
@given(message_events(), st.data())
def test_replaying_any_event_changes_nothing(events, data) -> None:
    again = data.draw(st.sampled_from(events))
    before = fold(events)
    after = fold([*events, again])
    assert summary(after) == summary(before)
    assert after.duplicates_count == before.duplicates_count + 1


def test_status_moves_only_forward_within_pending() -> None:
    for a, b in itertools.permutations(["SUBMITTED", "SENT", "QUEUED"], 2):
        state = fold([zevent(f"MESSAGE_{a}", **t(0)), zevent(f"MESSAGE_{b}", **t(1))])
        assert state.status is max(Status(a), Status(b), key=RANK.get)


def test_every_attribute_name_is_a_message_column() -> None:
    from smsmon.store.schema import MESSAGE_COLUMNS

    assert set(ATTRIBUTES) <= set(MESSAGE_COLUMNS)
    assert all(is_final("zeckta", s) for s in (Status.DELIVERED, Status.EXPIRED))
