"""The listener's connections, bounded (SPEC §5; issue 9): a stranger must not be able to
starve real callbacks by opening connections and sending nothing, or sending slowly.

A connection is, at any moment, in one of these states:

    pending    accepted, not yet connected (a TLS handshake, at most IDLE_TIMEOUT_S)
    silent     nothing received since it connected or since its last answer
    half-sent  part of a request's headers
    requested  its request's headers are in: about to be handled (a moment)
    reading    a callback whose body is still arriving (the listener cuts it at its deadline)
    working    a callback whose body is in, waiting for the database

On Linux a connection is handed over only once it has sent something (TCP_DEFER_ACCEPT), so
one that never speaks costs nothing here. A connection silent or half-sent for IDLE_TIMEOUT_S is
closed (`sweep`, every second): that is both the header and the keep-alive timeout. At most
`cap` connections are held, below the open-file limit, so `accept` never fails for want of a
descriptor. A new connection beyond the cap closes the one half-sent the longest, else reading
a body the longest, else silent the longest; one with a whole request is never closed for room.
Only when every connection is requested or working does the new one get `503` with Retry-After.
A real callback sends its request as it connects and is answered in milliseconds, so it is never
the oldest of anything: under a flood of idle, half-sent or slow connections it gets through
(`smsmon bench attack --area listener`).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from typing import Any, Callable

from aiohttp import web

try:
    import resource
except ImportError:  # Windows: no open-file limit of this kind to raise
    resource = None  # type: ignore[assignment]

MAX_CONNECTIONS = 512  # held at once: 512 connections each holding 64 KB of a body add 93-124 MB to serve (bench attack)
# asyncio accepts up to this many connections at each wake-up, and the kernel queues as many for
# it. A queue of 1,024 made real callbacks wait behind a flood of attacking connections (p50 451
# ms against 7-48 ms with this one, same p99; bench attack).
BACKLOG = 64
# Descriptors kept beyond the cap: a burst of BACKLOG accepted but not yet handed to us, BACKLOG
# being handed over, and BACKLOG closed to make room but not yet released (they are, one loop turn
# later), and 64 for the database, the pollers and the terminal. With 192 here, 1,100 idle and
# 2,001 slow connections at a limit of 1,024 still hit "Too many open files" (bench attack).
FD_RESERVE = 3 * BACKLOG + 64
_BUSY = b'{"ok":false,"error":"too many connections, retry later"}'
OVER_CAPACITY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_BUSY)) + _BUSY


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to the hard one; return the soft limit now."""
    if resource is None:
        return MAX_CONNECTIONS + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # not allowed here (a container's policy): the cap below follows the limit we have
    return soft


def defer_accept(server: asyncio.AbstractServer, seconds: float) -> bool:
    """Where the system can (Linux), hand over a new connection only once it has sent something:
    a connection that never speaks then costs no descriptor and no handler (as nginx's `deferred`)."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is None:
        return False
    try:
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds)))
    except OSError:
        return False  # refused here: silent connections are then closed by the sweep and the cap
    return True


def connection_cap(open_files: int, most: int = MAX_CONNECTIONS) -> int:
    """How many connections to hold with this many descriptors: FD_RESERVE kept for the rest of
    the process, at least half of a small limit, never more than `most`."""
    return max(1, min(most, max(open_files - FD_RESERVE, open_files // 2)))


class _Refusal(asyncio.Protocol):
    """A connection over the cap when nothing can be closed for it: 503, then closed unread."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(OVER_CAPACITY)  # type: ignore[attr-defined]
        transport.close()


