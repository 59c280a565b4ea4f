"""Normalisers of the values providers send and people type: text, numbers, error codes and
phone numbers. Pure. The parsers (providers), the filter language and the store's lookups all
use these, so a number or a code means the same thing wherever it is written or searched.

phonenumbers is imported only where a country name or calling code is needed: it is slow to
import and the first screen does not need it.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_TEXT = 256
_PHONE_JUNK = re.compile(r"[\s\-().]")
_PHONE = re.compile(r"\+?\d{3,20}")
_SAFE_INTEGER = 2**53  # beyond this a float (JSON number) is no longer an exact integer
# Names for the regions smsmon's users meet most; others are shown by their ISO code.
_REGION_NAMES = {"GH": "Ghana", "PK": "Pakistan", "NG": "Nigeria", "KE": "Kenya", "US": "United States",
                 "GB": "United Kingdom", "IN": "India", "ZA": "South Africa"}


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
        return value if abs(value) < _SAFE_INTEGER else None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f.is_integer() and abs(f) < _SAFE_INTEGER else None


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
    """A phone number with spaces, dashes, dots and brackets removed; anything that is not a
    number after that is kept as text (a sender name, say)."""
    t = text(value)
    if t is None:
        return None
    squeezed = _PHONE_JUNK.sub("", t)
    return squeezed if _PHONE.fullmatch(squeezed) else t


def phone_forms(number: str) -> tuple[str, ...]:
    """A number as it may be stored: with and without its leading +."""
    bare = number.lstrip("+")
    return (bare, "+" + bare) if bare.isdigit() else (number,)


def calling_code(number: str | None) -> str | None:
    """The country calling code of an international number ("+233241234567" -> "233"), by
    the longest known prefix of one to three digits; None when it is not international."""
    if not number or not number.startswith("+"):
        return None
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

    digits = number[1:4]
    for n in (1, 2, 3):
        prefix = digits[:n]
        if len(prefix) == n and prefix.isascii() and prefix.isdigit() and int(prefix) in COUNTRY_CODE_TO_REGION_CODE:
            return prefix
    return None


def country_name(calling: str | None) -> str:
    """"233" -> "Ghana (+233)"; unknown codes as they are."""
    if not calling:
        return "unknown"
    import phonenumbers

    try:
        region = phonenumbers.region_code_for_country_code(int(calling))
    except ValueError:
        return calling
    if region in ("ZZ", None):
        return f"+{calling}"
    return f"{_REGION_NAMES.get(region, region)} (+{calling})"
