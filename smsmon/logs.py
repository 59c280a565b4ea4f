"""Where smsmon's log lines go: stderr for the headless commands, with every secret masked;
nowhere under the app, whose screens show health and failures instead."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from smsmon.redact import RedactingFilter, Redactor

ROOT = "smsmon"


def to_stderr(redact: Redactor) -> None:
    """One line per record on stderr, `HH:MM:SS message`, secrets masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter(redact))
    root = logging.getLogger(ROOT)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def silenced() -> Callable[[], None]:
    """Send smsmon's log lines nowhere (Python's last-resort handler would otherwise write
    warnings over the app); return the function that puts things back as they were."""
    root = logging.getLogger(ROOT)
    saved = (root.handlers[:], root.propagate)
    root.handlers[:] = [logging.NullHandler()]
    root.propagate = False

    def restore() -> None:
        root.handlers[:], root.propagate = saved

    return restore
