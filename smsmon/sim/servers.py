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
import random
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import msgspec
from aiohttp import web

from smsmon.timeutil import UTC, zone

Clock = Callable[[], float]
FAILURES = ("api_error", "http", "html", "invalid_json", "timeout", "big")


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
        """The next `count` requests fail: api_error (arg: code), http (arg: status, or
        (429, retry_after)), html, invalid_json, timeout (arg: seconds to hang), big (10,000 rows)."""
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

    async def _injected(self, failure: _Failure, ok_body: Callable[[], bytes]) -> web.StreamResponse:
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
        raise AssertionError(failure.kind)


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
            echo = f" (api={q['api']}, pass={q['pass']})" if self.echo_credentials else ""
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
            echo = f" while serving api={q['api']}&pass={q['pass']}" if self.echo_credentials else ""
            return web.Response(body=self._encode({"code": int(failure.arg or -6), "error": f"General error{echo}."}),
                                content_type="application/json")
        if failure and failure.kind == "big":
            base = FakeMessage(0, self.clock() - 60, [Step(0, "SUBMIT"), Step(2, "PENDING"), Step(9, "DELIVERED")])
            rows = []
            for i in range(10_000):
                base.message_id = 900_000 + i
                rows.append(base.row(self.clock(), self.tz))
            return web.Response(body=self._encode({"code": 1, "data": rows}), content_type="application/json")
        if failure:
            return await self._injected(failure, lambda: self._encode({"code": 1, "data": self._rows(ids)}))
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
        if failure and failure.kind in ("api_error", "big"):
            return web.json_response({"success": False, "message": "Internal error"}, status=200)
        body = {"success": True, "message": "OK", "data": {"messageId": mid, "status": self.statuses.get(mid, "")},
                "requestId": f"req-{len(self.requests)}"}
        if failure:
            return await self._injected(failure, lambda: msgspec.json.encode(body))
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
