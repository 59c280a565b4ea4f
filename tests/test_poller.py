"""The pollers against the fake providers over real loopback HTTP, into real SQLite files."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest

from smsmon.ingest.committer import Committer
from smsmon.config import Secret
from smsmon.ingest.poller import MAX_BACKOFF_S, EazitaPoller, PollOutcome, ZecktaStatusPoller, backoff, run_poller
from smsmon.providers import zeckta
from smsmon.redact import Redactor
from smsmon.sim.servers import FakeEazita, FakeZeckta, Step
from smsmon.store.reader import Reader
from smsmon.timeutil import now_utc, zone
from tests.helpers import callback, rows

KEY, PASSWORD, BEARER = "ez-key-1234567890", "p@ss w/rd&more", "zk-bearer-0987654321"


class Clock:
    """The fakes' time: starts now (the watch window is measured from now), moved by tests."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


@asynccontextmanager
async def world(db: Path, *, timeout: float = 5.0, **fake_kw: Any) -> AsyncIterator[dict[str, Any]]:
    """A fake Eazita, a fake Zeckta, a committer on `db`, and both pollers pointed at the fakes."""
    clock = Clock()
    ez = FakeEazita(KEY, PASSWORD, clock=clock, **fake_kw)
    zk = FakeZeckta(BEARER, clock=clock)
    await ez.start()
    await zk.start()
    committer = Committer(db)
    committer.start()
    redact = Redactor([KEY, PASSWORD, BEARER])
    reader = Reader(db)
    async with httpx.AsyncClient(base_url=ez.url, timeout=timeout) as ec, httpx.AsyncClient(base_url=zk.url, timeout=timeout) as zc:
        try:
            yield {
                "clock": clock, "ez": ez, "zk": zk, "committer": committer,
                "eazita": EazitaPoller(ec, committer, reader, redact, api_key=Secret(KEY), password=Secret(PASSWORD), tz=zone("Asia/Karachi")),
                "zeckta": ZecktaStatusPoller(zc, committer, reader, redact, api_key=Secret(BEARER), status_after=timedelta(minutes=10)),
            }
        finally:
            await asyncio.to_thread(committer.stop)
            await ez.stop()
            await zk.stop()


# ── Eazita ──────────────────────────────────────────────────────────────────────
async def test_pending_then_delivered_across_two_polls(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].add(569399, [Step(0, "SUBMIT"), Step(2, "PENDING"), Step(60, "DELIVERED")], gsm="+923001234567")
        w["clock"].t += 5
        first = await w["eazita"].poll_once()
        assert (first.ok, first.rows_seen, first.new_events) == (True, 1, 1)
        assert rows(db_path, "SELECT status, raw_status FROM messages") == [("SENT", "PENDING")]
        w["clock"].t += 60
        second = await w["eazita"].poll_once()
        assert second.ok and second.new_events == 1
        # it was in the recent log, so it was not asked for again by id
        assert not any("messageid" in q for q in w["ez"].requests)

    assert rows(db_path, "SELECT status, outcome, dest, duplicates_count FROM messages") == [
        ("DELIVERED", "DELIVERED", "+923001234567", 0)]
    assert [r[0] for r in rows(db_path, "SELECT raw_status FROM events ORDER BY event_time")] == ["PENDING", "DELIVERED"]
    assert {r[0] for r in rows(db_path, "SELECT source FROM events")} == {"poll"}


async def test_polling_again_changes_nothing(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].add(1, [Step(0, "SUBMIT"), Step(1, "PENDING"), Step(3, "DELIVERED")])
        w["ez"].add(2, [Step(0, "SUBMIT"), Step(1, "PENDING")])
        w["clock"].t += 10
        assert (await w["eazita"].poll_once()).new_events == 2
        for _ in range(3):
            again = await w["eazita"].poll_once()
            assert again.ok and again.new_events == 0 and again.rows_seen >= 2

    assert rows(db_path, "SELECT sum(events_count), sum(duplicates_count) FROM messages") == [(2, 0)]


