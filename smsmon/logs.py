"""Where log lines go: stderr for the headless commands, nowhere under the app (whose screens
show health and failures instead). smsmon's own loggers and the libraries' that run inside it
(aiohttp's, asyncio's) go the same way, so every line a stranger can cause is

- redacted: every secret masked, in the message and in any traceback (SafeFormatter);
- harmless on a terminal: control characters written as escapes, a message cut at MAX_MESSAGE;
- throttled: a warning or error repeated within THROTTLE_S is written once, then
  "... and N more like it" (Throttle). Callback lines (info) are summed up by the listener's
  own CallbackLog, past 20 a second.

    restore = logs.to_stderr(Redactor(settings.secrets))   # smsmon serve, poll, import
    restore = logs.silenced()                              # the app
"""

from __future__ import annotations

import atexit
import logging
import math
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from smsmon.redact import Redactor

ROOT = "smsmon"
LIBRARIES = ("aiohttp", "asyncio")  # their warnings and errors: bad requests, accept failures, TLS failures
THROTTLE_S = 10.0  # a repeated warning at most once per this, plus its count
MAX_MESSAGE = 1000  # characters of one message (a 9,000-character request line is not worth a screenful)
_NUMBERS = re.compile(r"\d+")
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_CONTROL_KEEP_NEWLINE = {c: e for c, e in _CONTROL.items() if c != 0x0A}
_active: Throttle | None = None


def printable(text: str, *, newlines: bool = False) -> str:
    """Control characters (an attacker's terminal escapes among them) as \\xNN escapes."""
    return text.translate(_CONTROL_KEEP_NEWLINE if newlines else _CONTROL)


def _bad_http(exc: BaseException | None) -> bool:
    """aiohttp's error for a request it could not parse (its message echoes the request bytes)."""
    return exc is not None and any(c.__name__ == "HttpProcessingError" for c in type(exc).__mro__)


class SafeFormatter(logging.Formatter):
    """`HH:MM:SS message`, then any traceback; secrets masked everywhere, control characters
    escaped. aiohttp's report of an unparseable request becomes one line naming the error's
    type, without the bytes it echoes (a request line may hold the token, or terminal escapes)."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        message = self.redact(record.getMessage())
        if len(message) > MAX_MESSAGE:
            message = f"{message[:MAX_MESSAGE]}... ({len(message) - MAX_MESSAGE:,} more characters)"
        exc = record.exc_info[1] if record.exc_info else None
        trace = ""
        if _bad_http(exc) and record.name.startswith("aiohttp"):
            message += f": a request that is not valid HTTP ({type(exc).__name__}), answered 400"
        elif record.exc_info:
            trace = "\n" + printable(self.redact(self.formatException(record.exc_info)), newlines=True)
        return f"{self.formatTime(record, '%H:%M:%S')} {printable(message)}{trace}"


@dataclass
class _Window:
    started: float
    repeats: int
    name: str  # the first line's logger, level and text, for the summary
    level: int
    text: str


class Throttle(logging.Filter):
    """Passes the first of a kind of warning or error, counts its repeats for `interval`, then
    writes "... and N more like it" (when the next record or `flush()` finds the interval over).
    Lines are of a kind when they come from the same logger at the same level with the same text
    but for its numbers (addresses, counts, ports) and with the same exception type. Info lines pass."""

    def __init__(self, target: logging.Handler, interval: float = THROTTLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.target = target  # where the summaries are written
        self.interval = interval
        self.clock = clock
        self.windows: dict[tuple, _Window] = {}
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "throttle_summary", False):
            return True
        self.flush()
        if record.levelno < logging.WARNING:
            return True
        try:
            text = record.getMessage()[:MAX_MESSAGE]
        except Exception:  # arguments that do not fit the format (the handler reports that): the format is the kind
            text = str(record.msg)[:MAX_MESSAGE]
        exc = record.exc_info[1] if record.exc_info else None
        key = record.name, record.levelno, _NUMBERS.sub("#", text), type(exc).__name__ if exc else None
        with self.lock:
            window = self.windows.get(key)
            if window is None:
                self.windows[key] = _Window(self.clock(), 0, record.name, record.levelno, text)
                return True
            window.repeats += 1
            return False

    def flush(self, *, everything: bool = False) -> None:
        """Write the summaries of the intervals that are over (of all, with `everything`)."""
        now = self.clock()
        with self.lock:
            over = [k for k, w in self.windows.items() if everything or now - w.started >= self.interval]
            ended = [self.windows.pop(k) for k in over]
        for w in ended:
            if w.repeats:
                self.target.handle(self._summary(w, min(now - w.started, self.interval)))

    @staticmethod
    def _summary(w: _Window, seconds: float) -> logging.LogRecord:
        record = logging.LogRecord(w.name, w.level, __file__, 0, "... and %s more like it in %d s: %s",
                                   (f"{w.repeats:,}", max(1, math.ceil(seconds)), w.text), None)
        record.throttle_summary = True
        return record


def flush() -> None:
    """Write what the throttle holds back whose interval is over (the listener calls it every second)."""
    if _active is not None:
        _active.flush()


def _route(levels: dict[str, int | None], handler: logging.Handler) -> Callable[[], None]:
    """Send these loggers to `handler` alone, at these levels (None: as they are); return what
    puts them back."""
    saved = []
    for name, level in levels.items():
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers[:] = [handler]
        logger.propagate = False
        if level is not None:
            logger.setLevel(level)

    def restore() -> None:
        for logger, handlers, propagate, level in saved:
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)

    return restore


def to_stderr(redact: Redactor) -> Callable[[], None]:
    """smsmon's info and above, aiohttp's and asyncio's warnings and above, on stderr: redacted,
    escaped, throttled. Returns the function that puts things back as they were."""
    global _active
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(redact))
    throttle = Throttle(handler)
    handler.addFilter(throttle)
    put_back = _route({ROOT: logging.INFO, **{name: logging.WARNING for name in LIBRARIES}}, handler)
    previous, _active = _active, throttle
    final = lambda: throttle.flush(everything=True)  # noqa: E731
    atexit.register(final)

    def restore() -> None:
        global _active
        final()
        atexit.unregister(final)
        _active = previous
        put_back()

    return restore


def silenced() -> Callable[[], None]:
    """Send smsmon's, aiohttp's and asyncio's log lines nowhere (Python's last-resort handler
    would otherwise write warnings over the app); return the function that puts things back."""
    return _route({name: None for name in (ROOT, *LIBRARIES)}, logging.NullHandler())
