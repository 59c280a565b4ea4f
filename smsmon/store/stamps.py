"""Which event each attribute of a message came from (`messages.attr_at`), stored compactly.

The merge rule (lifecycle.py) keeps, per attribute, the (event time, event key) stamp of the
event its value came from, so that an older event never overwrites a newer value. Most
attributes of most messages come from the event that set the status, whose stamp the row holds
already (status_at, status_key): those are one character here."""

from __future__ import annotations

import msgspec

from smsmon.lifecycle import ATTRIBUTES

_attr_encoder = msgspec.json.Encoder()
_attr_decoder = msgspec.json.Decoder()


def encode_attr_at(attr_at: dict[str, list[str]], status: list[str | None] | None = None) -> str | None:
    """Which event each attribute's value came from, compactly: one character per attribute (in
    ATTRIBUTES order) naming its stamp (event time, event key): `=` the stamp of the status
    (`status`: [status_at, status_key], most attributes of most messages), a digit one of the
    other distinct stamps listed once, `-` none. With no other stamp it is just those
    characters (`==-==--=-`, 9 bytes); else `[[["2026-...Z","ez:3811..."]],"0-==0--=-"]`."""
    if not attr_at:
        return None
    stamps: list[list[str]] = []
    index = []
    for name in ATTRIBUTES:
        stamp = attr_at.get(name)
        if stamp is None:
            index.append("-")
        elif stamp == status:  # both lists (a tuple would only be written out in full)
            index.append(_STATUS_STAMP)
        else:
            if stamp not in stamps:
                stamps.append(stamp)
            index.append(_STAMP_DIGITS[stamps.index(stamp)])
    if not stamps:
        return "".join(index)
    return _attr_encoder.encode([stamps, "".join(index)]).decode()


def decode_attr_at(text: str | None, status: list[str | None] | None = None) -> dict[str, list[str]]:
    if not text:
        return {}
    if text[0] == "{":  # written before schema 4
        return _attr_decoder.decode(text)
    stamps, index = _attr_decoder.decode(text) if text[0] == "[" else ([], text)
    out = {}
    for name, c in zip(ATTRIBUTES, index):
        if c == _STATUS_STAMP:
            out[name] = list(status or [None, None])
        elif c != "-":
            out[name] = stamps[_STAMP_DIGITS.index(c)]
    return out


_STATUS_STAMP = "="
_STAMP_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
