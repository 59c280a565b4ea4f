"""The callback listener (SPEC §5): an aiohttp.web application, in the app's asyncio loop or
headless under `smsmon serve`.

    POST /callbacks/zeckta            a Zeckta delivery callback (no token configured)
    POST /callbacks/zeckta/<token>    the same, when a token is configured (compared in constant time)
    GET  /healthz                     status, database, events stored, last callback

Answers: 200 {"ok": true, "eventId": ..., "duplicate": false|true} only once the event is
committed; 400 with the reason (the body is kept as a dead letter); 403 outside --allow-from;
404 for a missing or wrong token (nothing stored); 405; 413 over 64 KiB (not read); 503 when
the store cannot commit, so the provider retries.

aiohttp's access log is off: it would write the token. Our own log never shows it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import msgspec
from aiohttp import web

from smsmon.config import Address, Secret
from smsmon.errors import Failure, ListenerError, ParseError, StoreError
from smsmon.ingest.committer import Committer
from smsmon.providers import zeckta
from smsmon.store.writer import DeadLetter
from smsmon.timeutil import fmt, now_utc

log = logging.getLogger("smsmon.listener")

MAX_BODY = 64 * 1024
MAX_IN_FLIGHT = 2000  # callbacks waiting for the writer at once; beyond it, 503 at once (bounded memory)
CALLBACK_PATH = "/callbacks/zeckta"
LINES_PER_SECOND = 20  # beyond this, callbacks are summed up once a second
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: list[str]) -> list[Network]:
    nets = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(c.strip(), strict=False))
        except ValueError:
            raise ListenerError(f"--allow-from {c!r} is not an address or CIDR range (e.g. 203.0.113.0/24)") from None
    return nets


@dataclass
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    token: Secret | None = None
    allow_from: list[Network] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.token, str):
            self.token = Secret(self.token)

    def check(self) -> None:
        """Refuse what is unsafe by default, with the way out in the message."""
        if not Address(self.host, self.port).loopback and not self.token and not self.insecure:
            raise ListenerError(
                f"refusing to listen on {self.host} without a callback token: anyone who can reach it could write "
                "to your database. Set SMSMON_CALLBACK_TOKEN (or --token), or pass --insecure if something else protects it")
        token = self.token.reveal() if self.token is not None else None
        if token is not None and (len(token) < 8 or "/" in token or not token.isprintable()):
            raise ListenerError("the callback token must be at least 8 printable characters without '/'")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ListenerError("HTTPS needs both --tls-cert and --tls-key")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ListenerError(f"cannot load the TLS certificate or key: {exc}") from None
        return ctx


class CallbackLog:
    """One line per callback, or, past LINES_PER_SECOND, a summary once a second."""

    def __init__(self, logger: logging.Logger = log, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.clock = clock
        self.window = int(clock())
        self.lines = 0
        self.held: dict[str, int] = {}

    def record(self, status: int, kind: str, what: str, *args: object) -> None:
        """`what % args` is only formatted when the line is written."""
        self.roll()
        self.lines += 1
        if self.lines <= LINES_PER_SECOND:
            self.logger.info("%d " + what, status, *args)
        else:
            self.held[kind] = self.held.get(kind, 0) + 1

    def roll(self) -> None:
        now = int(self.clock())
        if now != self.window:
            self.flush()
            self.window, self.lines = now, 0

    def flush(self) -> None:
        if self.held:
            total = sum(self.held.values())
            parts = ", ".join(f"{n:,} {k}" for k, n in sorted(self.held.items(), key=lambda kv: -kv[1]))
            self.logger.info("... and %s more callbacks in that second: %s", f"{total:,}", parts)
            self.held = {}


_encode = msgspec.json.Encoder().encode


def _json(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json", headers=headers or None)


class Listener:
    def __init__(self, committer: Committer, config: ListenerConfig, *, on_event: Callable[[int], None] | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        config.check()
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.committer = committer
        self.config = config
        self.on_event = on_event  # told the newest events.id after each stored callback (the UI's nudge)
        self.callback_log = CallbackLog()
        self.last_callback_at: str | None = None
        self.counts = {"new": 0, "duplicate": 0, "rejected": 0, "unavailable": 0}
        self._runner: web.AppRunner | None = None
        self._flusher: asyncio.Task | None = None
        self.url: str | None = None

    # ── the application ───────────────────────────────────────────────────────
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", CALLBACK_PATH, self._callback)
        app.router.add_route("*", CALLBACK_PATH + "/{token}", self._callback)
        app.router.add_route("*", "/healthz", self._health)
        app.router.add_route("*", "/{anything:.*}", self._not_found)
        return app

    def _forbidden(self, request: web.Request) -> web.Response | None:
        """403 outside --allow-from (checked first on every route; no middleware, which costs on the hot path)."""
        if self.config.allow_from and not self._allowed(request.remote):
            self.callback_log.record(403, "forbidden", "%s: %s is outside --allow-from", Failure.FORBIDDEN_ADDRESS, request.remote)
            return _json(403, {"ok": False, "error": "address not allowed"})
        return None

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._forbidden(request) or _json(404, {"ok": False, "error": "not found"})

    def _allowed(self, remote: str | None) -> bool:
        try:
            addr = ipaddress.ip_address(remote or "")
        except ValueError:
            return False
        return any(addr in net for net in self.config.allow_from)

    def _token_ok(self, given: str | None) -> bool:
        expected = self.config.token
        if expected is None:
            return given is None
        if given is None:
            return False
        return hmac.compare_digest(given.encode(), expected.reveal().encode())

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        if refused := self._forbidden(request):
            return refused
        if not self._token_ok(request.match_info.get("token")):
            self.callback_log.record(404, "bad token", "%s: a request without the right token (nothing stored)", Failure.BAD_TOKEN)
            return _json(404, {"ok": False, "error": "not found"})
        if request.method != "POST":
            return _json(405, {"ok": False, "error": "use POST"}, Allow="POST")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._too_large(request)
        if self.in_flight >= self.max_in_flight:
            self.counts["unavailable"] += 1
            self.callback_log.record(503, "overloaded", "overloaded: %d callbacks already waiting for the database", self.in_flight)
            return _json(503, {"ok": False, "error": "overloaded, retry later"}, **{"Retry-After": "5"})
        self.in_flight += 1
        try:
            return await self._accept(request)
        finally:
            self.in_flight -= 1

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()  # stops at client_max_size (64 KiB), chunked bodies too
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(request)
        received = now_utc()
        try:
            if not body.strip():
                raise ParseError("empty body", Failure.INVALID_JSON)
            event = zeckta.parse_callback(body, received_at=received)
        except ParseError as exc:
            return await self._reject(request, body, exc, received)
        try:
            applied = await self.committer.submit(event)
        except StoreError as exc:
            self.counts["unavailable"] += 1
            self.callback_log.record(503, "unavailable", "%s: %s (%s not stored; Zeckta will retry)", Failure.STORE_UNAVAILABLE,
                                     exc, event.message_id)
            return _json(503, {"ok": False, "error": "store unavailable, retry later"}, **{"Retry-After": "5"})
        kind = "duplicate" if applied.duplicate else "new"
        self.counts[kind] += 1
        self.last_callback_at = event.received_at
        self.callback_log.record(200, kind, "%-9s %s %s from %s", kind, event.message_id, event.raw_status, request.remote)
        if not applied.duplicate and self.on_event:
            self.on_event(applied.event_id or 0)
        return _json(200, {"ok": True, "eventId": event.event_key, "duplicate": applied.duplicate})

    def _too_large(self, request: web.Request) -> web.Response:
        self.counts["rejected"] += 1
        self.callback_log.record(413, "too large", "%s: over %d KiB from %s (not read)", Failure.BODY_TOO_LARGE, MAX_BODY // 1024,
                                 request.remote)
        response = _json(413, {"ok": False, "error": f"body over {MAX_BODY // 1024} KiB"})
        response.force_close()
        return response

    async def _reject(self, request: web.Request, body: bytes, error: ParseError, received: datetime) -> web.Response:
        self.counts["rejected"] += 1
        code, reason = error.kind.value, error.reason
        path = CALLBACK_PATH + ("/****" if self.config.token else "")  # never the token, never a query string
        try:
            await self.committer.dead_letter(DeadLetter(fmt(received), request.remote, path, f"{code}: {reason}", body))
        except StoreError as exc:
            log.warning("could not keep a dead letter: %s", exc)
        self.callback_log.record(400, "rejected", "%s: %s from %s", code, reason, request.remote)
        return _json(400, {"ok": False, "error": reason})

    async def _health(self, request: web.Request) -> web.Response:
        if refused := self._forbidden(request):
            return refused
        if request.method != "GET":
            return _json(405, {"ok": False, "error": "use GET"}, Allow="GET")
        c = self.committer
        return _json(200, {
            "status": "ok" if c.healthy else "degraded",
            "database": str(c.db_path),
            "events": c.last_event_id,
            "last_callback": self.last_callback_at,
            "store": "ok" if c.healthy else f"unavailable: {c.last_error}",
            "this_run": dict(self.counts, commits=c.batches,
                             mean_batch=round(c.batched_items / c.batches, 1) if c.batches else None,
                             mean_commit_ms=round(c.commit_seconds * 1000 / c.batches, 2) if c.batches else None),
        })

    # ── running ───────────────────────────────────────────────────────────────
    async def start(self) -> str:
        """Bind and serve; return the base URL (with the real port when 0 was asked for)."""
        ctx = self.config.ssl_context()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=10.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=ctx)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ListenerError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}"
                                " (is another smsmon running? choose another with --listen)") from None
        port = self._runner.addresses[0][1] if self._runner.addresses else self.config.port
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self.url = f"{self.config.scheme}://{host}:{port}"
        self._flusher = asyncio.create_task(self._flush_log())
        return self.url

    @property
    def callback_url(self) -> str:
        """The URL to give Zeckta, with the token masked (it is never printed whole)."""
        return f"{self.url}{CALLBACK_PATH}" + (f"/{self.config.token.masked()}" if self.config.token else "")

    async def _flush_log(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.callback_log.roll()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (their commits complete), close."""
        if self._flusher:
            self._flusher.cancel()
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        self.callback_log.flush()
