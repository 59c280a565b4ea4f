"""The callback listener over real loopback HTTP, into real SQLite files and PostgreSQL schemas (SPEC §5)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import zlib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest

from smsmon.bench.attack.rawhttp import Answer, exchange, read_answer, request
from smsmon.ingest.committer import Committer
from smsmon.config import Address, Secret
from smsmon.errors import ListenerError
from smsmon.ingest.listener import CallbackLog, Listener, ListenerConfig, parse_networks
from tests.helpers import callback, lock_out_writers, rows, stored_bytes, upgrade_under

TOKEN = "s3cret-token-0123456789"


@asynccontextmanager
async def serving(db: Path, *, busy_timeout: float = 5.0, max_in_flight: int = 2000, committer: Committer | None = None,
                  limits: dict[str, float] | None = None, **config: Any) -> AsyncIterator[tuple[Listener, str]]:
    """A real listener on a loopback port; `limits` are Listener's (body_timeout, idle_timeout, max_connections)."""
    committer = committer or Committer(db, busy_timeout=busy_timeout)
    committer.start()
    listener = Listener(committer, ListenerConfig(host="127.0.0.1", port=0, **config), max_in_flight=max_in_flight,
                        **(limits or {}))
    url = await listener.start()
    try:
        yield listener, url
    finally:
        await listener.stop()
        await asyncio.to_thread(committer.stop)


async def post(session: aiohttp.ClientSession, url: str, body: bytes | str | dict, **kw: Any) -> tuple[int, dict]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    async with session.post(url, data=data, **kw) as r:
        return r.status, await r.json(content_type=None)


# ── the contract ─────────────────────────────────────────────────────────────────
async def test_accepted_callbacks_are_committed_before_the_answer(db) -> None:
    async with serving(db) as (_, url), aiohttp.ClientSession() as s:
        body = callback("MESSAGE_SENT", uuid="u1", event_id="e1")
        status, answer = await post(s, url + "/callbacks/zeckta", body)
        assert (status, answer) == (200, {"ok": True, "eventId": "e1", "duplicate": False})
        # Another connection sees it the moment the answer arrives: it was committed first.
        assert rows(db, "SELECT event_key, status, source FROM events") == [("e1", "SENT", "callback")]
        status, answer = await post(s, url + "/callbacks/zeckta", body)
        assert (status, answer) == (200, {"ok": True, "eventId": "e1", "duplicate": True})
        assert rows(db, "SELECT events_count, duplicates_count FROM messages") == [(1, 1)]


async def test_out_of_order_and_unknown_statuses_are_accepted(db) -> None:
    async with serving(db) as (_, url), aiohttp.ClientSession() as s:
        for event_type, ts in (("MESSAGE_DELIVERED", "2026-11-23T10:00:09Z"), ("MESSAGE_SENT", "2026-11-23T10:00:02Z"),
                               ("MESSAGE_READ", "2026-11-23T10:01:00Z")):
            status, _ = await post(s, url + "/callbacks/zeckta", callback(event_type, uuid="m", at=ts))
            assert status == 200
    assert rows(db, "SELECT status, flags FROM messages") == [("DELIVERED", "late_event,unmapped")]