async def test_pending_after_delivered_stays_delivered_and_is_flagged(db_path) -> None:
    async with world(db_path) as w:
        m = w["ez"].add(7, [Step(0, "SUBMIT"), Step(2, "PENDING"), Step(5, "DELIVERED")])
        w["clock"].t += 10
        await w["eazita"].poll_once()
        m.steps = [Step(0, "SUBMIT"), Step(2, "PENDING")]  # the provider shows an older state
        late = await w["eazita"].poll_once()
        assert late.ok and late.new_events == 1

    assert rows(db_path, "SELECT status, flags FROM messages") == [("DELIVERED", "late_event")]


async def test_eazitas_quirks_arrive_intact(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].add(564743, [Step(0, "SUBMIT"), Step(14, "FAILED", "8")], country_code="9292", price="0.003")
        w["clock"].t += 20
        assert (await w["eazita"].poll_once()).new_events == 1

    assert rows(db_path, "SELECT status, error_code, country_code, cost, reference FROM messages") == [
        ("FAILED", "8", "92", 0.003, None)]


async def test_open_messages_missing_from_the_recent_log_are_asked_by_id(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].RECENT = 2  # the recent log shows only the two newest
        for i in range(5):
            w["ez"].add(100 + i, [Step(0, "SUBMIT"), Step(1, "PENDING"), Step(50, "DELIVERED")])
            w["clock"].t += 1
        assert (await w["eazita"].poll_once()).new_events == 2
        w["ez"].RECENT = 100
        w["clock"].t += 1
        await w["eazita"].poll_once()  # all five are open now
        w["ez"].RECENT = 0
        w["clock"].t += 60
        done = await w["eazita"].poll_once()
        assert done.ok and done.new_events == 5
        asked = [q["messageid"] for q in w["ez"].requests if "messageid" in q][-1]
        assert sorted(asked.split(",")) == [str(100 + i) for i in range(5)]

    assert rows(db_path, "SELECT count(*) FROM messages WHERE status = 'DELIVERED'") == [(5,)]


async def test_a_report_of_10000_rows(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].fail("big")
        big = await w["eazita"].poll_once()
        assert (big.ok, big.rows_seen, big.new_events) == (True, 10_000, 10_000)

    assert rows(db_path, "SELECT count(*), sum(status = 'DELIVERED') FROM messages") == [(10_000, 10_000)]


FAILURES = [
    (("http", 500), "poll_server_error", 500, None),
    (("http", 503), "poll_server_error", 503, None),
    (("http", 401), "poll_auth", 401, None),
    (("http", 403), "poll_auth", 403, None),
    (("http", 404), "poll_not_found", 404, None),
    (("http", 418), "poll_http_error", 418, None),
    (("http", (429, 7)), "poll_rate_limited", 429, None),
    (("html", None), "poll_html_body", 200, None),
    (("invalid_json", None), "poll_invalid_json", 200, None),
    (("api_error", -7), "poll_api_error", 200, "-7"),
    (("api_error", -3), "poll_api_error", 200, "-3"),
]


@pytest.mark.parametrize("inject,code,status,api_code", FAILURES, ids=[f[1] + "-" + str(f[2]) for f in FAILURES])
async def test_each_failure_is_classified_recorded_and_explained(db_path, inject, code, status, api_code) -> None:
    async with world(db_path) as w:
        w["ez"].add(1, [Step(0, "SUBMIT")])
        w["ez"].fail(inject[0], arg=inject[1])
        outcome = await w["eazita"].poll_once()
        await w["committer"].poll_run(outcome.run_row())
        recovered = await w["eazita"].poll_once()
        assert recovered.ok and recovered.new_events == 1

    assert (outcome.ok, outcome.error_code, outcome.http_status, outcome.api_code) == (False, code, status, api_code)
    if code == "poll_rate_limited":
        assert outcome.retry_after == 7 and "retry after 7 s" in outcome.error
    from smsmon import catalogue

    assert catalogue.lookup(code)  # the error is explained
    assert rows(db_path, "SELECT ok, error_code, http_status FROM poll_runs") == [(0, code, status)]
    assert rows(db_path, "SELECT count(*) FROM events") == [(1,)]  # nothing from the failed poll


