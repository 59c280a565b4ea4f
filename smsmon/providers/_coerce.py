"""Tolerant coercion of provider values: numbers that arrive as strings, nulls, stray spaces."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from smsmon.errors import ParseError

MAX_TEXT = 256
_PHONE_JUNK = re.compile(r"[\s\-().]")


def text(value: Any) -> str | None:
    """A short string from a string or a number; None for null, empty, or anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:MAX_TEXT] or None


def integer(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if abs(value) < 2**53 else None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f.is_integer() and abs(f) < 2**53 else None


def number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def code(value: Any) -> str | None:
    """An error code as text: `"0"`, `0` and ` 0 ` are all "0"; `101.0` is "101"."""
    i = integer(value)
    return str(i) if i is not None else text(value)


def phone(value: Any) -> str | None:
    """A phone number with spaces, dashes and brackets removed; anything else kept as text."""
    t = text(value)
    if t is None:
        return None
    squeezed = _PHONE_JUNK.sub("", t)
    return squeezed if re.fullmatch(r"\+?\d{3,20}", squeezed) else t


def required_id(value: Any, name: str) -> str:
    t = text(value)
    if t is None:
        raise ParseError(f"`{name}` is empty")
    return t


def decode(decoder: msgspec.json.Decoder, body: bytes):  # type: ignore[no-untyped-def]
    """Decode JSON into a typed shape; every failure is a ParseError naming the problem."""
    try:
        return decoder.decode(body)
    except msgspec.MsgspecError as exc:
        raise ParseError(validation_reason(exc)) from None
    except RecursionError:
        raise ParseError("JSON nested too deeply") from None


def convert(obj: Any, shape: type):  # type: ignore[no-untyped-def]
    """Validate an already-decoded object against a shape; failures are ParseErrors."""
    try:
        return msgspec.convert(obj, shape)
    except msgspec.MsgspecError as exc:
        raise ParseError(validation_reason(exc)) from None
    except RecursionError:
        raise ParseError("JSON nested too deeply") from None


def encode(obj: Any) -> str:
    """An object as JSON text (for the raw payload of a decoded object)."""
    try:
        return msgspec.json.encode(obj).decode()
    except (msgspec.MsgspecError, TypeError) as exc:
        raise ParseError(f"cannot keep the payload as JSON: {exc}") from None
    except RecursionError:
        raise ParseError("JSON nested too deeply") from None


def validation_reason(exc: msgspec.MsgspecError) -> str:
    """msgspec's message in our words: `Object missing required field `eventId``, `Expected `str`, got `int` - at `$.timestamp``."""
    msg = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return msg.replace("Object missing required field", "missing required field").replace(" - at ", " at ")
    return f"invalid JSON: {msg}"
