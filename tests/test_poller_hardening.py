"""Issue 9, the pollers: whatever a provider answers, and whatever goes wrong inside smsmon, a poll
ends as a classified failure or a skipped row, never as the end of polling; every request is
bounded in time and in size; credentials are masked in every spelling before anything is cut.

The real pollers against the fake providers over loopback HTTP, into real SQLite files."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import sqlite3
import time
import tracemalloc
import zlib
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import httpx
import msgspec
import pytest
from click.testing import CliRunner

from smsmon import catalogue
from smsmon.cli import cli
from smsmon.config import Secret
from smsmon.ingest.fetch import MAX_BACKOFF_S, retry_after
from smsmon.ingest.poller import EazitaPoller, PollOutcome, run_poller
from smsmon.providers import zeckta
from smsmon.redact import Redactor
from smsmon.sim.servers import FakeEazita, Step, echo_forms
from smsmon.store.payloads import codec_for
from smsmon.timeutil import UTC, now_utc, zone
from tests.helpers import callback, rows
from tests.test_poller import BEARER, KEY, PASSWORD, world
from tests.test_simulate_and_poll_cli import InThread

KARACHI = zone("Asia/Karachi")



def stored_raws(db_path) -> list[str]:
    """Every event's raw payload as the provider sent it, decompressed."""
    conn = sqlite3.connect(db_path)
    try:
        codec = codec_for(conn)
        return [codec.unpack(raw) or "" for (raw,) in conn.execute("SELECT raw FROM events")]
    finally:
        conn.close()

def local(clock: Any, ago: float = 60) -> str:
    return datetime.fromtimestamp(clock() - ago, UTC).astimezone(KARACHI).strftime("%Y/%m/%d %H:%M:%S")


def good(message_id: int, when: str) -> dict[str, Any]:
    return {"message_id": message_id, "status": "DELIVERED", "price": "0.003", "network": "Zong", "country_code": "92",
            "done_date": when, "sent_date": when, "error_code": "0", "reference": None}


def spellings(text: str) -> set[str]:
    """The text, lower-cased, and with its %-escapes and JSON escapes undone: a secret hidden
    in any mixture of spellings shows in one of these."""
    # Only well-formed \uXXXX escapes: a database file's bytes hold backslash-u followed by
    # anything (a whole-text JSON round trip failed on one, depending on the run's random bytes).
    json_undone = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text).replace("\\/", "/")
    out = set()
    for t in (text, json_undone):
        once, plus = unquote(t), unquote_plus(t)
        out |= {t, once, unquote(once), plus, unquote_plus(plus)}
    return {t.lower() for t in out}


def leaked(text: str) -> list[str]:
    forms = spellings(text)
    return [s for s in (KEY, PASSWORD, BEARER) if any(s.lower() in f for f in forms)]


# ── finding 10: nothing ends a poller ────────────────────────────────────────────
async def test_rows_with_impossible_dates_are_skipped_and_counted_and_the_rest_stored(db_path) -> None:
    async with world(db_path) as w:
        now = local(w["clock"])
        answer = [good(1, now), dict(good(10, now), done_date="0001/01/01 00:00:00"),
                  dict(good(11, now), done_date="2026/02/30 10:00:00"), dict(good(12, now), sent_date="1900/13/45 99:99:99"),
                  dict(good(13, now), done_date="9999/12/31 23:59:59"), good(2, now)]
        w["ez"].fail("rows", arg=answer)
        outcome = await w["eazita"].poll_once()
        await w["committer"].poll_run(outcome.run_row())

    assert (outcome.ok, outcome.rows_seen, outcome.bad_rows, outcome.new_events) == (True, 6, 3, 3)
    # the year-9999 row can be read: it is kept, flagged as a clock far off
    assert dict(rows(db_path, "SELECT provider_message_id, flags FROM messages")) == {"1": None, "2": None, "13": "clock_skew"}
    assert rows(db_path, "SELECT ok, rows_seen, new_events FROM poll_runs") == [(1, 6, 3)]