async def test_a_refused_connection_is_a_connect_error(db_path) -> None:
    committer = Committer(db_path)
    committer.start()
    try:
        async with httpx.AsyncClient(base_url="http://127.0.0.1:1", timeout=2) as client:
            poller = EazitaPoller(client, committer, Reader(db_path), Redactor([KEY]), api_key=Secret(KEY), password=Secret(PASSWORD))
            outcome = await poller.poll_once()
    finally:
        await asyncio.to_thread(committer.stop)

    assert (outcome.ok, outcome.error_code) == (False, "poll_connect_error")


async def test_a_timeout_then_recovery_on_the_next_cycle_without_duplicates(db_path) -> None:
    async with world(db_path, timeout=0.3) as w:
        w["ez"].add(5, [Step(0, "SUBMIT"), Step(1, "PENDING"), Step(2, "DELIVERED")])
        w["clock"].t += 5
        w["ez"].fail("timeout", arg=2.0)
        outcomes: list[PollOutcome] = []
        stop = asyncio.Event()

        def seen(o: PollOutcome) -> None:
            outcomes.append(o)
            if len(outcomes) == 3:
                stop.set()

        await asyncio.wait_for(run_poller(w["eazita"], w["committer"], 0.05, stop, on_outcome=seen), 20)

    assert [(o.ok, o.error_code) for o in outcomes] == [(False, "poll_timeout"), (True, None), (True, None)]
    assert [o.new_events for o in outcomes] == [0, 1, 0]
    assert rows(db_path, "SELECT ok, error_code FROM poll_runs ORDER BY id") == [(0, "poll_timeout"), (1, None), (1, None)]
    assert rows(db_path, "SELECT events_count, duplicates_count FROM messages") == [(1, 0)]


async def test_wrong_credentials(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].password = "changed"
        outcome = await w["eazita"].poll_once()

    assert (outcome.error_code, outcome.api_code) == ("poll_api_error", "-2")
    assert "Invalid API key or password" in outcome.error


# ── backoff ─────────────────────────────────────────────────────────────────────
def test_backoff_is_exponential_jittered_and_capped() -> None:
    rng = random.Random(3)
    for failures in range(1, 12):
        ceiling = min(MAX_BACKOFF_S, 30 * 2 ** (failures - 1))
        for _ in range(20):
            assert ceiling / 2 <= backoff(failures, 30, None, rng) <= ceiling
    assert max(backoff(20, 30, None, rng) for _ in range(100)) <= 300
    assert backoff(1, 30, 200, rng) == 200  # the provider's Retry-After wins over a shorter backoff
    assert backoff(1, 30, 900, rng) == 300  # ... up to the ceiling (issue 9: Retry-After 1e12)
    assert backoff(10_000, 30, None, rng) <= 300  # no overflow after a very long outage
    assert len({round(backoff(3, 30, None, rng), 3) for _ in range(20)}) > 10  # jitter


# ── Zeckta Status API ───────────────────────────────────────────────────────────
async def test_status_api_sent_after_a_delivered_callback_stays_delivered_and_is_flagged(db_path) -> None:
    async with world(db_path) as w:
        body = callback("MESSAGE_DELIVERED", uuid="z-1")
        await w["committer"].submit(zeckta.callback_from_object(body, received_at=now_utc(), source="callback"))
        w["zk"].statuses["z-1"] = "sent"
        outcome = await w["zeckta"].refresh("z-1")
        assert outcome.ok and outcome.new_events == 1
        again = await w["zeckta"].refresh("z-1")
        assert again.ok and again.new_events == 0  # asking again is idempotent

    assert rows(db_path, "SELECT status, flags FROM messages") == [("DELIVERED", "late_event")]
    assert rows(db_path, "SELECT source, raw_status FROM events ORDER BY id") == [("callback", "DELIVERED"), ("status_api", "sent")]