BAD_BODIES = [
    ("empty", b"", "empty body"),
    ("not json", b"hello there", "invalid JSON"),
    ("array", b"[1, 2, 3]", "Expected `object`, got `array`"),
    ("string", b'"MESSAGE_SENT"', "Expected `object`, got `str`"),
    ("deep nesting", b'{"extra": ' + b"[" * 30000 + b"]" * 30000 + b', "eventId": "a"}', "JSON nested too deeply"),
    ("wrong types", json.dumps(dict(callback(), eventType=["MESSAGE_SENT"])).encode(), "Expected `str`, got `array`"),
    ("missing uuid", json.dumps(dict(callback(), message={"dest": "+233"})).encode(), "missing required field `uuid`"),
    ("bad time", json.dumps(dict(callback(), timestamp="last tuesday")).encode(), "`timestamp`"),
    # Issue 9: each of these was a 500 with a traceback, no dead letter, and Zeckta retrying forever.
    ("invalid UTF-8 in a string", json.dumps(callback(event_id="e-XX")).encode().replace(b"XX", b"\xff\xfe"),
     "a string that is not UTF-8"),
    ("a time before year 1 in UTC", json.dumps(dict(callback(), timestamp="0001-01-01T00:00:00+01:00")).encode(), "`timestamp`"),
    ("a time after year 9999 in UTC", json.dumps(dict(callback(), timestamp="9999-12-31T23:59:59-01:00")).encode(), "`timestamp`"),
]