async def test_an_answer_that_says_gzip_and_is_not_is_a_classified_failure(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].add(1, [Step(0, "SUBMIT")])
        w["ez"].fail("bad_gzip")
        outcome = await w["eazita"].poll_once()
        recovered = await w["eazita"].poll_once()

    assert (outcome.ok, outcome.error_code) == (False, "poll_undecodable") and "gzip" in outcome.error
    assert catalogue.lookup("poll_undecodable") and recovered.ok and recovered.new_events == 1


@pytest.mark.parametrize("encoding,body,ok", [
    ("gzip", gzip.compress(b'{"code": 1, "data": []}'), True),
    ("gzip", gzip.compress(b'{"code": 1, ') + gzip.compress(b'"data": []}'), True),  # two gzip members
    ("deflate", zlib.compress(b'{"code": 1, "data": []}'), True),
    ("deflate", zlib.compress(b'{"code": 1, "data": []}')[2:-4], True),  # deflate without its zlib header
    ("gzip", gzip.compress(b'{"code": 1, "data": []}')[:-12], False),  # cut short
    ("br", b"\x1b\x0f\x00", False),  # not asked for
], ids=["gzip", "two-members", "deflate", "raw-deflate", "truncated", "brotli"])
async def test_content_encodings(db_path, encoding, body, ok) -> None:
    async with world(db_path) as w:
        w["ez"].fail("body", arg=(200, "application/json", body, {"Content-Encoding": encoding}))
        outcome = await w["eazita"].poll_once()

    assert outcome.ok is ok and (ok or outcome.error_code == "poll_undecodable")


async def test_the_poller_survives_every_misbehaviour_and_its_own_bugs(db_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="smsmon")
    async with world(db_path, timeout=1.0) as w:
        now = local(w["clock"])
        bad = [("rows", [dict(good(9, now), done_date="0001/01/01 00:00:00")], None), ("bad_gzip", None, "poll_undecodable"),
               ("redirect", "https://elsewhere.example.net/", "poll_redirect"),
               ("body", (200, "application/json", b"\x00\xff garbage"), "poll_invalid_json"),
               ("gzip_bomb", 64 << 20, "poll_too_large"), ("html", None, "poll_html_body"), ("drip", 10, "poll_timeout"),
               ("http", 503, "poll_server_error")]
        for i, (kind, arg, _) in enumerate(bad):
            w["ez"].fail(kind, arg=arg)
            w["ez"].fail("rows", arg=[good(100 + i, now)])  # a good answer after each bad one
        outcomes: list[PollOutcome] = []
        stop = asyncio.Event()

        def seen(o: PollOutcome) -> None:
            outcomes.append(o)
            if len(outcomes) == 1:
                raise RuntimeError("the health display broke")  # must not end polling either
            if len(outcomes) == 2 * len(bad):
                stop.set()

        await asyncio.wait_for(run_poller(w["eazita"], w["committer"], 0.01, stop, on_outcome=seen), 60)

    assert [o.error_code for o in outcomes] == [c for _, _, c in bad for c in (c, None)]
    assert all(catalogue.lookup(o.error_code) for o in outcomes if o.error_code)
    assert [o.failures for o in outcomes][:4] == [0, 0, 1, 0] and all(o.next_try_s is not None for o in outcomes)
    assert rows(db_path, "SELECT count(*), sum(ok) FROM poll_runs") == [(2 * len(bad), len(bad) + 1)]
    assert rows(db_path, "SELECT count(*) FROM messages") == [(len(bad),)]  # every good answer stored
    assert "could not report the poll: unexpected RuntimeError" in caplog.text


