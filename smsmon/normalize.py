"""Normalisers of the values providers send and people type: text, numbers, error codes and
phone numbers. Pure. The parsers (providers), the filter language and the store's lookups all
use these, so a number or a code means the same thing wherever it is written or searched.

phonenumbers is imported only where a country name or calling code is needed: it is slow to
import and the first screen does not need it.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from smsmon.errors import LocalNumber

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


def e164(value: Any, region: str | None = None) -> str | None:
    """A phone number in E.164 (`+233241234567`) where it is one: given with its +, as
    international digits without it (`233241234567`), or in local format (`0241234567`) read in
    `region` (ISO 3166 code, e.g. GH). Anything else comes back as `phone()` gives it; so does a
    local number without a region (`strict` callers raise LocalNumber for it instead)."""
    p = phone(value)
    if p is None or not _PHONE.fullmatch(p) or p.startswith("+"):
        return p  # already E.164-shaped (the common case costs nothing), or not a number at all
    return _e164_digits(p, region.upper() if region else None)


def e164_strict(value: Any, region: str | None = None) -> str | None:
    """`e164`, but a local number that cannot be read without a region raises LocalNumber."""
    p = phone(value)
    if p and p.startswith("0") and _PHONE.fullmatch(p) and not region:
        raise LocalNumber(f"{p} looks like a local number: set default_region (e.g. GH) to read it, or type it with its +country code")
    return e164(p, region)


@functools.lru_cache(maxsize=65_536)
def _e164_digits(digits: str, region: str | None) -> str:
    import phonenumbers

    # A trunk 0 says local; otherwise try the digits as international first.
    candidates = [(digits, region)] if digits.startswith("0") else [("+" + digits, None), (digits, region)]
    for text, reg in candidates:
        if reg is None and not text.startswith("+"):
            continue
        try:
            number = phonenumbers.parse(text, reg)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return digits


def international_prefix(text: str, region: str | None) -> str | None:
    """The start of a number typed in `region`'s local format, in international form: with
    region GH, `024` is `+23324` (the trunk prefix 0 becomes the country code). None when the text
    is not such a start, or no region is given."""
    digits = _PHONE_JUNK.sub("", text or "")
    if not region or not digits.isdigit():
        return None
    import phonenumbers

    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    trunk = metadata.national_prefix if metadata else None
    if not trunk or not digits.startswith(trunk):
        return None
    return f"+{metadata.country_code}{digits[len(trunk):]}"


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


def calling_code_of(text: str) -> str | None:
    """A country as a filter names it: a calling code (`233`, `+92`) or an ISO region (`GH`,
    `pk`) -> its calling code ("233"); None when it is neither."""
    t = text.strip().lstrip("+")
    import phonenumbers

    if t.isdigit():
        return t if phonenumbers.region_code_for_country_code(int(t)) not in ("ZZ", None) else None
    code = phonenumbers.country_code_for_region(t.upper()) if t.isalpha() and len(t) == 2 else 0
    return str(code) if code else None