class Connections:
    """The protocol factory of the listener's server: makes aiohttp's request handlers, follows
    each connection through its states and keeps the cap. `sweep()` (every second) closes the
    connections silent or half-sent for longer than the idle timeout; the listener tells it when a
    callback starts reading its body (`start_reading`) and when the body is in (`start_working`)."""

    def __init__(self, server: web.Server, cap: int, *, idle_timeout: float, linger: float,
                 on_cut: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self.cap = cap
        self.idle_timeout = idle_timeout
        self.linger = linger
        self.on_cut = on_cut  # told the state of each connection closed to make room
        self.clock = clock
        # Each dict in age order (the first entry has been in its state the longest).
        self.pending: deque[float] = deque()  # made, not yet connected (a TLS handshake): creation times
        self.silent: dict[_Handler, float] = {}  # nothing received since connecting or since the last answer
        self.partial: dict[_Handler, float] = {}  # some of a request's headers
        self.requested: set[_Handler] = set()  # the headers are in: about to be handled
        self.reading: dict[_Handler, float] = {}  # a callback whose body is still arriving
        self.working: set[_Handler] = set()  # a callback whose body is in, waiting for the database: never closed
        self.closed_for_room = 0
        self.closed_idle = 0
        self.refused = 0
        self.peak = 0

    @property
    def open(self) -> int:
        return (len(self.pending) + len(self.silent) + len(self.partial) + len(self.requested) + len(self.reading)
                + len(self.working))

    def __call__(self) -> asyncio.BaseProtocol:
        now = self.clock()
        while self.pending and now - self.pending[0] > self.idle_timeout + 1:
            self.pending.popleft()  # a handshake that failed: the connection never came
        if self.open >= self.cap and not self._make_room():
            self.refused += 1
            return _Refusal()
        self.pending.append(now)
        self.peak = max(self.peak, self.open)
        # aiohttp's own keep-alive timer only backs up the sweep (which also covers half-sent headers,
        # and new connections under aiohttp 3.9, whose timer starts only after a first answer).
        return _Handler(self, loop=asyncio.get_running_loop(), keepalive_timeout=2 * self.idle_timeout, access_log=None,
                        lingering_time=self.linger)

    def _make_room(self) -> bool:
        """Close the connection half-sent the longest, else reading a body the longest, else silent
        the longest (a new connection is silent only until its request, already sent, is read)."""
        for state, held in (("half-sent", self.partial), ("reading", self.reading), ("silent", self.silent)):
            if held:
                oldest = next(iter(held))
                del held[oldest]
                oldest.force_close()
                self.closed_for_room += 1
                if self.on_cut:
                    self.on_cut(state)
                return True
        return False

    def sweep(self) -> int:
        """Close the connections silent or half-sent for longer than the idle timeout; how many."""
        limit = self.clock() - self.idle_timeout
        closed = 0
        for held in (self.silent, self.partial):
            while held:
                oldest, since = next(iter(held.items()))
                if since > limit:
                    break
                del held[oldest]
                oldest.force_close()
                closed += 1
        self.closed_idle += closed
        return closed

    # ── told by the handlers (the connection) and by the listener (a callback) ───
    def opened(self, handler: _Handler) -> None:
        if self.pending:
            self.pending.popleft()
        self.silent[handler] = self.clock()

    def received(self, handler: _Handler, data: bytes) -> None:
        """Bytes from a connection: past the end of its headers, its request is about to be handled."""
        since = self.silent.pop(handler, None)
        if since is not None:
            handler.tail = b""
        elif handler in self.partial:
            since = self.partial.pop(handler)
        else:
            return  # past its headers
        seen = handler.tail + data
        if b"\r\n\r\n" in seen or b"\n\n" in seen:
            self.requested.add(handler)
        else:
            handler.tail = seen[-3:]
            self.partial[handler] = since  # the idle timeout still counts from the connection's last answer or its start

    def start_reading(self, handler: web.RequestHandler) -> None:
        # Silent too: a request pipelined behind another arrived before that one's answer. Not if
        # the connection was closed meanwhile (then it is in none of these).
        if (handler in self.requested or self.silent.pop(handler, None) is not None  # type: ignore[call-overload]
                or self.partial.pop(handler, None) is not None):  # type: ignore[call-overload]
            self.requested.discard(handler)  # type: ignore[arg-type]
            self.reading[handler] = self.clock()  # type: ignore[index]

    def start_working(self, handler: web.RequestHandler) -> None:
        if self.reading.pop(handler, None) is not None:  # type: ignore[call-overload]
            self.working.add(handler)  # type: ignore[arg-type]

    def answered(self, handler: _Handler) -> None:
        if self._forget(handler) and handler.transport is not None:
            self.silent[handler] = self.clock()

    def lost(self, handler: _Handler) -> None:
        self._forget(handler)

    def _forget(self, handler: _Handler) -> bool:
        found = (self.silent.pop(handler, None) is not None) | (self.partial.pop(handler, None) is not None) \
            | (self.reading.pop(handler, None) is not None) | (handler in self.requested) | (handler in self.working)
        self.requested.discard(handler)
        self.working.discard(handler)
        return found


class _Handler(web.RequestHandler):
    """aiohttp's request handler, telling the connections what its connection does."""

    def __init__(self, connections: Connections, **kwargs: Any) -> None:
        super().__init__(connections.server, **kwargs)
        self.connections = connections
        self.tail = b""  # the last bytes of unfinished headers (their end may straddle two packets)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.connections.opened(self)

    def data_received(self, data: bytes) -> None:
        self.connections.received(self, data)
        super().data_received(data)

    def log_access(self, request: Any, response: Any, time: Any) -> None:  # aiohttp calls it after every answer
        self.connections.answered(self)
        super().log_access(request, response, time)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.connections.lost(self)
        super().connection_lost(exc)