async def test_a_bug_inside_a_poll_is_a_classified_failure_and_polling_goes_on(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].add(1, [Step(0, "SUBMIT")])
        broken = w["eazita"]
        broken.reader = None  # a poller wired wrongly: every cycle fails inside smsmon, after its request
        outcomes: list[PollOutcome] = []
        stop = asyncio.Event()

        def seen(o: PollOutcome) -> None:
            outcomes.append(o)
            if len(outcomes) == 3:
                stop.set()

        await asyncio.wait_for(run_poller(broken, w["committer"], 0.01, stop, on_outcome=seen), 20)

    assert [o.error_code for o in outcomes] == ["poll_internal"] * 3
    assert "AttributeError" in outcomes[0].error and [o.failures for o in outcomes] == [1, 2, 3]
    assert rows(db_path, "SELECT error_code FROM poll_runs") == [("poll_internal",)] * 3


def test_poll_once_prints_the_classified_failure_not_an_internal_error(tmp_path) -> None:
    fake = FakeEazita(KEY, PASSWORD)
    fake.fail("bad_gzip")
    running = InThread(fake)
    logger = logging.getLogger("smsmon")
    saved = (logger.handlers[:], logger.propagate, logger.level)  # `poll` sends smsmon's log to stderr
    try:
        r = CliRunner().invoke(cli, ["poll", "--once", "--db", str(tmp_path / "p.db")], catch_exceptions=False, env={
            "SMSMON_EAZITA_URL": running.url, "SMSMON_EAZITA_API_KEY": KEY, "SMSMON_EAZITA_PASSWORD": PASSWORD,
            "SMSMON_CONFIG": ""})
    finally:
        running.close()
        logger.handlers[:], logger.propagate, logger.level = saved
    assert r.exit_code == 1 and "eazita: poll_undecodable: GET /sms/delivery: the answer says it is gzip" in r.stderr
    assert "internal error" not in r.stderr and "Provider answer cannot be decoded" in r.stderr


# ── finding 11: the timeout bounds the whole request ─────────────────────────────
async def test_a_server_that_drips_a_byte_a_second_is_cut_at_the_timeout(db_path) -> None:
    async with world(db_path, timeout=1.0) as w:
        w["ez"].fail("drip", arg=30)
        started = time.perf_counter()
        outcome = await w["eazita"].poll_once()
        took = time.perf_counter() - started

    assert (outcome.error_code, outcome.error) == ("poll_timeout", "GET /sms/delivery: no whole answer within 1 s")
    assert took < 2.5  # before: each byte restarted the read timeout, and the poll lasted as long as the drip


# ── finding 12: bounded memory ───────────────────────────────────────────────────
async def test_a_gzip_bomb_is_refused_at_the_cap_without_being_inflated(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].fail("gzip_bomb", arg=512 << 20)
        tracemalloc.start()
        try:
            started = time.perf_counter()
            outcome = await w["eazita"].poll_once()
            took = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert outcome.error_code == "poll_too_large" and "larger than 32 MB once inflated" in outcome.error
    assert peak < 48 << 20 and took < 5  # the 32 MB read, not the 512 MB it inflates to (before: 187 MB RSS)


async def test_a_large_answer_is_read_a_chunk_of_rows_at_a_time(db_path) -> None:
    async with world(db_path, timeout=30) as w:
        answer = [good(500_000 + i, local(w["clock"], ago=60 + i)) for i in range(15_000)]
        size = len(msgspec.json.encode({"code": 1, "data": answer}))
        w["ez"].fail("rows", arg=answer, count=2)
        first = await w["eazita"].poll_once()
        tracemalloc.start()
        try:
            again = await w["eazita"].poll_once()  # the same answer: all of it read and parsed, nothing new to store
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert (first.rows_seen, first.new_events, again.rows_seen, again.new_events) == (15_000, 15_000, 15_000, 0)
    # measured: 10 MB, where decoding the whole answer at once took 32 MB for this 3 MB answer
    assert peak < 20 << 20, (peak, size)


# ── finding 13: Retry-After and redirects ────────────────────────────────────────
@pytest.mark.parametrize("value,seconds", [("7", 7), ("1e12", MAX_BACKOFF_S), ("inf", MAX_BACKOFF_S), ("-5", 0), ("nan", None),
                                           ("soon", None), ("", None), ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_BACKOFF_S),
                                           ("Thu, 01 Jan 1970 00:00:00 GMT", 0)])
