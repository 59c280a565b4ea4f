"""Country calling codes from phone numbers. Pure."""

from __future__ import annotations

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

_NAMES = {"GH": "Ghana", "PK": "Pakistan", "NG": "Nigeria", "KE": "Kenya", "US": "United States", "GB": "United Kingdom",
          "IN": "India", "ZA": "South Africa"}


def calling_code(number: str | None) -> str | None:
    """The country calling code of an international number ("+233241234567" -> "233"), by
    the longest known prefix of one to three digits; None when it is not international."""
    if not number or not number.startswith("+"):
        return None
    digits = number[1:4]
    for n in (1, 2, 3):
        if len(digits) >= n and int(digits[:n]) in COUNTRY_CODE_TO_REGION_CODE:
            return digits[:n]
    return None


def country_name(code: str | None) -> str:
    """"233" -> "Ghana (+233)"; unknown codes as they are."""
    if not code:
        return "unknown"
    try:
        region = phonenumbers.region_code_for_country_code(int(code))
    except ValueError:
        return code
    if region in ("ZZ", None):
        return f"+{code}"
    return f"{_NAMES.get(region, region)} (+{code})"
