"""JSON decoding and validation shared by the provider parsers: every failure is a ParseError
that names the problem. (The value normalisers are public, in smsmon.normalize.)"""

from __future__ import annotations

from typing import Any

import msgspec

from smsmon.errors import Failure, ParseError
from smsmon.normalize import text


def required_id(value: Any, name: str) -> str:
    t = text(value)
    if t is None:
        raise ParseError(f"`{name}` is empty")
    return t


def _parse_error(exc: Exception) -> ParseError:
    """msgspec's (or Python's) failure in our words and kind: bytes that are not JSON are
    INVALID_JSON; JSON of the wrong shape is INVALID_PAYLOAD."""
    if isinstance(exc, RecursionError):
        return ParseError("JSON nested too deeply", Failure.INVALID_JSON)
    if isinstance(exc, UnicodeDecodeError):  # what msgspec raises for invalid UTF-8 inside a JSON string
        return ParseError("invalid JSON: a string that is not UTF-8", Failure.INVALID_JSON)
    msg = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        # `Object missing required field `eventId``, `Expected `str`, got `int` - at `$.timestamp``
        return ParseError(msg.replace("Object missing required field", "missing required field").replace(" - at ", " at "))
    return ParseError(f"invalid JSON: {msg}", Failure.INVALID_JSON)


def decode(decoder: msgspec.json.Decoder, body: bytes):  # type: ignore[no-untyped-def]
    """Decode JSON into a typed shape; every failure is a ParseError naming the problem."""
    try:
        return decoder.decode(body)
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError) as exc:
        raise _parse_error(exc) from None


def convert(obj: Any, shape: type):  # type: ignore[no-untyped-def]
    """Validate an already-decoded object against a shape; failures are ParseErrors."""
    try:
        return msgspec.convert(obj, shape)
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise _parse_error(exc) from None


def encode(obj: Any) -> str:
    """An object as JSON text (for the raw payload of a decoded object)."""
    try:
        return msgspec.json.encode(obj).decode()
    except (msgspec.MsgspecError, TypeError) as exc:
        raise ParseError(f"cannot keep the payload as JSON: {exc}") from None
    except RecursionError as exc:
        raise _parse_error(exc) from None
