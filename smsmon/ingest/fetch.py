"""One GET to a provider, bounded in every way a provider can misbehave, every failure classified.

- Time: the client's timeout bounds the whole request (connecting, the headers and every byte
  of the body), not each read, so a server that drips a byte a second ends at the timeout.
- Size: the body is inflated here, not by httpx (only gzip and deflate are asked for), and never
  past `max_bytes` once inflated, so neither a huge answer nor a gzip bomb can take more memory.
- Redirects are not followed: one is a failure that names the host it pointed to.
- Retry-After is read as seconds or an HTTP date, and capped at MAX_BACKOFF_S.
- Every exception httpx or zlib raises becomes a PollFailure with a catalogue code.

Messages never carry the query string (the Eazita credentials travel in it); the poller masks
every credential in them again before they are shown or stored.
"""

from __future__ import annotations

import asyncio
import math
import zlib
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from smsmon.errors import Failure, PollFailure
from smsmon.redact import Redactor
from smsmon.timeutil import now_utc

MAX_BACKOFF_S = 300.0  # the longest a poller waits between tries (SPEC §5), a Retry-After included
ACCEPT_ENCODING = "gzip, deflate"
DEFAULT_DEADLINE_S = 60.0  # for a client built without a timeout


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped at
    MAX_BACKOFF_S; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now_utc()).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_BACKOFF_S)


def _size(n: int) -> str:
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n / 2**10:g} KB"


class Inflater:
    """Undoes a Content-Encoding chunk by chunk into a bytearray, a step at a time, failing as
    soon as the inflated size passes `limit`: a gzip bomb costs `limit` bytes, not what it inflates to."""

    STEP = 1 << 20  # bytes inflated at a time

    def __init__(self, encoding: str, limit: int, what: str) -> None:
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip().lower() not in ("", "identity")]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise PollFailure(Failure.POLL_UNDECODABLE, f"{what}: the answer is encoded as {encoding.strip()[:40]!r},"
                                                        f" which smsmon does not ask for ({ACCEPT_ENCODING})")
        self.kind = codings[0] if codings else None
        self.limit, self.what = limit, what
        self.fed = False
        self._z = self._new()

    def _new(self, raw_deflate: bool = False) -> Any:  # a zlib decompressor, or None for no encoding
        if self.kind is None:
            return None
        wbits = 16 + zlib.MAX_WBITS if self.kind != "deflate" else -zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS
        return zlib.decompressobj(wbits)

    def _too_large(self) -> PollFailure:
        return PollFailure(Failure.POLL_TOO_LARGE, f"{self.what}: the answer is larger than {_size(self.limit)}"
                           + (" once inflated" if self.kind else "") + "; smsmon reads no more than that")

    def _undecodable(self, why: str) -> PollFailure:
        return PollFailure(Failure.POLL_UNDECODABLE, f"{self.what}: the answer says it is {self.kind} but {why}")

    def _add(self, body: bytearray, data: bytes) -> None:
        if len(body) + len(data) > self.limit:
            raise self._too_large()
        body += data

    def feed(self, data: bytes, body: bytearray) -> None:
        """Append what `data` inflates to, to `body`."""
        if self._z is None:
            self._add(body, data)
            return
        while data:
            step = min(self.STEP, self.limit - len(body) + 1)  # one byte more than allowed tells "too large"
            try:
                out = self._z.decompress(data, step)
            except zlib.error as exc:
                if self.kind == "deflate" and not self.fed:
                    self._z = self._new(raw_deflate=True)  # "deflate" sent without its zlib header, as some servers do
                    self.fed = True
                    continue
                raise self._undecodable(f"cannot be inflated ({exc})") from None
            self.fed = True
            self._add(body, out)
            data = self._z.unconsumed_tail
            if self._z.eof and (rest := self._z.unused_data):  # another gzip member follows
                self._z, data = self._new(), rest + data

    def finish(self, body: bytearray) -> None:
        if self._z is None or not self.fed:
            return
        self._add(body, self._z.flush())
        if not self._z.eof:
            raise self._undecodable("it ends before its compressed data does")


