"""Issue 9, finding 1: 24,000 fuzzed bodies got 1,010 answers of 500 and no dead letter. The
rule, checked here on arbitrary bytes, content types, encodings and framings posted to the real
listener over loopback into a real SQLite file: a body the parser cannot accept is 400 and a
dead letter; a transfer that cannot be decoded is 400; a body over 64 KiB is 413; a well-formed
callback is 200 and stored; nothing is ever 5xx (the store is healthy here)."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsmon.bench.attack.rawhttp import exchange, request
from smsmon.ingest.committer import Committer
from smsmon.ingest.listener import Listener, ListenerConfig
from smsmon.providers import zeckta
from smsmon.timeutil import now_utc
from tests.helpers import callback, rows


class Served:
    """A real listener and committer on their own event loop in a thread, for synchronous
    property tests (hypothesis runs each example as a plain call)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.committer = Committer(db)
        self.committer.start()
        self.listener = Listener(self.committer, ListenerConfig(host="127.0.0.1", port=0))
        url = asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(10)
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def post(self, data: bytes):  # type: ignore[no-untyped-def]
        return asyncio.run(exchange(self.host, self.port, data, timeout=10))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop).result(20)
        self.committer.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    yield s
    s.close()


ODD_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-13-01T00:00:00Z", "2026-06-09",
             "2026-06-09T13:04:57.4871334829999Z", "2026-06-09T13:04:57+24:00", "\u0000", ""]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                                 max_size=4), max_leaves=12)


@st.composite
def callbacks(draw: st.DrawFn) -> dict[str, Any]:
    """Callbacks, well-formed or with a field of any kind (the parser must accept or refuse, never fail)."""
    body = callback(draw(st.sampled_from(["MESSAGE_SENT", "MESSAGE_DELIVERED", "MESSAGE_WHATEVER"])),
                    uuid=draw(st.text(min_size=1, max_size=40)), event_id=draw(st.text(min_size=1, max_size=40)),
                    dest=draw(st.one_of(st.text(max_size=20), st.from_regex(r"\+[0-9a-z ]{0,15}", fullmatch=True))))
    if draw(st.booleans()):
        where = draw(st.sampled_from(["eventId", "eventType", "timestamp", "message"]))
        body[where] = draw(st.one_of(json_values, st.sampled_from(ODD_TIMES)))
    if draw(st.booleans()):
        body["message"] = dict(body["message"]) if isinstance(body["message"], dict) else body["message"]
        if isinstance(body["message"], dict):
            body["message"][draw(st.sampled_from(["cost", "segments", "units", "src", "status"]))] = draw(json_values)
    return body


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["callback", "bytes", "mangled", "bad utf-8", "nested", "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "nested":
        depth = draw(st.integers(1, 20_000))
        return b'{"eventId": ' + b"[" * depth + b"]" * depth + b"}"
    raw = json.dumps(draw(callbacks()), ensure_ascii=draw(st.booleans())).encode()
    if kind == "mangled":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(max_size=4)) + raw[at + draw(st.integers(0, 4)):]
    if kind == "bad utf-8":
        return raw.replace(b'"eventId": "', b'"eventId": "' + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"])), 1)
    return raw


ENCODINGS = {  # name: (header, encode, decodes back to the body)
    "none": (None, lambda b: b, True),
    "gzip": ("gzip", gzip.compress, True),
    "deflate": ("deflate", zlib.compress, True),
    "gzip that is not": ("gzip", lambda b: b, False),
    "deflate that is not": ("deflate", lambda b: b, False),
    "gzip cut short": ("gzip", lambda b: gzip.compress(b)[:12], False),
    "br": ("br", lambda b: b, False),
    "unknown": ("x-unknown", lambda b: b, False),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies(), content_type=st.sampled_from([None, "application/json", "text/plain", "multipart/form-data; boundary=x",
                                                    "application/json; charset=utf-16"]),
       encoding=st.sampled_from(sorted(ENCODINGS)), chunked=st.booleans())
def test_any_body_is_200_and_stored_or_400_and_kept_or_413_never_5xx(served: Served, body: bytes, content_type: str | None,
                                                                       encoding: str, chunked: bool) -> None:
    header, encode, decodes = ENCODINGS[encoding]
    headers = {k: v for k, v in (("Content-Type", content_type), ("Content-Encoding", header)) if v}
    letters_before = rows(served.db, "SELECT count(*), coalesce(max(id), 0) FROM dead_letters")[0]

    answer = served.post(request("POST", "/callbacks/zeckta", encode(body), headers=headers, chunked=chunked))

    assert answer.status in (200, 400, 413), answer
    letters_after = rows(served.db, "SELECT count(*), coalesce(max(id), 0) FROM dead_letters")[0]
    try:
        said = json.loads(answer.body)
    except ValueError:
        said = {}  # aiohttp's own plain-text 400, for framing it could not parse
    if answer.status == 200:
        assert said["ok"] is True
        if not said["duplicate"]:
            sent = zeckta.parse_callback(body, received_at=now_utc())  # the message and key it must be stored under
            assert sent.event_key == said["eventId"]
            assert rows(served.db, "SELECT count(*) FROM events e JOIN messages m ON m.seq = e.message_seq"
                                   " WHERE m.id = ? AND e.event_key = ?", sent.message_id, sent.event_key) == [(1,)]
    if answer.status == 400 and said.get("code") in ("invalid_json", "invalid_payload"):
        assert letters_after[1] == letters_before[1] + 1  # kept as a dead letter, with its reason
        assert rows(served.db, "SELECT reason FROM dead_letters WHERE id = ?", letters_after[1])[0][0].startswith(said["code"])
    else:
        assert letters_after == letters_before  # nothing else leaves a dead letter
    if decodes and answer.status == 400:
        assert said.get("code") in ("invalid_json", "invalid_payload"), answer  # a readable body is judged by the parser


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cb=callbacks().filter(lambda c: isinstance(c.get("message"), dict)),
       encoding=st.sampled_from(["none", "gzip", "deflate"]), chunked=st.booleans())
def test_a_well_formed_callback_in_any_encoding_is_stored(served: Served, cb: dict[str, Any], encoding: str,
                                                          chunked: bool) -> None:
    cb = callback("MESSAGE_SENT", uuid=f"u-{cb['message'].get('uuid', 'x')!s:.30}", event_id=f"e-{cb['eventId']!s:.30}")
    header, encode, _ = ENCODINGS[encoding]
    answer = served.post(request("POST", "/callbacks/zeckta", encode(json.dumps(cb).encode()),
                                 headers={"Content-Encoding": header} if header else {}, chunked=chunked))
    assert answer.status == 200, answer
