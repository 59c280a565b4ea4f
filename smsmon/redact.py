"""Keep secrets out of every text smsmon writes: logs, errors, poll_runs, the database, the UI. Pure.

A secret is masked in every spelling a provider may echo it back in: as is; %-encoded with
upper- or lower-case hex, only partly, or twice (%2540); with + or %20 for a space; JSON-escaped
(\\u00f6, \\/); in any letter case. Each character of the secret matches any of its spellings,
so a mixture of them (a query string half decoded, then upper-cased) matches too. Masking
happens before anything is cut short, so no prefix of a secret survives a truncation.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

MASK = "****"


def _char(c: str) -> str:
    """A regular expression for one character of a secret, in each of its spellings."""
    forms = [re.escape(c)]
    forms += ["".join(f"%(?:25)?{b:02X}" for b in c.encode())]  # %-encoded, once or twice (any hex case: IGNORECASE)
    if ord(c) < 0x10000:
        forms.append(rf"\\u{ord(c):04X}")  # JSON's \uXXXX
    if c == " ":
        forms.append(r"\+")
    if c in '/"\\':
        forms.append(re.escape("\\" + c))  # JSON's \/ \" \\
    return "(?:" + "|".join(forms) + ")"


def _hex(b: int) -> str:
    return "".join(f"[{h}{h.lower()}]" if h.isalpha() else h for h in f"{b:02X}")


def _char_bytes(c: str) -> bytes:
    """The same for bytes, as alternatives that each start with a literal byte (so that the
    search skips quickly to where one may start) and without IGNORECASE (which folds only ASCII)."""
    forms = [re.escape(v.encode()) for v in dict.fromkeys((c, c.lower(), c.upper())) if len(v) == 1]
    forms.append(b"%(?:25)?" + b"%(?:25)?".join(_hex(b).encode() for b in c.encode()))
    if ord(c) < 0x10000:
        forms.append(rb"\\[uU]" + "".join(_hex(b) for b in divmod(ord(c), 256)).encode())
    if c == " ":
        forms.append(rb"\+")
    if c in '/"\\':
        forms.append(re.escape(("\\" + c).encode()))
    return b"(?:" + b"|".join(forms) + b")"


SCAN_CHUNK = 1 << 20  # bytes looked at a time by `found`: a 30 MB answer costs no more than 1 MB more memory
_SPELLING_MAX = 13  # bytes one character can take in a spelling: %25E2%2582%25AC ...
_SPELLING_MAX_CHARS = 15  # ... and characters: %25E2%2582%25AC


class Redactor:
    """Replaces each secret, in any of its spellings, with ****."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # every secret, however short: a mangled log beats a leaked password (config warns about short ones)
        unique = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._text = re.compile("|".join("".join(map(_char, s)) for s in unique), re.I) if unique else None
        self._bytes = [re.compile(b"".join(map(_char_bytes, s))) for s in unique]
        # what a secret looks like in text with no % and no \u in it, once lower-cased and
        # JSON's \/ \" \\ undone: itself (either case; + for a space)
        self._plain = sorted({v.encode().lower() for s in unique for v in (s, s.upper(), s.lower(), s.replace(" ", "+"))})
        self._overlap = max((len(s) for s in unique), default=0) * _SPELLING_MAX
        self._reach = max((len(s) for s in unique), default=0) * _SPELLING_MAX_CHARS

    def __call__(self, text: object) -> str:
        text = str(text)
        return self._text.sub(MASK, text) if self._text else text

    def cut(self, text: object, limit: int) -> str:
        """The text masked, then cut to `limit` characters. Only as much of it is masked as can
        reach the cut (the first `limit` characters and the longest spelling of a secret), so
        a huge text costs little, and no spelling straddling the cut leaves a prefix behind."""
        text = str(text)
        masked = self(text[: limit + self._reach])
        return masked if len(masked) <= limit else masked[: limit - 1] + "…"

    def found(self, data: bytes | bytearray | str) -> bool:
        """Whether a secret appears anywhere in `data`, in any spelling. Fast on large bodies
        (about 7 ms a MB): where there is no % and no \\u, a lower-cased search does."""
        if isinstance(data, str):
            return bool(self._text and self._text.search(data))
        if not self._plain:
            return False
        with memoryview(data) as view:
            for start in range(0, len(view), SCAN_CHUNK):
                chunk = bytes(view[start : start + SCAN_CHUNK + self._overlap])
                if b"%" in chunk or b"\\u" in chunk or b"\\U" in chunk:
                    if any(rx.search(chunk) for rx in self._bytes):
                        return True
                else:
                    low = chunk.lower().replace(b"\\/", b"/").replace(b'\\"', b'"').replace(b"\\\\", b"\\")
                    if any(p in low for p in self._plain):
                        return True
        return False

    def value(self, obj: Any) -> Any:
        """A decoded JSON value with every string in it (keys too) masked."""
        if isinstance(obj, str):
            return self(obj)
        if isinstance(obj, dict):
            return {self(k) if isinstance(k, str) else k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.value(v) for v in obj]
        return obj