@pytest.mark.parametrize("name,body,reason", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_bodies_get_400_with_the_reason_and_a_dead_letter(db, name, body, reason) -> None:
    async with serving(db) as (_, url), aiohttp.ClientSession() as s:
        status, answer = await post(s, url + "/callbacks/zeckta", body)
        assert status == 400 and answer["ok"] is False and reason in answer["error"]
        status, _ = await post(s, url + "/callbacks/zeckta", callback())  # still serving
        assert status == 200
    letters = rows(db, "SELECT remote, path, reason, length(body) FROM dead_letters")
    assert len(letters) == 1
    remote, path, why, size = letters[0]
    assert remote == "127.0.0.1" and path == "/callbacks/zeckta" and reason in why and size == len(body.decode("utf-8", "replace"))
    assert rows(db, "SELECT count(*) FROM events") == [(1,)]


@pytest.mark.parametrize("chunked", [False, True])
async def test_bodies_over_64_kib_get_413_and_are_not_stored(db, chunked) -> None:
    big = json.dumps(callback(src="x" * (1 << 20))).encode()  # 1 MB

    async def body_stream():
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    async with serving(db) as (listener, url), aiohttp.ClientSession() as s:
        async with s.post(url + "/callbacks/zeckta", data=body_stream() if chunked else big) as r:
            assert r.status == 413
            assert "64 KiB" in (await r.json())["error"]
        status, _ = await post(s, url + "/callbacks/zeckta", callback())
        assert status == 200
    assert rows(db, "SELECT count(*) FROM events") == [(1,)]
    assert rows(db, "SELECT count(*) FROM dead_letters") == [(0,)]


async def test_methods_and_paths(db) -> None:
    async with serving(db) as (_, url), aiohttp.ClientSession() as s:
        for method in ("GET", "PUT", "DELETE"):
            async with s.request(method, url + "/callbacks/zeckta") as r:
                assert r.status == 405 and r.headers["Allow"] == "POST"
        async with s.post(url + "/callbacks/zeckta/anything", data=b"{}") as r:
            assert r.status == 404  # no token configured: only the bare path
        async with s.get(url + "/nowhere") as r:
            assert r.status == 404 and (await r.json())["ok"] is False
        async with s.post(url + "/healthz") as r:
            assert r.status == 405
    assert rows(db, "SELECT count(*) FROM events") == [(0,)]


async def test_health(db) -> None:
    async with serving(db) as (_, url), aiohttp.ClientSession() as s:
        await post(s, url + "/callbacks/zeckta", callback())
        async with s.get(url + "/healthz") as r:
            health = await r.json()
    assert r.status == 200
    assert health["status"] == "ok" and health["events"] == 1 and health["database"] == str(db)
    assert health["last_callback"].endswith("Z") and health["this_run"]["new"] == 1


# ── security ─────────────────────────────────────────────────────────────────────
async def test_with_a_token_only_the_token_path_accepts_and_the_token_never_leaks(db, caplog) -> None:
    caplog.set_level(logging.INFO, logger="smsmon")

    async with serving(db, token=TOKEN) as (listener, url), aiohttp.ClientSession() as s:
        for path in ("/callbacks/zeckta", "/callbacks/zeckta/wrong-token-0000", f"/callbacks/zeckta/{TOKEN}x",
                     f"/callbacks/zeckta/{TOKEN[:-1]}"):
            status, _ = await post(s, url + path, callback())
            assert status == 404, path
        async with s.get(url + f"/callbacks/zeckta/{TOKEN}") as r:
            assert r.status == 405
        status, _ = await post(s, url + f"/callbacks/zeckta/{TOKEN}", callback(event_id="ok"))
        assert status == 200
        status, _ = await post(s, url + f"/callbacks/zeckta/{TOKEN}?token={TOKEN}", b"junk")
        assert status == 400
        assert TOKEN not in listener.callback_url and Secret(TOKEN).masked() in listener.callback_url

    assert rows(db, "SELECT event_key FROM events") == [("ok",)]
    assert rows(db, "SELECT path FROM dead_letters") == [("/callbacks/zeckta/****",)]
    assert TOKEN.encode() not in stored_bytes(db)
    assert TOKEN not in caplog.text and "bad_token" in caplog.text


async def test_allow_from_answers_403_to_other_addresses(db) -> None:
    async with serving(db, allow_from=parse_networks(["10.0.0.0/8", "192.0.2.7"])) as (_, url), \
            aiohttp.ClientSession() as s:
        status, answer = await post(s, url + "/callbacks/zeckta", callback())
        assert (status, answer["error"]) == (403, "address not allowed")
    async with serving(db, allow_from=parse_networks(["127.0.0.0/8"])) as (_, url), aiohttp.ClientSession() as s:
        assert (await post(s, url + "/callbacks/zeckta", callback()))[0] == 200
    assert rows(db, "SELECT count(*) FROM events") == [(1,)]


async def test_https_with_a_throwaway_certificate(db, tmp_path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async with serving(db, tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem") as (_, url), \
            aiohttp.ClientSession() as s:
        assert url.startswith("https://")
        status, answer = await post(s, url + "/callbacks/zeckta", callback(event_id="tls"), ssl=client_ctx)
        assert status == 200 and answer["eventId"] == "tls"
        with pytest.raises(aiohttp.ClientError):
            await post(s, url.replace("https", "http") + "/callbacks/zeckta", callback())


@pytest.mark.parametrize("config,message", [
    (dict(host="0.0.0.0"), "refusing to listen on 0.0.0.0 without a callback token"),
    (dict(host="192.0.2.1"), "refusing"),
    (dict(host="::"), "refusing"),
    (dict(host="0.0.0.0", token="short"), "at least 8"),
    (dict(token="has/slash/in-it"), "without '/'"),
    (dict(tls_cert=Path("c.pem")), "both --tls-cert and --tls-key"),
])
def test_unsafe_configurations_are_refused(config, message) -> None:
    with pytest.raises(ListenerError, match=message):
        ListenerConfig(**config).check()


def test_safe_configurations_pass() -> None:
    for config in (dict(), dict(host="localhost"), dict(host="::1"), dict(host="0.0.0.0", token=TOKEN),
                   dict(host="0.0.0.0", insecure=True)):
        ListenerConfig(**config).check()


@pytest.mark.parametrize("text,expected", [("127.0.0.1:8787", ("127.0.0.1", 8787)), ("[::1]:9000", ("::1", 9000)),
                                           (":8787", ("127.0.0.1", 8787)), ("localhost:0", ("localhost", 0))])
def test_parse_listen(text, expected) -> None:
    assert Address.parse(text) == expected


@pytest.mark.parametrize("text", ["8787", "host", "1.2.3.4:99999", "h:p"])
def test_parse_listen_errors(text) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        Address.parse(text)


def test_bad_cidr() -> None:
    with pytest.raises(ListenerError, match="not an address or CIDR"):
        parse_networks(["10.0.0.0/99"])


# ── durability, concurrency, unavailability ─────────────────────────────────────
async def test_the_same_event_posted_200_times_at_once_is_one_event(db) -> None:
    body = json.dumps(callback(event_id="same", uuid="u")).encode()

    async with serving(db) as (_, url), aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as s:
        answers = await asyncio.gather(*(post(s, url + "/callbacks/zeckta", body) for _ in range(200)))
    assert all(status == 200 for status, _ in answers)
    assert sorted(a["duplicate"] for _, a in answers) == [False] + [True] * 199

    assert rows(db, "SELECT count(*) FROM events") == [(1,)]
    assert rows(db, "SELECT events_count, duplicates_count FROM messages") == [(1, 199)]


async def test_many_distinct_callbacks_at_once_are_all_stored(db) -> None:
    async with serving(db) as (listener, url), aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
        answers = await asyncio.gather(*(post(s, url + "/callbacks/zeckta", callback(
            uuid=f"m{i % 50}", event_id=f"e{i}", at=f"2026-11-23T10:{i // 60:02d}:{i % 60:02d}Z")) for i in range(600)))
        assert {status for status, _ in answers} == {200}
        assert not any(a["duplicate"] for _, a in answers)
        assert listener.committer.batches < 600  # group commit: batches shared by callbacks

    assert rows(db, "SELECT count(*) FROM events") == [(600,)]
    assert rows(db, "SELECT count(*), sum(events_count) FROM messages") == [(50, 600)]


async def test_a_locked_database_answers_503_stores_nothing_and_recovers(db) -> None:
    async with serving(db, busy_timeout=0.2) as (_, url), aiohttp.ClientSession() as s:
        blocker = lock_out_writers(db)  # another process holds the write lock
        try:
            async with s.post(url + "/callbacks/zeckta", data=json.dumps(callback(event_id="while-locked"))) as r:
                assert r.status == 503 and r.headers["Retry-After"] == "5"
            async with s.get(url + "/healthz") as r:
                health = await r.json()
                assert health["status"] == "degraded" and "locked" in health["store"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        status, answer = await post(s, url + "/callbacks/zeckta", callback(event_id="while-locked"))
        assert (status, answer["duplicate"]) == (200, False)  # the provider's retry is stored
        async with s.get(url + "/healthz") as r:
            assert (await r.json())["status"] == "ok"

    assert rows(db, "SELECT event_key FROM events") == [("while-locked",)]


async def test_once_a_newer_smsmon_has_upgraded_the_database_every_callback_is_503_and_none_is_stored(db, caplog) -> None:
    """A newer smsmon upgraded the database under a running serve (in place): serve stores
    nothing more (what it wrote would miss what the new schema keeps), answers 503 so that the
    provider retries for the newer smsmon to store, says why once, and shows it in /healthz."""
    from smsmon.store.schema import SCHEMA_VERSION

    async with serving(db) as (_, url), aiohttp.ClientSession() as s:
        status, _ = await post(s, url + "/callbacks/zeckta", callback("MESSAGE_SENT", uuid="u1", event_id="e1"))
        assert status == 200
        upgrade_under(db, SCHEMA_VERSION + 1)
        for i in range(3):
            async with s.post(url + "/callbacks/zeckta", data=json.dumps(callback(uuid="u1", event_id=f"later{i}"))) as r:
                assert r.status == 503
        async with s.get(url + "/healthz") as r:
            health = await r.json()
            assert health["status"] == "degraded" and "by a newer smsmon" in health["store"]
    assert rows(db, "SELECT event_key FROM events") == [("e1",)]
    said = [r for r in caplog.records if r.levelname == "ERROR" and "by a newer smsmon" in r.getMessage()]
    assert len(said) == 1 and "every one from now on" in said[0].getMessage()


async def test_callbacks_waiting_for_the_database_are_bounded(db) -> None:
    async with serving(db, busy_timeout=3.0, max_in_flight=2) as (listener, url), aiohttp.ClientSession() as s:
        blocker = lock_out_writers(db)
        try:
            waiting = [asyncio.create_task(post(s, url + "/callbacks/zeckta", callback(uuid=f"m{i}", event_id=f"w{i}"))) for i in range(2)]
            deadline = asyncio.get_running_loop().time() + 10
            while listener.in_flight < 2:  # both are waiting for the locked database
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            status, answer = await post(s, url + "/callbacks/zeckta", callback(event_id="third"))
            assert (status, answer["error"]) == (503, "overloaded, retry later")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert [st for st, _ in await asyncio.gather(*waiting)] == [200, 200]
        assert listener.in_flight == 0

    assert sorted(r[0] for r in rows(db, "SELECT event_key FROM events")) == ["w0", "w1"]


def test_a_busy_log_is_summed_up_once_a_second(caplog) -> None:
    caplog.set_level(logging.INFO, logger="smsmon.test")
    now = [100.0]
    log = CallbackLog(logging.getLogger("smsmon.test"), clock=lambda: now[0])
    for i in range(100):
        log.record(200, "new", "new       zeckta:m%d SENT", i)
    log.record(400, "rejected", "invalid_json: %s", "empty body")
    now[0] = 101.2  # the next second: the held lines are summed up
    log.record(200, "duplicate", "duplicate zeckta:m1 SENT")
    lines = caplog.text.strip().splitlines()
    assert len(lines) == 22
    assert "new       zeckta:m19 SENT" in lines[19]
    assert lines[20].endswith("... and 81 more callbacks in that second: 80 new, 1 rejected")
    assert "duplicate zeckta:m1 SENT" in lines[21]


# ── hardening (issue 9) ──────────────────────────────────────────────────────────
async def raw(url: str, data: bytes, *, timeout: float = 10.0) -> Answer:
    """Exactly these bytes on a new connection, and the answer (1xx answers noted in `interim`)."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return await exchange(host, int(port), data, timeout=timeout)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_callback_whose_number_has_letters_is_stored(db) -> None:
    """Found by `smsmon bench attack`: `+23o...` made the calling-code lookup raise, so the callback got a 5xx forever."""
    async with serving(db) as (_, url), aiohttp.ClientSession() as s:
        status, answer = await post(s, url + "/callbacks/zeckta", callback(event_id="letters", dest="+23o241234567"))
    assert (status, answer["eventId"]) == (200, "letters")
    assert rows(db, "SELECT dest, country_code FROM messages") == [("+23o241234567", None)]


@pytest.mark.parametrize("name,request_bytes", [
    ("gzip that is not gzip", request("POST", "/callbacks/zeckta", json.dumps(callback()).encode(),
                                      headers={"Content-Encoding": "gzip"})),
    ("deflate cut short", request("POST", "/callbacks/zeckta", zlib.compress(json.dumps(callback()).encode())[:20],
                                  headers={"Content-Encoding": "deflate"})),
    ("broken chunks", b"POST /callbacks/zeckta HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
])
async def test_a_body_that_cannot_be_decoded_is_400_without_a_dead_letter_or_a_traceback(db, caplog, name,
                                                                                         request_bytes) -> None:
    caplog.set_level(logging.INFO)
    async with serving(db) as (_, url), aiohttp.ClientSession() as s:
        answer = await raw(url, request_bytes)
        assert answer.status == 400, answer
        status, _ = await post(s, url + "/callbacks/zeckta", callback())  # still serving
        assert status == 200
    assert rows(db, "SELECT count(*) FROM dead_letters") == [(0,)]
    # Nothing of ours went wrong, and aiohttp did not trip over the rest of the body after the answer.
    assert not [r for r in caplog.records if r.name.startswith("smsmon") and r.levelno >= logging.WARNING]
    assert "Unhandled exception" not in caplog.text


class BuggyCommitter(Committer):
    """A real committer with a bug in its first submit (a bug of ours, in the path of a callback)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bugs = 1

    async def submit(self, event, **kwargs):  # type: ignore[no-untyped-def]
        if self.bugs:
            self.bugs -= 1
            raise KeyError("a bug")
        return await super().submit(event, **kwargs)


async def test_a_bug_of_ours_is_503_with_retry_after_never_500_and_the_retry_is_stored(db, caplog) -> None:
    caplog.set_level(logging.INFO, logger="smsmon")
    async with serving(db, committer=BuggyCommitter(db)) as (listener, url), aiohttp.ClientSession() as s:
        body = json.dumps(callback(event_id="retried"))
        async with s.post(url + "/callbacks/zeckta", data=body) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "5"
            assert (await r.json())["code"] == "internal_error"
        status, answer = await post(s, url + "/callbacks/zeckta", body.encode())  # what Zeckta does next
        assert (status, answer["duplicate"]) == (200, False)
        assert listener.counts["internal_error"] == 1
    assert rows(db, "SELECT event_key FROM events") == [("retried",)]
    assert "internal_error: KeyError while answering POST /callbacks/zeckta" in caplog.text


async def test_a_rejected_callback_whose_dead_letter_cannot_be_kept_is_503_then_kept(db) -> None:
    async with serving(db, busy_timeout=0.2) as (_, url), aiohttp.ClientSession() as s:
        blocker = lock_out_writers(db)
        try:
            async with s.post(url + "/callbacks/zeckta", data=b"{broken") as r:
                assert r.status == 503 and r.headers["Retry-After"] == "5"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        async with s.post(url + "/callbacks/zeckta", data=b"{broken") as r:  # the retry
            assert r.status == 400
    assert [r[0].split(":")[0] for r in rows(db, "SELECT reason FROM dead_letters")] == ["invalid_json"]


async def test_slow_senders_are_cut_and_hold_no_place_of_real_callbacks(db) -> None:
    """Issue 9: waiting for the database was counted from before the body, so slow senders made every real callback 503."""
    async with serving(db, max_in_flight=2, limits={"body_timeout": 1.0}) as (listener, url), \
            aiohttp.ClientSession() as s:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        slow = []
        for _ in range(5):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"POST /callbacks/zeckta HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            slow.append((reader, writer))
        assert listener.connections is not None
        await wait_until(lambda: len(listener.connections.reading) == 5)
        assert listener.in_flight == 0
        status, _ = await post(s, url + "/callbacks/zeckta", callback(event_id="real"))
        assert status == 200
        started = asyncio.get_running_loop().time()
        for reader, writer in slow:
            answer = await asyncio.wait_for(read_answer(reader), 5)
            assert answer.status == 408 and answer.headers["connection"] == "close"
            assert await reader.read() == b""  # and the connection is closed
            writer.close()
        assert asyncio.get_running_loop().time() - started < 5
        assert listener.counts["body_timeout"] == 5
    assert rows(db, "SELECT event_key FROM events") == [("real",)]


async def test_half_sent_connections_are_closed_after_the_idle_timeout(db) -> None:
    async with serving(db, limits={"idle_timeout": 1.0}) as (listener, url):
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /callbacks/zeckta HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert 0.9 < asyncio.get_running_loop().time() - started < 5
        writer.close()
        assert listener.connections is not None and listener.connections.closed_idle == 1


async def test_beyond_the_cap_the_stalled_connection_makes_room_for_a_real_callback(db) -> None:
    """Issue 9: 1,100 idle sockets made real callbacks time out; now the oldest stalled one is closed for them."""
    async with serving(db, limits={"max_connections": 4}) as (listener, url), aiohttp.ClientSession() as s:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        stalled = []
        for _ in range(4):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"POST /callbacks/zeckta HTTP/1.1\r\n")
            stalled.append((reader, writer))
            assert listener.connections is not None
            await wait_until(lambda: len(listener.connections.partial) == len(stalled))
        status, _ = await post(s, url + "/callbacks/zeckta", callback(event_id="got-in"))
        assert status == 200
        assert await asyncio.wait_for(stalled[0][0].read(), 5) == b""  # the oldest made room
        for _, writer in stalled:
            writer.close()
        assert listener.connections.closed_for_room >= 1 and listener.connections.peak <= 4
    assert rows(db, "SELECT event_key FROM events") == [("got-in",)]


async def test_when_every_connection_waits_for_the_database_a_new_one_gets_503(db) -> None:
    async with serving(db, busy_timeout=3.0, limits={"max_connections": 2}) as (listener, url):
        blocker = lock_out_writers(db)
        try:
            waiting = [asyncio.create_task(raw(url, request("POST", "/callbacks/zeckta", json.dumps(
                callback(uuid=f"m{i}", event_id=f"w{i}")).encode()))) for i in range(2)]
            assert listener.connections is not None
            await wait_until(lambda: len(listener.connections.working) == 2)
            refused = await raw(url, request("POST", "/callbacks/zeckta", json.dumps(callback(event_id="third")).encode()))
            assert (refused.status, refused.headers["retry-after"]) == (503, "5")
            assert json.loads(refused.body)["error"] == "too many connections, retry later"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert [a.status for a in await asyncio.gather(*waiting)] == [200, 200]
    assert sorted(r[0] for r in rows(db, "SELECT event_key FROM events")) == ["w0", "w1"]


async def test_expect_100_continue_with_a_huge_length_gets_413_before_any_invitation(db) -> None:
    """Issue 9: it got "100 Continue" and then 413."""
    def head(path: str, length: int) -> bytes:
        return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()

    async with serving(db, token=TOKEN) as (_, url):
        huge = await raw(url, head(f"/callbacks/zeckta/{TOKEN}", 10_000_000))
        assert (huge.status, huge.interim) == (413, [])
        wrong = await raw(url, head("/callbacks/zeckta/wrong-token-0000", 10_000_000))
        assert (wrong.status, wrong.interim) == (404, [])
        body = json.dumps(callback(event_id="invited")).encode()
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head(f"/callbacks/zeckta/{TOKEN}", len(body)))
        assert (await asyncio.wait_for(read_answer(reader, stop_at_interim=True), 5)).interim == [100]
        writer.write(body)
        assert (await asyncio.wait_for(read_answer(reader), 5)).status == 200
        writer.close()
    assert rows(db, "SELECT event_key FROM events") == [("invited",)]


async def test_health_tells_strangers_only_ok_or_degraded_when_a_token_is_set(db) -> None:
    """Issue 9: /healthz showed anyone the database path and the store's errors."""
    async with serving(db, token=TOKEN) as (_, url), aiohttp.ClientSession() as s:
        async with s.get(url + "/healthz") as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})
        async with s.get(url + f"/healthz/{TOKEN}") as r:
            details = await r.json()
            assert details["database"] == str(db) and details["connections"]["cap"] >= 1
        async with s.get(url + f"/healthz/{TOKEN[:-1]}") as r:
            assert r.status == 404


async def test_pipelined_callbacks_on_one_connection_are_each_answered_and_stored(db) -> None:
    async with serving(db, limits={"max_connections": 2}) as (listener, url):
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"".join(request("POST", "/callbacks/zeckta", json.dumps(callback(uuid=f"p{i}", event_id=f"p{i}")).encode())
                              for i in range(3)))
        answers = [await asyncio.wait_for(read_answer(reader), 5) for _ in range(3)]
        writer.close()
        assert [a.status for a in answers] == [200, 200, 200]
        assert listener.connections is not None and listener.connections.closed_for_room == 0
    assert sorted(r[0] for r in rows(db, "SELECT event_key FROM events")) == ["p0", "p1", "p2"]
