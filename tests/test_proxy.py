"""Behind a reverse proxy or a tunnel (issue 13): --trust-proxy makes X-Forwarded-For and
X-Forwarded-Proto count for --allow-from, the log and the dead letters, from the trusted peers
only; --public-url is the URL shown; a wrong path is named as such; a dead letter keeps the
request's headers with secrets masked. Real listener, real loopback connections from several
local addresses (127.0.0.1 plays the proxy, 127.0.0.2 a stranger), real SQLite."""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

import aiohttp
import pytest

from smsmon.ingest.proxy import HEADERS_MAX
from tests.helpers import callback, rows
from tests.test_listener import TOKEN, serving

PROXY, STRANGER = "127.0.0.1", "127.0.0.2"


def nets(*cidrs: str) -> list[Any]:
    return [ipaddress.ip_network(c) for c in cidrs]


async def call(url: str, *, source: str = PROXY, headers: dict[str, str] | None = None, body: bytes | None = None,
               path: str = "/callbacks/zeckta", method: str = "POST") -> int:
    """One request from `source` (a local address), with these headers."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as s:
        data = body if body is not None else json.dumps(callback()).encode()
        async with s.request(method, url + path, data=data, headers=headers or {}) as r:
            await r.read()
            return r.status


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="smsmon")
    return caplog


async def test_a_trusted_proxy_speaks_for_the_caller(db_path, log) -> None:
    async with serving(db_path, trust_proxy=nets("127.0.0.1/32"), allow_from=nets("203.0.113.0/24")) as (_, url):
        forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        assert await call(url, headers=forwarded) == 200
        assert "from 203.0.113.9 (https, via 127.0.0.1)" in log.text
        assert await call(url, headers={"X-Forwarded-For": "198.51.100.7"}) == 403
        assert "198.51.100.7 (via 127.0.0.1) is outside --allow-from" in log.text
        assert await call(url) == 403  # the proxy itself is not in --allow-from
        assert await call(url, headers={**forwarded}, body=b"not json") == 400
    assert rows(db_path, "SELECT remote FROM dead_letters") == [("203.0.113.9",)]


async def test_a_stranger_cannot_claim_an_address(db_path, log) -> None:
    async with serving(db_path, trust_proxy=nets("127.0.0.1/32"), allow_from=nets("203.0.113.0/24")) as (_, url):
        assert await call(url, source=STRANGER, headers={"X-Forwarded-For": "203.0.113.9"}) == 403
        assert f"{STRANGER} is outside --allow-from" in log.text
    async with serving(db_path, trust_proxy=nets("127.0.0.1/32")) as (_, url):
        assert await call(url, source=STRANGER, headers={"X-Forwarded-For": "203.0.113.9",
                                                           "X-Forwarded-Proto": "https"}) == 200
        assert f"from {STRANGER}\n" in log.text + "\n" and "203.0.113.9" not in log.text


async def test_without_trust_the_headers_mean_nothing(db_path, log) -> None:
    async with serving(db_path, allow_from=nets("203.0.113.0/24")) as (_, url):
        assert await call(url, headers={"X-Forwarded-For": "203.0.113.9"}) == 403
    assert "127.0.0.1 is outside --allow-from" in log.text


@pytest.mark.parametrize("chain, client", [
    # each proxy appends whom it heard from: the right-most untrusted address is the caller,
    # and whatever it wrote to the left of itself is a claim nobody checked
    (["198.51.100.7, 203.0.113.9, 10.1.2.3"], "203.0.113.9"),
    (["198.51.100.7", "203.0.113.9", "10.1.2.3"], "203.0.113.9"),  # the same in several headers
    (["203.0.113.9:51234, 10.1.2.3"], "203.0.113.9"),  # with a port
    (["[2001:db8::7]:443, 10.1.2.3"], "2001:db8::7"),
    (["10.9.9.9, 10.1.2.3"], "10.9.9.9"),  # every hop trusted: the left-most
    (["unknown, 10.1.2.3"], "10.1.2.3"),  # garbage: the last address known stands
    ([", , 203.0.113.9"], "203.0.113.9"),
    (["1.1.1.1, " * 40 + "203.0.113.9"], "203.0.113.9"),
])
async def test_a_chain_of_proxies(db_path, log, chain: list[str], client: str) -> None:
    async with serving(db_path, trust_proxy=nets("127.0.0.1/32", "10.0.0.0/8")) as (_, url):
        connector = aiohttp.TCPConnector(local_addr=(PROXY, 0))
        async with aiohttp.ClientSession(connector=connector) as s:
            headers = [("X-Forwarded-For", value) for value in chain]
            async with s.post(url + "/callbacks/zeckta", data=json.dumps(callback()).encode(), headers=headers) as r:
                assert r.status == 200
    assert f"from {client} (via 127.0.0.1)" in log.text


async def test_the_public_url_is_the_callback_url_shown(db_path) -> None:
    async with serving(db_path, token=TOKEN, public_url="https://sms.example.com/smsmon") as (listener, url):
        assert listener.callback_url == "https://sms.example.com/smsmon/callbacks/zeckta/<23 characters>"
        async with aiohttp.ClientSession() as s, s.get(f"{url}/healthz/{TOKEN}") as r:
            health = await r.json()
    assert health["callback_url"] == listener.callback_url and TOKEN not in json.dumps(health)


async def test_a_wrong_path_is_named_not_found_and_a_wrong_token_bad_token(db_path, log) -> None:
    async with serving(db_path) as (_, url):
        assert await call(url, path="/callbacks/zeckta/extra") == 404
        assert await call(url, path="/callback", method="GET") == 404
    assert "not_found: POST /callbacks/zeckta/extra" in log.text and "not_found: GET /callback" in log.text
    assert "bad_token" not in log.text
    log.clear()
    async with serving(db_path, token=TOKEN) as (_, url):
        assert await call(url, path="/callbacks/zeckta/wrong-token") == 404
        assert await call(url, path="/callbacks/zeckta") == 404
    assert log.text.count("bad_token: a request without the right token") == 2 and "not_found" not in log.text


async def test_a_dead_letter_keeps_the_headers_with_secrets_masked(db_path) -> None:
    headers = {"Authorization": "Bearer zeckta-key-abcdef", "Cookie": "session=s3", "X-Api-Key": "k-123456",
               "X-Original-URI": f"/callbacks/zeckta/{TOKEN}", "User-Agent": "Zeckta-Webhooks/1.0",
               "Content-Type": "application/json"}
    async with serving(db_path, token=TOKEN) as (_, url):
        assert await call(url, path=f"/callbacks/zeckta/{TOKEN}", headers=headers, body=b"{broken") == 400
        many = {f"X-Filler-{i}": "x" * 900 for i in range(40)}
        assert await call(url, path=f"/callbacks/zeckta/{TOKEN}", headers=many, body=b"{broken") == 400
    (first, second) = [json.loads(h) for (h,) in rows(db_path, "SELECT headers FROM dead_letters ORDER BY id")]
    assert first["Authorization"] == first["Cookie"] == first["X-Api-Key"] == "****"
    assert first["X-Original-URI"] == "/callbacks/zeckta/****"
    assert first["User-Agent"] == "Zeckta-Webhooks/1.0" and first["Content-Type"] == "application/json"
    assert len(json.dumps(second).encode()) <= HEADERS_MAX + 100 and second["…"] == "more headers not kept"
    stored = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert TOKEN.encode() not in stored and b"zeckta-key-abcdef" not in stored
