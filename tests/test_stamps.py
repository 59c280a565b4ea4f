"""messages.attr_at: which event each attribute came from, read back exactly as written, in the
compact form and in the forms older databases hold."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from smsmon.lifecycle import ATTRIBUTES
from smsmon.store.stamps import decode_attr_at, encode_attr_at

STAMPS = st.lists(st.tuples(st.sampled_from(["2026-11-23T10:00:00.000000Z", "2026-11-23T10:00:05.000000Z"]),
                            st.sampled_from(["k1", "ez:3811", "z\x00nul"])).map(list), min_size=1, max_size=4)


@given(st.data())
def test_what_is_written_is_read_back(data) -> None:
    stamps = data.draw(STAMPS)
    attr_at = {name: data.draw(st.sampled_from(stamps)) for name in data.draw(st.sets(st.sampled_from(ATTRIBUTES)))}
    status = data.draw(st.sampled_from([*stamps, [None, None]]))
    text = encode_attr_at(attr_at, status)
    assert decode_attr_at(text, status) == attr_at


def test_attributes_from_the_status_event_take_one_character_each() -> None:
    status = ["2026-11-23T10:00:00.000000Z", "f94d0931-4048-4678-9093-d6c19ffa911e"]
    attr_at = {name: list(status) for name in ATTRIBUTES[:5]}
    text = encode_attr_at(attr_at, status)
    assert text is not None and len(text) == len(ATTRIBUTES) and "f94d" not in text


def test_older_forms_are_still_read() -> None:
    stamp = ["2026-11-23T10:00:00.000000Z", "k1"]
    as_dict = json.dumps({ATTRIBUTES[0]: stamp})  # before schema 4
    as_list = json.dumps([[stamp], "0" + "-" * (len(ATTRIBUTES) - 1)])  # schema 4 before the status stamp
    assert decode_attr_at(as_dict) == decode_attr_at(as_list) == {ATTRIBUTES[0]: stamp}
