"""Fake provider APIs on loopback, for the demo, `smsmon simulate` and the tests (SPEC §7).

FakeEazita serves `GET /sms/delivery` in Eazita's real shape, quirks included (numbers as
strings, null references, error_code "8", country_code "9292", JSON-escaped slashes in dates,
errors as HTTP 200 with a negative code). Its messages move through their lifecycles as its
clock advances. FakeZeckta serves the Message Status API. Both can be told to fail in each way
a real provider does, for the next N requests.

The clock is a function, so tests move time forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable
from urllib.parse import quote, quote_plus

import msgspec
from aiohttp import web

from smsmon.timeutil import UTC, zone

Clock = Callable[[], float]
FAILURES = ("api_error", "http", "html", "invalid_json", "timeout", "big", "rows", "body", "redirect", "drip",
            "gzip_bomb", "bad_gzip", "echo")
BIG_ROWS = 10_000
BOMB_BYTES = 1 << 30  # what a gzip bomb inflates to: 1 GiB of JSON whitespace, about 1 MB on the wire


def echo_forms(text: str) -> list[str]:
    """Every way a careless server repeats a value it was sent: as is, %-encoded with upper and
    lower hex, with + for spaces, half decoded (only some characters encoded), upper-cased."""
    encoded = quote(text, safe="")
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded)
    half = "".join(quote(ch, safe="") if i % 2 else ch for i, ch in enumerate(text))
    return [text, encoded, lower, quote_plus(text), half, text.upper(), encoded.upper(), quote_plus(text).lower()]


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """A gzip body that inflates to `size` bytes of valid JSON (an envelope padded with spaces)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [z.compress(b'{"code": 1, "data": [')]
    block = b" " * (1 << 20)
    for _ in range(size // len(block)):
        out.append(z.compress(block))
    out.append(z.compress(b"]}"))
    out.append(z.flush())
    return b"".join(out)


@dataclass
class Step:
    after: float  # seconds after the message was sent
    status: str
    error_code: str = "0"


@dataclass
class FakeMessage:
    message_id: int
    created: float  # clock time
    steps: list[Step]
    network: str = "Zong"
    country_code: str = "92"
    reference: str | None = None
    price: str = "0.003"
    gsm: str | None = None

    def row(self, now: float, tz: Any) -> dict[str, Any] | None:
        """The report row as Eazita would show it at `now`, or None before it exists."""
        done = [s for s in self.steps if self.created + s.after <= now]
        if not done:
            return None
        step = done[-1]
        sent = next((s for s in self.steps if s.status not in ("SUBMIT",) and self.created + s.after <= now), None)

        def date(t: float | None) -> str | None:
            if t is None:
                return None
            return datetime.fromtimestamp(t, UTC).astimezone(tz).strftime("%Y/%m/%d %H:%M:%S")

        final = step.status not in ("SUBMIT", "PENDING")
        row = {
            "message_id": self.message_id, "status": step.status, "price": self.price, "network": self.network,
            "country_code": self.country_code,
            "done_date": date(self.created + step.after) if final else None,
            "sent_date": date(self.created + sent.after) if sent else None,
            "error_code": step.error_code, "reference": self.reference,
        }
        if self.gsm:
            row["gsm"] = self.gsm
        return row


@dataclass
class _Failure:
    kind: str
    remaining: int
    arg: Any = None


class _FakeServer:
    """Shared plumbing: start on loopback, failure injection, request counting."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._failures: list[_Failure] = []
        self.requests: list[dict[str, Any]] = []  # what was asked, for tests
        self._runner: web.AppRunner | None = None
        self.url = ""

    def fail(self, kind: str, *, count: int = 1, arg: Any = None) -> None:
        """The next `count` requests fail (or misbehave):

        api_error (arg: code), http (arg: status, or (status, Retry-After value)), html,
        invalid_json, timeout (arg: seconds to hang), big (arg: rows, default 10,000),
        rows (arg: report rows served as they are, impossible dates and all), body (arg:
        (status, content type, bytes[, more headers])), redirect (arg: Location), drip (arg: seconds to send
        a valid answer one byte a second), gzip_bomb (arg: inflated size), bad_gzip (says gzip,
        is not), echo (the credentials repeated in every encoding: in rows and error texts)."""
        if kind not in FAILURES:
            raise ValueError(f"unknown failure {kind!r}; use one of {', '.join(FAILURES)}")
        self._failures.append(_Failure(kind, count, arg))

    def _next_failure(self) -> _Failure | None:
        while self._failures:
            f = self._failures[0]
            if f.remaining > 0:
                f.remaining -= 1
                return f
            self._failures.pop(0)
        return None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    def app(self) -> web.Application:  # pragma: no cover - overridden
        raise NotImplementedError

    async def _injected(self, failure: _Failure, ok_body: Callable[[], bytes], request: web.Request) -> web.StreamResponse:
        """The misbehaviours both fakes share."""
        if failure.kind == "http":
            status, retry_after = (failure.arg if isinstance(failure.arg, tuple) else (failure.arg or 500, None))
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            return web.Response(status=status, text=f"error {status}", headers=headers)
        if failure.kind == "html":
            return web.Response(status=200, text="<html><body><h1>Maintenance</h1></body></html>", content_type="text/html")
        if failure.kind == "invalid_json":
            return web.Response(status=200, body=b'{"code": 1, "data": [{"message_id": ', content_type="application/json")
        if failure.kind == "timeout":
            await asyncio.sleep(failure.arg or 30)
            return web.Response(body=ok_body(), content_type="application/json")
        if failure.kind == "body":
            status, ctype, body, *more = failure.arg
            return web.Response(status=status, body=body, headers={"Content-Type": ctype, **(more[0] if more else {})})
        if failure.kind == "redirect":
            return web.Response(status=302, headers={"Location": failure.arg or "https://elsewhere.example.net/moved"})
        if failure.kind == "drip":
            return await self._drip(request, ok_body(), float(failure.arg or 60))
        if failure.kind == "gzip_bomb":
            return web.Response(body=gzip_bomb(int(failure.arg or BOMB_BYTES)),
                                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        if failure.kind == "bad_gzip":
            return web.Response(body=b"\x1f\x8b\x08\x00 this is not gzip at all " * 50,
                                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        raise AssertionError(failure.kind)

    @staticmethod
    async def _drip(request: web.Request, body: bytes, seconds: float) -> web.StreamResponse:
        """A valid answer, padded with JSON whitespace to `seconds` bytes, one byte a second."""
        body += b" " * max(0, int(seconds) - len(body))
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(len(body))})
        await response.prepare(request)
        sent = 0
        deadline = time.monotonic() + seconds
        try:
            while sent < len(body) - 1 and time.monotonic() < deadline:
                await response.write(body[sent : sent + 1])
                sent += 1
                await asyncio.sleep(1.0)
            await response.write(body[sent:])
        except (ConnectionResetError, RuntimeError):
            pass  # the client gave up, as it should: nothing more to send
        return response


class FakeEazita(_FakeServer):
    """`GET /sms/delivery?api=...&pass=...[&messageid=1,2][&contents=...]`."""

    RECENT = 100  # rows in the account's recent log

    def __init__(self, api_key: str = "test-key", password: str = "test-pass", *, clock: Clock = time.time,
                 timezone: str = "Asia/Karachi", echo_credentials: bool = False) -> None:
        super().__init__(clock)
        self.api_key, self.password = api_key, password
        self.echo_credentials = echo_credentials  # error texts repeat what was sent, as careless servers do
        self.tz = zone(timezone)
        self.messages: dict[int, FakeMessage] = {}

    def add(self, message_id: int, steps: list[Step] | list[tuple], **attrs: Any) -> FakeMessage:
        m = FakeMessage(message_id, self.clock(), [s if isinstance(s, Step) else Step(*s) for s in steps], **attrs)
        self.messages[message_id] = m
        return m

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/sms/delivery", self._delivery)
        return app

    def _rows(self, ids: list[int] | None) -> list[dict[str, Any]]:
        now = self.clock()
        chosen = [self.messages[i] for i in ids if i in self.messages] if ids is not None else \
            sorted(self.messages.values(), key=lambda m: -m.created)[: self.RECENT]
        return [r for m in chosen if (r := m.row(now, self.tz)) is not None]

    def _big(self, n: int) -> bytes:
        """A report of `n` delivered rows of about 205 bytes each, as Eazita's own sample rows
        (145,000 of them make the 30 MB answer of issue 9)."""
        base = FakeMessage(0, self.clock() - 60, [Step(0, "SUBMIT"), Step(2, "PENDING"), Step(9, "DELIVERED")])
        template = base.row(self.clock(), self.tz)
        return self._encode({"code": 1, "data": [dict(template, message_id=900_000 + i) for i in range(n)]})

    def _echo(self, request: web.Request) -> str:
        """The query string as received and in every other encoding."""
        q = request.query
        return " ".join([request.query_string, *(f"{k}={form}" for k in ("api", "pass") for form in echo_forms(q[k]))])

    def _echo_rows(self, request: web.Request) -> list[dict[str, Any]]:
        """Rows that repeat the credentials: in a date (a row error that quotes it), in a
        reference and a network (stored fields), and in a status."""
        q = request.query
        now = datetime.fromtimestamp(self.clock(), UTC).astimezone(self.tz).strftime("%Y/%m/%d %H:%M:%S")
        echo = self._echo(request)
        rows = [{"message_id": 990_001, "status": "DELIVERED", "done_date": f"api={q['api']}&pass={q['pass']} {echo}",
                 "sent_date": now, "error_code": "0"}]
        for i, form in enumerate(echo_forms(q["pass"]) + echo_forms(q["api"])):
            rows.append({"message_id": 990_100 + i, "status": "DELIVERED", "done_date": now, "sent_date": now,
                         "error_code": "0", "reference": f"ref {form}", "network": form})
        # a second event of a message the answer makes final, with the password in its status
        rows.append({"message_id": 990_100, "status": f"FAILED {q['pass'].upper()}", "done_date": now, "sent_date": now})
        return rows

    @staticmethod
    def _encode(obj: Any) -> bytes:
        # Eazita escapes slashes in its JSON ("2018\\/03\\/25"), as PHP's json_encode does.
        return msgspec.json.encode(obj).replace(b"/", b"\\/")

    async def _delivery(self, request: web.Request) -> web.Response:
        q = request.query
        self.requests.append(dict(q))
        if not q.get("api") or not q.get("pass"):
            body = {"code": -1, "error": "Authentication Error - No credentials provided - api or pass missing."}
            return web.Response(body=self._encode(body), content_type="application/json")
        if q["api"] != self.api_key or q["pass"] != self.password:
            echo = f" (api={q['api']}, pass={q['pass']}; {self._echo(request)})" if self.echo_credentials else ""
            return web.Response(body=self._encode({"code": -2, "error": f"Authentication Error - Invalid API key or password.{echo}"}),
                                content_type="application/json")
        ids = None
        if q.get("messageid"):
            try:
                ids = [int(x) for x in q["messageid"].split(",") if x.strip()]
            except ValueError:
                return web.Response(body=self._encode({"code": -1, "error": "Invalid messageid."}), content_type="application/json")
        failure = self._next_failure()
        if failure and failure.kind == "api_error":
            echo = f" while serving api={q['api']}&pass={q['pass']}; {self._echo(request)}" if self.echo_credentials else ""
            return web.Response(body=self._encode({"code": int(failure.arg or -6), "error": f"General error{echo}."}),
                                content_type="application/json")
        if failure and failure.kind == "big":
            return web.Response(body=self._big(int(failure.arg or BIG_ROWS)), content_type="application/json")
        if failure and failure.kind == "rows":
            return web.Response(body=self._encode({"code": 1, "data": failure.arg}), content_type="application/json")
        if failure and failure.kind == "echo":
            return web.Response(body=self._encode({"code": 1, "data": self._echo_rows(request)}), content_type="application/json")
        if failure:
            return await self._injected(failure, lambda: self._encode({"code": 1, "data": self._rows(ids)}), request)
        return web.Response(body=self._encode({"code": 1, "data": self._rows(ids)}), content_type="application/json")


class FakeZeckta(_FakeServer):
    """`GET /v1/messaging/sms/messages/{id}` with `Authorization: Bearer <key>`."""

    def __init__(self, api_key: str = "test-zeckta-key", *, clock: Clock = time.time) -> None:
        super().__init__(clock)
        self.api_key = api_key
        self.statuses: dict[str, str] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/messaging/sms/messages/{message_id}", self._status)
        return app

    async def _status(self, request: web.Request) -> web.Response:
        mid = request.match_info["message_id"]
        self.requests.append({"message_id": mid})
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"success": False, "message": "Invalid API key"}, status=401)
        failure = self._next_failure()
        if failure and failure.kind in ("api_error", "big", "rows"):
            return web.json_response({"success": False, "message": "Internal error"}, status=200)
        body = {"success": True, "message": "OK", "data": {"messageId": mid, "status": self.statuses.get(mid, "")},
                "requestId": f"req-{len(self.requests)}"}
        if failure and failure.kind == "echo":
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            forms = " ".join(echo_forms(key))
            if mid not in self.statuses:
                return web.json_response({"success": False, "message": f"Unknown message for Bearer {key} ({forms})"})
            return web.json_response(body | {"message": f"OK for {forms}", "data": {"messageId": mid, "status": self.statuses[mid],
                                                                                  "note": key.upper()}})
        if failure:
            return await self._injected(failure, lambda: msgspec.json.encode(body), request)
        if mid not in self.statuses:
            return web.json_response({"success": False, "message": "Message not found"}, status=404)
        return web.json_response(body)


# ── traffic for the demo ────────────────────────────────────────────────────────
EAZITA_PATHS: list[tuple[float, list[tuple[float, str, str]]]] = [
    (0.70, [(0, "SUBMIT", "0"), (2, "PENDING", "0"), (8, "DELIVERED", "0")]),
    (0.06, [(0, "SUBMIT", "0"), (2, "PENDING", "0"), (12, "FAILED", "8")]),
    (0.04, [(0, "SUBMIT", "0"), (2, "PENDING", "0"), (10, "NOT_DELIVERED", "101")]),
    (0.03, [(0, "SUBMIT", "0"), (1, "REJECTED", "104")]),
    (0.02, [(0, "SUBMIT", "0"), (1, "NOT_ALLOWED", "0")]),
    (0.06, [(0, "SUBMIT", "0"), (2, "PENDING", "0"), (20, "SENT", "0")]),
    (0.04, [(0, "SUBMIT", "0"), (2, "PENDING", "0"), (30, "EXPIRED", "0"), (45, "DELIVERED", "0")]),
    (0.05, [(0, "SUBMIT", "0"), (2, "PENDING", "0")]),
]


def add_random_eazita(fake: FakeEazita, rng: random.Random, message_id: int) -> FakeMessage:
    """One realistic Eazita message, its lifecycle scaled by a few seconds of jitter."""
    steps = rng.choices([p for _, p in EAZITA_PATHS], weights=[w for w, _ in EAZITA_PATHS])[0]
    stretch = 0.5 + rng.random()
    network, prefix = rng.choice((("Zong", "+92310"), ("Jazz", "+92300"), ("Telenor", "+92345"), ("Ufone", "+92333")))
    return fake.add(message_id, [Step(t * stretch, s, c) for t, s, c in steps], network=network,
                    country_code="9292" if rng.random() < 0.03 else "92",
                    reference=f"ref-{message_id}" if rng.random() < 0.5 else None,
                    gsm=prefix + f"{rng.randrange(10**7):07d}")
