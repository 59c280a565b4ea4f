"""The callback listener (SPEC §5): an aiohttp.web application, in the app's asyncio loop or
headless under `smsmon serve`.

    POST /callbacks/zeckta            a Zeckta delivery callback (no token configured)
    POST /callbacks/zeckta/<token>    the same, when a token is configured (compared in constant time)
    GET  /healthz                     ok or degraded; the details only with the token (/healthz/<token>),
                                      or on a loopback address when no token is set

Answers: 200 {"ok": true, "eventId": ..., "duplicate": false|true} only once the event is
committed; 400 with the reason and its code (a body the parser cannot accept is kept as a dead
letter first; a transfer that cannot be decoded is not); 403 outside --allow-from; 404 for a
missing or wrong token (nothing stored); 405; 408 for a body not in within BODY_TIMEOUT_S
(connection closed); 413 over 64 KiB (not read, and answered before `100 Continue` is sent);
503 with Retry-After when the store cannot commit or keep the dead letter, when callbacks
waiting for it are at MAX_IN_FLIGHT, and for a bug of ours (logged as internal_error): the
provider retries and nothing is lost. Never a 500.

Connections are bounded (smsmon.ingest.connections): an idle or half-sent connection is closed
after IDLE_TIMEOUT_S, a body must arrive within BODY_TIMEOUT_S, and beyond the cap the oldest
idle connection makes room for a new one.

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
from aiohttp import HttpVersion11, web

from smsmon import logs
from smsmon.config import Address, Secret
from smsmon.errors import Failure, ListenerError, ParseError, StoreError
from smsmon.ingest.committer import Committer
from smsmon.ingest.connections import (BACKLOG, MAX_CONNECTIONS, Connections, connection_cap, defer_accept,
                                       raise_open_file_limit)
from smsmon.ingest.proxy import SIMULATED, Client, Network, ProxyTrust, kept_headers, parse_networks  # noqa: F401 (parse_networks: for options.py)
from smsmon.providers import zeckta
from smsmon.redact import Redactor
from smsmon.store.origin import SIMULATED as SIM_SOURCE
from smsmon.store.writer import DeadLetter
from smsmon.timeutil import fmt, now_utc

log = logging.getLogger("smsmon.listener")

MAX_BODY = 64 * 1024
MAX_IN_FLIGHT = 2000  # callbacks waiting for the writer at once; beyond it, 503 at once (bounded memory)
IDLE_TIMEOUT_S = 10.0  # a connection with no request (headers not all in, or between keep-alive requests), and a TLS handshake
BODY_TIMEOUT_S = 5.0  # a whole body: a real callback (about 400 bytes) arrives in one packet
LINGER_S = 2.0  # reading and dropping the rest of a body left unread by an early answer, before closing
RETRY_AFTER_S = "5"
CALLBACK_PATH = "/callbacks/zeckta"
HEALTH_PATH = "/healthz"
LINES_PER_SECOND = 20  # beyond this, callbacks are summed up once a second


@dataclass
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    token: Secret | None = None
    allow_from: list[Network] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    region: str | None = None  # setting default_region: reads a destination in local format
    public_url: str | None = None  # setting public_url: where Zeckta reaches this listener (a proxy, a tunnel)
    trust_proxy: list[Network] = field(default_factory=list)  # whose X-Forwarded-* to believe (smsmon.ingest.proxy)

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


def _json(status: int, body: dict[str, Any], *, close: bool = False, **headers: str) -> web.Response:
    response = web.Response(body=_encode(body), status=status, content_type="application/json", headers=headers or None)
    if close:
        response.force_close()  # the rest of the body, if any, is not read
    return response


def _retry_later(error: str, code: Failure) -> web.Response:
    return _json(503, {"ok": False, "error": error, "code": code.value}, **{"Retry-After": RETRY_AFTER_S})


class Listener:
    def __init__(self, committer: Committer, config: ListenerConfig, *, on_event: Callable[[int], None] | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT, max_connections: int = MAX_CONNECTIONS,
                 body_timeout: float = BODY_TIMEOUT_S, idle_timeout: float = IDLE_TIMEOUT_S) -> None:
        """`max_connections` is lowered at start to what the open-file limit allows; the timeouts
        are in seconds (smaller in tests)."""
        config.check()
        self.max_in_flight = max_in_flight
        self.max_connections = max_connections
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self.in_flight = 0
        self.committer = committer
        self.config = config
        self.on_event = on_event  # told the newest events.id after each stored callback (the UI's nudge)
        self.proxy = ProxyTrust(config.trust_proxy)
        self.redact = Redactor([config.token.reveal()] if config.token else [])  # the ingest sets one for every secret
        self.health_extra: Callable[[], dict[str, Any]] | None = None  # more details for /healthz/<token> (forwarding)
        self.callback_log = CallbackLog()
        self.last_callback_at: str | None = None
        self.counts = {"new": 0, "duplicate": 0, "rejected": 0, "unavailable": 0, "body_timeout": 0, "bad_transfer": 0,
                       "internal_error": 0}
        self.connections: Connections | None = None
        self.extra_routes: list[Callable[[web.Application], None]] = []  # added before start: /metrics (metrics.py)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._flusher: asyncio.Task | None = None
        self.url: str | None = None

    # ── the application ───────────────────────────────────────────────────────
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        for path in (CALLBACK_PATH, CALLBACK_PATH + "/{token}"):
            app.router.add_route("*", path, self._callback, expect_handler=self._expect_callback)
        for path in (HEALTH_PATH, HEALTH_PATH + "/{token}"):
            app.router.add_route("*", path, self._health, expect_handler=self._expect_nothing)
        for add in self.extra_routes:
            add(app)
        app.router.add_route("*", "/{anything:.*}", self._not_found, expect_handler=self._expect_nothing)
        return app

    def _who(self, request: web.Request) -> Client:
        """The caller: the peer, or whom a trusted proxy says it called for (--trust-proxy)."""
        return self.proxy.client(request)

    def _forbidden(self, request: web.Request) -> web.Response | None:
        """403 outside --allow-from (checked first on every route; no middleware, which costs on the hot path)."""
        if self.config.allow_from and not self._allowed(self._who(request).address):
            self.callback_log.record(403, "forbidden", "%s: %s is outside --allow-from", Failure.FORBIDDEN_ADDRESS, self._who(request))
            return _json(403, {"ok": False, "error": "address not allowed"})
        return None

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return await _early(request, self._forbidden(request) or self._no_such_path(request))

    def _no_such_path(self, request: web.Request) -> web.Response:
        self.callback_log.record(404, "not found", "%s: %s %s from %s: no such path (nothing stored)", Failure.NOT_FOUND,
                                 request.method, request.path[:100], self._who(request))
        return _json(404, {"ok": False, "error": "not found"})

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
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.reveal().encode())

    async def _expect_nothing(self, request: web.Request) -> None:
        """`Expect: 100-continue` where no body is wanted: no invitation; the answer comes at once."""
        return None

    async def _expect_callback(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: the same checks as before reading a body (address, token, method,
        declared size), and only then "100 Continue"; a refusal is answered without inviting the body."""
        try:
            if refused := self._refusal(request):
                return await _early(request, refused)
            if request.headers.get("Expect", "").strip().lower() != "100-continue":
                return await _early(request, _json(417, {"ok": False, "error": "only `Expect: 100-continue` is understood"}))
            if request.version == HttpVersion11:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        except Exception as exc:  # a bug of ours: never a 500
            return self._internal_error(request, exc)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """The answer to a callback request refused before its body is read, or None."""
        if refused := self._forbidden(request):
            return refused
        if not self._token_ok(request.match_info.get("token")):
            if self.config.token is None:  # no token is asked for: a wrong path, not a wrong token
                return self._no_such_path(request)
            self.callback_log.record(404, "bad token", "%s: a request without the right token from %s (nothing stored)",
                                     Failure.BAD_TOKEN, self._who(request))
            return _json(404, {"ok": False, "error": "not found"})
        if request.method != "POST":
            return _json(405, {"ok": False, "error": "use POST"}, Allow="POST")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._too_large(request)
        return None

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        """Every path out of a callback is an answer the provider understands: a bug of ours is a
        503 (the provider retries, nothing is lost), never a 500."""
        connection = request.protocol
        try:
            if refused := self._refusal(request):
                return await _early(request, refused)
            if self.connections:
                self.connections.start_reading(connection)
            body = await self._read_body(request)
            if isinstance(body, web.Response):
                return body
            received = now_utc()
            if self.in_flight >= self.max_in_flight:
                self.counts["unavailable"] += 1
                self.callback_log.record(503, "overloaded", "%s: %d callbacks already waiting for the database",
                                         Failure.OVERLOADED, self.in_flight)
                return _retry_later("overloaded, retry later", Failure.OVERLOADED)
            if self.connections:
                self.connections.start_working(connection)
            self.in_flight += 1  # only now that the body is in: a slow sender holds a connection, not a place here
            try:
                return await self._accept(request, body, received)
            finally:
                self.in_flight -= 1
        except Exception as exc:  # a bug of ours: never a 500
            return self._internal_error(request, exc)

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """The whole body within the deadline, or the answer that says why not."""
        try:
            async with asyncio.timeout(self.body_timeout):
                return await request.read()  # stops at client_max_size (64 KiB), chunked bodies too
        except web.HTTPRequestEntityTooLarge:
            return await _early(request, self._too_large(request))
        except TimeoutError:
            self.counts["body_timeout"] += 1
            self.callback_log.record(408, "slow", "%s: no whole body within %g s from %s (connection closed)",
                                     Failure.BODY_TIMEOUT, self.body_timeout, self._who(request))
            return await _answer_and_close(request, _json(408, {
                "ok": False, "error": f"the body did not arrive within {self.body_timeout:g} s", "code": Failure.BODY_TIMEOUT.value}))
        except web.RequestPayloadError as exc:  # a Content-Encoding or chunked framing that does not decode
            self.counts["bad_transfer"] += 1
            self.callback_log.record(400, "bad transfer", "%s: %s from %s (nothing stored)", Failure.BAD_TRANSFER,
                                     _first_line(exc), self._who(request))
            return await _answer_and_close(request, _json(400, {
                "ok": False, "error": f"the body could not be decoded: {_first_line(exc)}", "code": Failure.BAD_TRANSFER.value}))
        except (ConnectionError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and request.transport is not None:
                raise  # not aiohttp's "Connection closed.": a bug
            # The sender went away, or was closed to make room: there is nobody to answer.
            return _json(400, {"ok": False, "error": "connection lost"}, close=True)

    async def _accept(self, request: web.Request, body: bytes, received: datetime) -> web.StreamResponse:
        try:
            if not body.strip():
                raise ParseError("empty body", Failure.INVALID_JSON)
            source = SIM_SOURCE + "callback" if SIMULATED in request.headers else "callback"
            event = zeckta.parse_callback(body, received_at=received, source=source, region=self.config.region)
        except ParseError as exc:
            return await self._reject(request, body, exc, received)
        try:
            applied = await self.committer.submit(event, content_type=request.headers.get("Content-Type", ""))
        except StoreError as exc:
            return self._unavailable(exc, event.message_id)
        kind = "duplicate" if applied.duplicate else "new"
        self.counts[kind] += 1
        self.last_callback_at = event.received_at
        self.callback_log.record(200, kind, "%-9s %s %s from %s", kind, event.message_id, event.raw_status, self._who(request))
        if not applied.duplicate and self.on_event:
            self.on_event(applied.event_id or 0)
        return _json(200, {"ok": True, "eventId": event.event_key, "duplicate": applied.duplicate})

    def _unavailable(self, exc: StoreError, what: str) -> web.Response:
        self.counts["unavailable"] += 1
        self.callback_log.record(503, "unavailable", "%s: %s (%s not stored; Zeckta will retry)", Failure.STORE_UNAVAILABLE,
                                 exc, what)
        return _retry_later("store unavailable, retry later", Failure.STORE_UNAVAILABLE)

    def _internal_error(self, request: web.Request, exc: Exception) -> web.Response:
        self.counts["internal_error"] += 1
        route = request.match_info.route.resource
        log.error("%s: %s while answering %s %s; answered 503, so the sender retries (please report it)",
                  Failure.INTERNAL_ERROR, type(exc).__name__, request.method, route.canonical if route else "?",
                  exc_info=exc)
        return _retry_later("internal error, retry later", Failure.INTERNAL_ERROR)

    def _too_large(self, request: web.Request) -> web.Response:
        self.counts["rejected"] += 1
        self.callback_log.record(413, "too large", "%s: over %d KiB from %s (not read)", Failure.BODY_TOO_LARGE, MAX_BODY // 1024,
                                 self._who(request))
        return _json(413, {"ok": False, "error": f"body over {MAX_BODY // 1024} KiB", "code": Failure.BODY_TOO_LARGE.value})

    async def _reject(self, request: web.Request, body: bytes, error: ParseError, received: datetime) -> web.Response:
        """400 for a body the parser cannot accept, once it is kept as a dead letter (503 when it
        cannot be kept: the provider retries, so no rejected callback goes unrecorded)."""
        code, reason = error.kind.value, error.reason
        path = CALLBACK_PATH + ("/****" if self.config.token else "")  # never the token, never a query string
        try:
            await self.committer.dead_letter(DeadLetter(fmt(received), self._who(request).address, path, f"{code}: {reason}",
                                                        body, kept_headers(request, self.redact)))
        except StoreError as exc:
            return self._unavailable(exc, "a rejected callback's dead letter")
        self.counts["rejected"] += 1
        self.callback_log.record(400, "rejected", "%s: %s from %s", code, reason, self._who(request))
        return _json(400, {"ok": False, "error": reason, "code": code})

    async def _health(self, request: web.Request) -> web.Response:
        try:
            return await _early(request, self._health_answer(request))
        except Exception as exc:  # a bug of ours: never a 500
            return self._internal_error(request, exc)

    def _health_answer(self, request: web.Request) -> web.Response:
        """Anyone who can reach it learns ok or degraded; the details (database path, store error,
        counts) only with the token, or on a loopback address when no token is set."""
        if refused := self._forbidden(request):
            return refused
        given = request.match_info.get("token")
        if given is not None and not self._token_ok(given):
            return _json(404, {"ok": False, "error": "not found"})
        if request.method != "GET":
            return _json(405, {"ok": False, "error": "use GET"}, Allow="GET")
        c = self.committer
        status = "ok" if c.healthy else "degraded"
        if given is None and (self.config.token is not None or not Address(self.config.host, self.config.port).loopback):
            return _json(200, {"status": status})
        return _json(200, {
            "status": status,
            "database": str(c.db_path),
            "events": c.last_event_id,
            "last_callback": self.last_callback_at,
            "callback_url": self.callback_url,
            "store": "ok" if c.healthy else f"unavailable: {c.last_error}",
            "this_run": dict(self.counts, commits=c.batches,
                             mean_batch=round(c.batched_items / c.batches, 1) if c.batches else None,
                             mean_commit_ms=round(c.commit_seconds * 1000 / c.batches, 2) if c.batches else None),
            "connections": self._connection_figures(),
            **(self.health_extra() if self.health_extra else {}),
        })

    def _connection_figures(self) -> dict[str, int] | None:
        k = self.connections
        return None if k is None else {"open": k.open, "most_at_once": k.peak, "cap": k.cap, "closed_idle": k.closed_idle,
                                       "closed_to_make_room": k.closed_for_room, "refused": k.refused}

    def _made_room(self, kind: str) -> None:
        assert self.connections is not None
        log.warning("%s: %s connections open, the most allowed: closed the one %s the longest to make room",
                    Failure.TOO_MANY_CONNECTIONS, f"{self.connections.cap:,}",
                    {"silent": "silent", "half-sent": "sending its headers", "reading": "sending its body"}.get(kind, kind))

    # ── running ───────────────────────────────────────────────────────────────
    async def start(self) -> str:
        """Bind and serve; return the base URL (with the real port when 0 was asked for)."""
        ctx = self.config.ssl_context()
        open_files = raise_open_file_limit()
        cap = connection_cap(open_files, self.max_connections)
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=10.0)
        await self._runner.setup()
        self.connections = Connections(self._runner.server, cap, idle_timeout=self.idle_timeout, linger=LINGER_S,
                                       on_cut=self._made_room)
        try:
            self._server = await asyncio.get_running_loop().create_server(
                self.connections, self.config.host, self.config.port, ssl=ctx, backlog=BACKLOG,
                ssl_handshake_timeout=self.idle_timeout if ctx else None)
        except OSError as exc:
            await self._runner.cleanup()
            raise ListenerError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}"
                                " (is another smsmon running? choose another with --listen)") from None
        defer_accept(self._server, self.idle_timeout)
        port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self.config.port
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self.url = f"{self.config.scheme}://{host}:{port}"
        if cap < self.max_connections:
            log.info("the open-file limit (%s) allows %s connections at once; raise it (`ulimit -n`) for more",
                     f"{open_files:,}", f"{cap:,}")
        self._flusher = asyncio.create_task(self._tick())
        return self.url

    @property
    def callback_url(self) -> str:
        """The URL to give Zeckta (at --public-url when set), with the token masked (it is never printed whole)."""
        return f"{self.config.public_url or self.url}{CALLBACK_PATH}" + (f"/{self.config.token.masked()}" if self.config.token else "")

    async def _tick(self) -> None:
        """Every second: close connections idle too long, sum up the busy log, write held-back warnings."""
        while True:
            await asyncio.sleep(1)
            if self.connections:
                self.connections.sweep()
            self.callback_log.roll()
            logs.flush()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (their commits complete), close."""
        if self._flusher:
            self._flusher.cancel()
        if self._server:
            self._server.close()  # no new connections
        if self._runner:
            await self._runner.cleanup()  # answers what is in flight, closes the rest
            self._runner = None
        if self._server:
            await self._server.wait_closed()
            self._server = None
        self.callback_log.flush()
        logs.flush()


async def _early(request: web.Request, response: web.Response) -> web.Response:
    """An answer given before the body is read. If a body is still to be read, the connection is
    closed after the answer rather than read to the body's end (aiohttp would linger reading it:
    a slow sender's, or a body whose encoding is broken and would fail there)."""
    return await _answer_and_close(request, response) if request.can_read_body else response


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send the answer now and close the connection, reading no more of the body (a slow sender's,
    or one whose encoding is broken: aiohttp would otherwise linger reading it)."""
    response.force_close()  # says `Connection: close`
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        pass  # the sender has gone: nobody to answer
    request.protocol.force_close()  # the answer already written is sent before the socket closes
    return response


def _first_line(exc: BaseException) -> str:
    """An aiohttp error's message without its echo of the request bytes, which follows on later lines."""
    text = str(exc).replace("400, message:", "").strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