async def test_silent_open_zeckta_messages_are_asked_about(db_path) -> None:
    async with world(db_path) as w:
        old = now_utc() - timedelta(minutes=30)
        for uuid, at in (("silent", old), ("recent", now_utc()), ("final", old)):
            kind = "MESSAGE_DELIVERED" if uuid == "final" else "MESSAGE_SENT"
            await w["committer"].submit(zeckta.callback_from_object(callback(kind, uuid=uuid, at=at), received_at=now_utc()))
        w["zk"].statuses.update({"silent": "delivered", "recent": "delivered", "final": "delivered"})
        outcome = await w["zeckta"].poll_once()
        assert outcome.ok and (outcome.rows_seen, outcome.new_events) == (1, 1)
        assert [r["message_id"] for r in w["zk"].requests] == ["silent"]
        same = await w["zeckta"].poll_once()  # now final: nothing to ask
        assert same.rows_seen == 0

    assert dict(rows(db_path, "SELECT provider_message_id, status FROM messages")) == {
        "silent": "DELIVERED", "recent": "SENT", "final": "DELIVERED"}


async def test_one_unknown_message_does_not_fail_the_cycle(db_path) -> None:
    async with world(db_path) as w:
        old = now_utc() - timedelta(minutes=30)
        for uuid in ("known", "forgotten"):
            await w["committer"].submit(zeckta.callback_from_object(callback("MESSAGE_SENT", uuid=uuid, at=old),
                                                                    received_at=now_utc()))
        w["zk"].statuses["known"] = "delivered"
        outcome = await w["zeckta"].poll_once()

    assert outcome.ok and (outcome.new_events, outcome.bad_rows) == (1, 1)


async def test_status_api_failures(db_path) -> None:
    async with world(db_path) as w:
        await w["committer"].submit(zeckta.callback_from_object(callback("MESSAGE_SENT", uuid="q"), received_at=now_utc()))
        out = [await w["zeckta"].refresh("unknown-id")]
        w["zk"].fail("http", arg=(429, 30))
        out.append(await w["zeckta"].refresh("q"))
        w["zk"].api_key = "rotated"
        out.append(await w["zeckta"].refresh("q"))
        nf, limited, auth = out

    assert (nf.error_code, limited.error_code, limited.retry_after, auth.error_code) == (
        "poll_not_found", "poll_rate_limited", 30, "poll_auth")


# ── secrets ─────────────────────────────────────────────────────────────────────
async def test_credentials_appear_nowhere(db_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="smsmon")
    texts: list[str] = []

    async with world(db_path, timeout=0.3, echo_credentials=True) as w:
        w["ez"].add(1, [Step(0, "SUBMIT")])
        for inject in (("api_error", -6), ("http", 500), ("html", None), ("timeout", 1.0), ("invalid_json", None)):
            w["ez"].fail(inject[0], arg=inject[1])
            texts.append(repr(await w["eazita"].poll_once()))
        w["ez"].password = "other"  # the server now answers -2, echoing what we sent
        stop = asyncio.Event()
        seen: list[PollOutcome] = []

        def done(o: PollOutcome) -> None:
            seen.append(o)
            stop.set()

        await run_poller(w["eazita"], w["committer"], 0.01, stop, on_outcome=done)
        texts.append(repr(seen))
        assert "(api=****, pass=****;" in seen[0].error  # the provider's echo, masked
        w["zk"].api_key = "rotated"
        await w["committer"].submit(zeckta.callback_from_object(callback(uuid="s"), received_at=now_utc()))
        texts.append(repr(await w["zeckta"].refresh("s")))

    everything = "\n".join(texts) + caplog.text + "\n".join(map(str, rows(db_path, "SELECT * FROM poll_runs")))
    everything_bytes = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    for secret in (KEY, PASSWORD, BEARER, "p%40ss", "p%40ss+w%2Frd"):
        assert secret not in everything
        assert secret.encode() not in everything_bytes