def test_retry_after_is_read_and_capped(value, seconds) -> None:
    assert retry_after(value) == seconds


async def test_retry_after_1e12_waits_the_backoff_ceiling_not_millennia(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].fail("http", arg=(429, "1e12"))
        stop = asyncio.Event()
        outcomes: list[PollOutcome] = []

        def seen(o: PollOutcome) -> None:
            outcomes.append(o)
            stop.set()

        await run_poller(w["eazita"], w["committer"], 0.01, stop, on_outcome=seen)

    o = outcomes[0]
    assert (o.error_code, o.retry_after, o.next_try_s) == ("poll_rate_limited", MAX_BACKOFF_S, MAX_BACKOFF_S)
    assert o.error.endswith("retry after 300 s (it asked for 1e12)")


async def test_a_redirect_is_named_with_its_host_and_not_followed(db_path) -> None:
    async with world(db_path) as w:
        w["ez"].fail("redirect", arg=f"{w['ez'].url}/sms/delivery?api={KEY}&again=1")
        outcome = await w["eazita"].poll_once()
        asked = len(w["ez"].requests)
        w["ez"].fail("redirect", arg="https://user:pw@elsewhere.example.net:8443/x")
        other = await w["eazita"].poll_once()

    assert asked == 1  # not followed, although it pointed back at the same server
    assert outcome.error_code == "poll_redirect" and outcome.http_status == 302
    assert outcome.error == "GET /sms/delivery: HTTP 302, a redirect to 127.0.0.1, not followed (check the provider's URL setting)"
    assert "to elsewhere.example.net," in other.error and "pw" not in other.error


# ── finding 15: every spelling of a secret, masked before anything is cut ───────
@pytest.mark.parametrize("spelling", echo_forms(PASSWORD) + echo_forms(KEY) + [
    json.dumps(PASSWORD)[1:-1], json.dumps(PASSWORD, ensure_ascii=False)[1:-1].replace("/", "\\/"),
    quote(quote(PASSWORD, safe=""), safe=""), "p%40ss w/rd%26more"])
def test_the_redactor_masks_every_spelling(spelling) -> None:
    redact = Redactor([KEY, PASSWORD])
    assert redact(f"<{spelling}>") == "<****>"
    assert redact.found(f"x {spelling} y".encode()) and redact.found(("x" * (1 << 20) + spelling).encode())


def test_a_secret_straddling_a_cut_leaves_no_prefix() -> None:
    redact = Redactor([KEY, PASSWORD])
    for spelling in (KEY, quote(PASSWORD, safe="").lower()):
        text = "x" * 495 + spelling + "y" * 10_000_000  # the secret crosses character 500
        started = time.perf_counter()
        cut = redact.cut(text, 500)
        assert cut == "x" * 495 + "****…" and time.perf_counter() - started < 0.1  # only the head is looked at
    assert redact.cut("z" * 600, 500) == "z" * 499 + "…"


def test_the_redactor_leaves_other_text_alone() -> None:
    redact = Redactor([KEY, PASSWORD])
    text = '{"code": 1, "data": [{"message_id": 5, "done_date": "2026\\/11\\/23 16:51:00", "network": "Zong"}]} 100%'
    assert redact(text) == text and not redact.found(text.encode()) and Redactor([])("abc") == "abc"


