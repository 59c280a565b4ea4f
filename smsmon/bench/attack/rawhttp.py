"""A bare HTTP/1.1 client for the attack bench: it sends exactly the bytes it is given (a broken
request line, a lying Content-Length, a body in any encoding, a pause after the headers) and
reads what comes back, `100 Continue` included. Real HTTP clients refuse to send most of this."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Answer:
    status: int  # 0: no answer (closed, reset or timed out)
    interim: list[int] = field(default_factory=list)  # 1xx answers before it
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    seconds: float = 0.0
    error: str = ""  # why there was no answer

    version: str = "HTTP/1.1"

    @property
    def closes(self) -> bool:
        keep = self.headers.get("connection", "").lower()
        return keep == "close" or self.status == 0 or (self.version == "HTTP/1.0" and keep != "keep-alive")


def request(method: str, path: str, body: bytes = b"", *, headers: dict[str, str] | None = None,
            chunked: bool = False) -> bytes:
    """The bytes of one request: Content-Length, or chunked framing (in chunks of up to 4,000 bytes)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: smsmon"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4000]), body[i:i + 4000]) for i in range(0, len(body), 4000))
        payload = framed + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


async def read_answer(reader: asyncio.StreamReader, *, stop_at_interim: bool = False) -> Answer:
    """One answer (after any 1xx); with `stop_at_interim`, return as soon as a 1xx arrives."""
    answer = Answer(0)
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status_text = lines[0].split(" ", 2)[:2]
        status = int(status_text)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if 100 <= status < 200:
            answer.interim.append(status)
            if stop_at_interim:
                return answer
            continue
        answer.status, answer.headers, answer.version = status, headers, version
        if "content-length" in headers:
            answer.body = await reader.readexactly(int(headers["content-length"]))
        else:
            answer.body = await reader.read()
        return answer


class Connection:
    """One client connection, reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def send(self, data: bytes, *, timeout: float = 10.0) -> Answer:
        """Send a request, read its answer. A kept-alive connection that turns out closed before
        any answer is reopened once and the request sent again, as HTTP clients do."""
        started = time.perf_counter()
        for attempt in (1, 2):
            reused = self.writer is not None
            try:
                async with asyncio.timeout(timeout):
                    if self.writer is None:
                        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
                        self.opened += 1
                    assert self.reader is not None
                    self.writer.write(data)
                    await self.writer.drain()
                    answer = await read_answer(self.reader)
                break
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError,
                    IndexError) as exc:
                answer = Answer(0, error=f"{type(exc).__name__}: {exc}"[:200])
                self.close()
                if not (reused and isinstance(exc, (ConnectionError, asyncio.IncompleteReadError))):
                    break
        answer.seconds = time.perf_counter() - started
        if answer.closes:
            self.close()
        return answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def exchange(host: str, port: int, data: bytes, *, timeout: float = 10.0) -> Answer:
    """One request on a connection of its own."""
    conn = Connection(host, port)
    try:
        return await conn.send(data, timeout=timeout)
    finally:
        conn.close()
