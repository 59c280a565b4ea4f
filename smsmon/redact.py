"""Keep secrets out of every text smsmon writes: logs, errors, poll_runs, the UI. Pure."""

from __future__ import annotations

import logging
from typing import Iterable
from urllib.parse import quote, quote_plus

MASK = "****"


class Redactor:
    """Replaces each secret (and its URL-encoded forms) with ****."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for s in secrets:
            if s:  # every secret, however short: a mangled log beats a leaked password
                forms |= {s, quote(s, safe=""), quote_plus(s)}
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        text = str(text)
        for form in self._forms:
            text = text.replace(form, MASK)
        return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record it passes."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True