async def test_credentials_echoed_in_any_spelling_reach_no_output_row_or_file(db_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="smsmon")
    texts: list[str] = []
    async with world(db_path, echo_credentials=True) as w:
        w["ez"].fail("echo")  # in rows: a date (a row error quotes it), a reference, a network, a status
        texts.append(repr(await w["eazita"].poll_once()))
        w["ez"].fail("api_error", arg=-6)  # in the error envelope
        texts.append(repr(await w["eazita"].poll_once()))
        w["ez"].password = "rotated"  # -2, echoing the query string in every spelling
        texts.append(repr(await w["eazita"].poll_once()))
        await w["committer"].submit(zeckta.callback_from_object(callback("MESSAGE_SENT", uuid="s"), received_at=now_utc()))
        w["zk"].statuses["s"] = "delivered"
        w["zk"].fail("echo")  # a good Status API answer repeating the bearer key
        answered = await w["zeckta"].refresh("s")
        texts.append(repr(answered))
        for o in (await w["eazita"].poll_once(), answered):
            await w["committer"].poll_run(o.run_row())

    assert answered.ok and answered.new_events == 1
    assert rows(db_path, "SELECT count(*) FROM messages WHERE provider = 'eazita'")[0][0] >= 16  # the echoing rows kept, masked
    everything = "\n".join(texts) + caplog.text + "\n".join(map(str, rows(db_path, "SELECT * FROM poll_runs")))
    assert not leaked(everything)
    files = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*")).decode("utf-8", "replace")
    assert not leaked(files)
    raws = stored_raws(db_path)  # payloads are compressed on disk: the bytes above cannot show them
    assert not leaked("\n".join(raws))
    assert sum("****" in raw for raw in raws) >= 17


async def test_a_secret_in_a_long_value_is_masked_before_the_value_is_cut(db_path, caplog) -> None:
    """Row errors quote 60 characters of a bad date, and texts are cut at 256: masking first."""
    caplog.set_level(logging.INFO, logger="smsmon")
    async with world(db_path, echo_credentials=True) as w:
        padding = "x" * 40
        w["ez"].fail("rows", arg=[dict(good(1, local(w["clock"])), done_date=f"{padding} api={KEY}&pass={quote(PASSWORD)}")])
        row_error = await w["eazita"].poll_once()
        w["ez"].fail("api_error", arg=-6)
        envelope = await w["eazita"].poll_once()

    assert row_error.ok and row_error.bad_rows == 1
    for prefix in (KEY[:5], quote(PASSWORD)[:5]):
        assert prefix not in caplog.text and prefix not in envelope.error
    assert len(envelope.error) <= 500 and "****" in envelope.error


async def test_the_zeckta_key_sent_nowhere_but_its_header(db_path) -> None:
    """The Status API is asked with the message id %-escaped in the path, the key only in the header."""
    async with world(db_path) as w:
        await w["committer"].submit(zeckta.callback_from_object(callback("MESSAGE_SENT", uuid="a b?c"), received_at=now_utc()))
        w["zk"].statuses["a b?c"] = "delivered"
        outcome = await w["zeckta"].refresh("a b?c")

    assert outcome.ok and outcome.new_events == 1 and w["zk"].requests == [{"message_id": "a b?c"}]


async def test_a_request_that_cannot_be_sent_does_not_quote_its_headers(db_path) -> None:
    async with world(db_path) as w:
        await w["committer"].submit(zeckta.callback_from_object(callback(uuid="q"), received_at=now_utc()))
        w["zeckta"].api_key = Secret(BEARER + "\r\n")  # what config.load now refuses; a header httpx will not send
        outcome = await w["zeckta"].refresh("q")

    assert outcome.error_code == "poll_internal" and BEARER not in outcome.error and "could not be sent" in outcome.error


def test_a_poll_outcome_never_shows_a_secret_in_its_repr() -> None:
    assert "hunter2" not in repr(Secret("hunter2")) and Secret("hunter2-very-secret").masked() == "<19 characters>"


async def test_a_refused_connection_on_a_closed_port_is_still_classified(db_path) -> None:
    async with world(db_path) as w:
        async with httpx.AsyncClient(base_url="http://127.0.0.1:1", timeout=2) as client:
            p = EazitaPoller(client, w["committer"], w["eazita"].reader, Redactor([KEY]), api_key=Secret(KEY),
                             password=Secret(PASSWORD))
            outcome = await p.poll_once()
    assert outcome.error_code == "poll_connect_error" and KEY not in outcome.error
