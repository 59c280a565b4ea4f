"""Who is calling, behind a reverse proxy or a tunnel, and what of a request a dead letter keeps
(issue 13).

Behind Caddy, nginx or a tunnel, every connection comes from the proxy. With `--trust-proxy
CIDR` the listener believes the `X-Forwarded-For` and `X-Forwarded-Proto` headers of requests
whose peer is in those ranges, and of no one else (anyone can send the headers). The client is
the right-most address of `X-Forwarded-For` that is not itself a trusted proxy: each proxy
appends the address it was called from, so everything left of the first untrusted address is
whatever that caller claimed. That client address is what `--allow-from`, the log and the dead
letters see.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, NamedTuple, Sequence

from aiohttp import web

from smsmon.errors import ListenerError
from smsmon.redact import MASK, Redactor
from smsmon.store.origin import SIMULATED_HEADER

FORWARDED_FOR = "X-Forwarded-For"
FORWARDED_PROTO = "X-Forwarded-Proto"
SIMULATED = SIMULATED_HEADER  # `smsmon simulate` and the demo send it: their callbacks are stored as simulated
MAX_HOPS = 20  # addresses of X-Forwarded-For looked at, right to left; a longer chain is a forgery
HEADERS_MAX = 8 * 1024  # bytes of a request's headers a dead letter keeps
HEADER_VALUE_MAX = 1024
# Headers whose values are credentials whatever they hold: masked whole in dead letters.
SENSITIVE = re.compile(r"authorization|cookie|token|secret|password|signature|api[-_]?key", re.I)
_KEY: Any = web.RequestKey("smsmon.client", object) if hasattr(web, "RequestKey") else "smsmon.client"  # aiohttp 3.11+
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Sequence[str], option: str = "--allow-from") -> list[Network]:
    nets = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(c.strip(), strict=False))
        except ValueError:
            raise ListenerError(f"{option} {c!r} is not an address or CIDR range (e.g. 203.0.113.0/24)") from None
    return nets


class Client(NamedTuple):
    address: str | None  # the caller: the peer, or what a trusted proxy says the caller was
    scheme: str | None = None  # http or https, as a trusted proxy says the caller used
    via: str | None = None  # the trusted proxy's address, when one spoke for the caller

    def __str__(self) -> str:
        if self.via is None:
            return self.address or "?"
        return f"{self.address} ({f'{self.scheme}, ' if self.scheme else ''}via {self.via})"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it: `203.0.113.9`, `2001:db8::1`, `[2001:db8::1]:443`, `203.0.113.9:5000`."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ProxyTrust:
    def __init__(self, trusted: Sequence[Network] = ()) -> None:
        self.trusted = tuple(trusted)

    def _trusts(self, address: object) -> bool:
        return address is not None and any(address in net for net in self.trusted)  # type: ignore[operator]

    def client(self, request: web.Request) -> Client:
        """The caller of this request (worked out once per request)."""
        known = request.get(_KEY)
        if known is None:
            known = request[_KEY] = self._client(request)
        return known

    def _client(self, request: web.Request) -> Client:
        peer = request.remote
        if not self.trusted or not self._trusts(_ip(peer or "")):
            return Client(peer)
        hops = [h for value in request.headers.getall(FORWARDED_FOR, []) for h in value.split(",") if h.strip()]
        address, current = peer, _ip(peer or "")
        for hop in reversed(hops[-MAX_HOPS:]):
            if not self._trusts(current):
                break  # an untrusted address: the caller; what it claims about others is not believed
            parsed = _ip(hop)
            if parsed is None:
                break  # garbage from the left of the chain: the last address known stands
            address, current = str(parsed), parsed
        protos = [p.strip().lower() for value in request.headers.getall(FORWARDED_PROTO, []) for p in value.split(",")]
        scheme = protos[-1] if protos and protos[-1] in ("http", "https") else None
        return Client(address, scheme, peer)


def kept_headers(request: web.Request, redact: Redactor) -> str:
    """The request's headers as a JSON object for a dead letter: credentials masked (by the
    header's name, and every configured secret wherever it appears), values cut, the whole
    bounded to HEADERS_MAX bytes."""
    kept: dict[str, str] = {}
    size = 2
    for name, value in request.headers.items():
        value = MASK if SENSITIVE.search(name) else redact.cut(value, HEADER_VALUE_MAX)
        name = redact.cut(name, 100)
        item = len(name.encode()) + len(value.encode()) + 8
        if size + item > HEADERS_MAX:
            kept["…"] = "more headers not kept"
            break
        kept[name] = f"{kept[name]}, {value}" if name in kept else value
        size += item
    return json.dumps(kept, ensure_ascii=False)
