"""Log lines (issue 9): every secret masked, tracebacks included; a stranger's control bytes
escaped; repeats throttled; aiohttp's and asyncio's loggers treated like smsmon's, on stderr
under `smsmon serve` and silent under the app."""

from __future__ import annotations

import asyncio
import logging

import pytest

from smsmon import logs
from smsmon.bench.attack.rawhttp import exchange
from smsmon.ingest.committer import Committer
from smsmon.ingest.listener import Listener, ListenerConfig
from smsmon.redact import Redactor

TOKEN = "log-token-5f3a9c1e7b2d"


class Lines(logging.Handler):
    """Collects what a handler would write, formatted."""

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.lines: list[str] = []
        if formatter:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def record(msg: str, *args: object, level: int = logging.WARNING, name: str = "smsmon.test",
           exc: BaseException | None = None) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, (type(exc), exc, exc.__traceback__) if exc else None)


def test_repeats_of_a_warning_are_collapsed_into_one_line_and_a_count() -> None:
    now = [100.0]
    out = Lines()
    throttle = logs.Throttle(out, interval=10, clock=lambda: now[0])
    out.addFilter(throttle)
    for i in range(1000):
        out.handle(record("commit failed, %d callbacks answered 503: database is locked", i))
    out.handle(record("zeckta poll failed; next try in 30 s"))  # another kind: written
    out.handle(record("%d new events", 5, level=logging.INFO))  # information: never held back
    out.handle(record("%d new events", 5, level=logging.INFO))
    assert out.lines == ["commit failed, 0 callbacks answered 503: database is locked", "zeckta poll failed; next try in 30 s",
                         "5 new events", "5 new events"]
    now[0] = 110.5  # the interval is over: the next record (or flush) writes the count
    throttle.flush()
    assert out.lines[-1] == "... and 999 more like it in 10 s: commit failed, 0 callbacks answered 503: database is locked"
    out.handle(record("commit failed, %d callbacks answered 503: database is locked", 7))
    assert out.lines[-1] == "commit failed, 7 callbacks answered 503: database is locked"  # a new interval
    now[0] = 112.0
    throttle.flush(everything=True)  # at exit: nothing held, so nothing to add
    assert len(out.lines) == 6


def test_the_same_message_with_another_exception_is_another_kind() -> None:
    out = Lines()
    out.addFilter(logs.Throttle(out))
    for exc in (ValueError("a"), ValueError("b"), KeyError("c")):
        out.handle(record("internal_error while answering", level=logging.ERROR, exc=exc))
    assert len(out.lines) == 2


def _raise(text: str) -> BaseException:
    try:
        raise RuntimeError(text)
    except RuntimeError as exc:
        return exc


def test_secrets_are_masked_in_tracebacks_and_control_bytes_escaped() -> None:
    formatter = logs.SafeFormatter(Redactor([TOKEN]))
    line = formatter.format(record("request for /callbacks/zeckta/%s\x1b[2J\x07 from %s", TOKEN, "203.0.113.9",
                                   exc=_raise(f"bad path /callbacks/zeckta/{TOKEN}\x1b]0;pwned\x07")))
    assert TOKEN not in line and "\x1b" not in line and "\x07" not in line
    assert "/callbacks/zeckta/****\\x1b[2J\\x07 from 203.0.113.9" in line
    assert "RuntimeError: bad path /callbacks/zeckta/****\\x1b]0;pwned\\x07" in line
    assert line.count("\n") >= 2  # the traceback keeps its lines; the message has none


def test_a_long_message_is_cut() -> None:
    line = logs.SafeFormatter(Redactor()).format(record("GET /?q=%s", "a" * 9000))
    assert len(line) < logs.MAX_MESSAGE + 100 and line.endswith("... (8,008 more characters)")


def test_aiohttps_report_of_a_request_it_cannot_parse_is_one_line_without_the_bytes() -> None:
    from aiohttp.http_exceptions import LineTooLong

    exc = LineTooLong(f"/callbacks/zeckta/{TOKEN[:9]}", "8190")  # aiohttp echoes the start of the request line
    line = logs.SafeFormatter(Redactor([TOKEN])).format(
        record("Error handling request from %s", "127.0.0.1", level=logging.ERROR, name="aiohttp.server", exc=exc))
    assert line.endswith("Error handling request from 127.0.0.1: a request that is not valid HTTP (LineTooLong), answered 400")
    assert TOKEN[:9] not in line and "\n" not in line


async def _listener(db_path):  # type: ignore[no-untyped-def]
    committer = Committer(db_path)
    committer.start()
    listener = Listener(committer, ListenerConfig(host="127.0.0.1", port=0, token=TOKEN))
    url = await listener.start()
    return committer, listener, url


async def test_under_serve_the_token_never_reaches_stderr_and_a_flood_is_a_few_lines(db_path, capsys) -> None:
    """Issue 9: the token reached stderr through aiohttp's own error log (a 9,000-character query
    string, or a stray control byte in the request line), and bad requests wrote a line each."""
    before = [(lg.handlers[:], lg.propagate, lg.level) for lg in map(logging.getLogger, ("smsmon", "aiohttp", "asyncio"))]
    restore = logs.to_stderr(Redactor([TOKEN]))
    try:
        committer, listener, url = await _listener(db_path)
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        hostile = [f"POST /callbacks/zeckta/{TOKEN}?pad={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n",
                   f"POST /callbacks/zeckta/{TOKEN}\x01\x1b[31m HTTP/1.1\r\nHost: x\r\n\r\n",
                   f"GET /\x00 HTTP/1.1\r\nHost: x\r\nX: {TOKEN}\r\n\r\n"]
        answers = [await exchange(host, int(port), h.encode()) for h in hostile * 100]
        assert {a.status for a in answers} == {400}
        await listener.stop()
        await asyncio.to_thread(committer.stop)
    finally:
        restore()
    err = capsys.readouterr().err
    assert TOKEN not in err and TOKEN[: len(TOKEN) // 2] not in err and "\x1b" not in err and "Traceback" not in err
    lines = err.splitlines()
    assert 3 <= len(lines) <= 6, err  # one line per kind of bad request, and "... and N more like it"
    assert any("more like it" in line for line in lines)
    assert [(lg.handlers, lg.propagate, lg.level) for lg in map(logging.getLogger, ("smsmon", "aiohttp", "asyncio"))] == before


@pytest.mark.parametrize("name", ["smsmon.listener", "aiohttp.server", "asyncio"])
def test_under_the_app_nothing_is_written_and_everything_is_put_back(name, capfd) -> None:
    logger = logging.getLogger(name)
    before = (logger.handlers[:], logger.propagate, logger.level)
    restore = logs.silenced()
    try:
        logger.error("Error handling request from %s", "127.0.0.1")
    finally:
        restore()
    assert capfd.readouterr().err == ""
    assert (logger.handlers, logger.propagate, logger.level) == before