def deadline(client: httpx.AsyncClient) -> float:
    """The client's timeout, which bounds the whole request."""
    t = client.timeout
    return t.read or t.connect or DEFAULT_DEADLINE_S


def _status_failure(r: httpx.Response, what: str) -> PollFailure | None:
    status = r.status_code
    if 300 <= status < 400:
        location = r.headers.get("location", "")
        host = (urlsplit(location).hostname or "") if location else ""
        where = f" to {host[:100]}" if host else " within the same site" if location else " without a Location"
        return PollFailure(Failure.POLL_REDIRECT, f"{what}: HTTP {status}, a redirect{where}, not followed"
                                                  " (check the provider's URL setting)", http_status=status)
    if status in (401, 403):
        return PollFailure(Failure.POLL_AUTH, f"{what}: HTTP {status}, credentials refused", http_status=status)
    if status == 404:
        return PollFailure(Failure.POLL_NOT_FOUND, f"{what}: HTTP 404", http_status=status)
    if status == 429:
        wait = retry_after(r.headers.get("retry-after"))
        asked = r.headers.get("retry-after", "")
        told = "" if wait is None else f", retry after {wait:g} s" + (
            f" (it asked for {asked[:30]})" if wait == MAX_BACKOFF_S and asked.strip() != f"{MAX_BACKOFF_S:g}" else "")
        return PollFailure(Failure.POLL_RATE_LIMITED, f"{what}: HTTP 429, rate limited{told}", http_status=status,
                           retry_after=wait)
    if status >= 500:
        return PollFailure(Failure.POLL_SERVER_ERROR, f"{what}: HTTP {status}", http_status=status,
                           retry_after=retry_after(r.headers.get("retry-after")))
    if status >= 400:
        return PollFailure(Failure.POLL_HTTP_ERROR, f"{what}: HTTP {status}", http_status=status)
    return None


async def _get(client: httpx.AsyncClient, path: str, params: dict[str, str] | None, headers: dict[str, str],
               what: str, max_bytes: int) -> tuple[int, bytearray]:
    async with client.stream("GET", path, params=params, headers=headers) as r:
        if failure := _status_failure(r, what):
            raise failure
        inflater = Inflater(r.headers.get("content-encoding", ""), max_bytes, what)
        body = bytearray()
        async for chunk in r.aiter_raw():
            inflater.feed(chunk, body)
        inflater.finish(body)
        ctype = r.headers.get("content-type", "")
    if "html" in ctype.lower() or bytes(body[:200]).lstrip().startswith(b"<"):
        raise PollFailure(Failure.POLL_HTML_BODY, f"{what}: the answer is an HTML page, not JSON", http_status=r.status_code)
    return r.status_code, body


async def fetch(client: httpx.AsyncClient, path: str, *, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, redact: Redactor, what: str,
                max_bytes: int) -> tuple[int, bytearray]:
    """GET `path`; return (HTTP status, the body, inflated). Raises PollFailure, classified."""
    limit = deadline(client)
    try:
        async with asyncio.timeout(limit):
            return await _get(client, path, params, {"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}, what, max_bytes)
    except (TimeoutError, httpx.TimeoutException):
        raise PollFailure(Failure.POLL_TIMEOUT, f"{what}: no whole answer within {limit:g} s") from None
    except httpx.LocalProtocolError:
        # The request itself could not be written: its text would quote a header, the key in it.
        raise PollFailure(Failure.POLL_INTERNAL, f"{what}: the request could not be sent (an invalid header or URL)") from None
    except httpx.ConnectError as exc:
        raise PollFailure(Failure.POLL_CONNECT_ERROR, f"{what}: cannot connect ({redact(exc) or type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise PollFailure(Failure.POLL_CONNECT_ERROR,
                          f"{what}: the connection failed ({redact(exc) or type(exc).__name__})") from None
    except httpx.DecodingError as exc:
        raise PollFailure(Failure.POLL_UNDECODABLE, f"{what}: the answer cannot be decoded ({redact(exc)})") from None
