"""The fuzz attack on the listener: bodies, content types, encodings and framings an attacker or
a broken sender would send, on keep-alive connections. The rules: no 5xx (the store is healthy,
so a 5xx is a bug), every well-formed callback accepted, every new event acknowledged stored,
every body the parser refused (400 invalid_json / invalid_payload) kept as a dead letter."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
import zlib
from collections import Counter
from typing import Any, Callable

from smsmon.bench.attack import Result
from smsmon.bench.attack.rawhttp import Connection, request
from smsmon.bench.attack.target import Target, callback, identity, snapshot, unstored

AREA = "listener"


def _dumps(obj: Any, rng: random.Random) -> bytes:
    return json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode()


ODD_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999999Z", "2026-13-45T99:99:99Z",
             "+275760-09-13T00:00:00Z", "2026-06-09", "", " ", "now", "2026-06-09T13:04:57.4871334829999999999Z",
             "2026-06-09T13:04:57+24:00", "2026-06-09T13:04:57-99:99", "２０２６-06-09T13:04:57Z", "2026-06-09T13:04:57\u0000Z"]
ODD_VALUES: list[Any] = [None, True, 0, -1, 2**64, 1e308, -1e-308, "", [], {}, [1, [2, [3]]], {"a": {"b": None}}, "x" * 5000,
                         "🙂", "\u202etxt", "a\u0000b", "\\", '"', 1.5]
CONTENT_TYPES = ["application/json", None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "application/json; charset=utf-16", "application/json; charset=latin-1", "*/*", "image/png", "application/json;;;"]


def fuzz_body(rng: random.Random) -> tuple[str, bytes, bool | None]:
    """A body, its kind, and True if it is a well-formed callback (then it must be accepted)."""
    valid = _dumps(callback(rng), rng)
    kind = rng.choices(["valid", "unicode", "truncated", "mutated", "bad utf-8", "timestamp", "types", "nested", "bytes",
                        "json", "numbers", "empty", "big", "oversize"],
                       [25, 5, 10, 15, 5, 10, 6, 3, 10, 5, 2, 2, 1, 1])[0]
    if kind == "valid":
        return kind, valid, True
    if kind == "unicode":
        odd = rng.choice(["🙂", "\u202e", "e\u0301", "\u0000", "\ufeff", "ｆｕｌｌ", "\U0010fffd", "\\n"])
        cb = callback(rng, eventId=f"fz-{odd}-{rng.getrandbits(32):08x}")
        cb["message"]["src"] = odd * rng.randrange(1, 50)
        return kind, _dumps(cb, rng), True
    if kind == "truncated":
        return kind, valid[: rng.randrange(len(valid))], None
    if kind == "mutated":
        b = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(b))
            op = rng.random()
            if op < 0.4:
                b[i] = rng.randrange(256)
            elif op < 0.7:
                b[i:i] = bytes([rng.randrange(256)])
            else:
                del b[i]
        return kind, bytes(b), None
    if kind == "bad utf-8":
        bad = rng.choice([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
        return kind, valid.replace(b'"fz-', b'"fz-' + bad, 1), None
    if kind == "timestamp":
        return kind, _dumps(callback(rng, timestamp=rng.choice(ODD_TIMES + ODD_VALUES)), rng), None
    if kind == "types":
        cb = callback(rng)
        where = rng.choice(["eventId", "eventType", "timestamp", "message", "uuid", "src", "cost"])
        if where in ("uuid", "src", "cost"):
            cb["message"][where] = rng.choice(ODD_VALUES)
        else:
            cb[where] = rng.choice(ODD_VALUES)
        return kind, _dumps(cb, rng), None
    if kind == "nested":
        depth = rng.choice([10, 100, 1000, 10_000, 30_000])
        return kind, b'{"eventId": ' + b"[" * depth + b"]" * depth + b"}", None
    if kind == "bytes":
        return kind, rng.randbytes(rng.randrange(1, 4096)), None
    if kind == "json":
        return kind, _dumps(rng.choice(ODD_VALUES), rng), None
    if kind == "numbers":
        return kind, valid.replace(b"0.0025", rng.choice([b"1e999999", b"NaN", b"-Infinity", b"1" * 5000, b"0x10", b"-"])), None
    if kind == "empty":
        return kind, rng.choice([b"", b" ", b"\r\n\t "]), None
    if kind == "big":
        return kind, _dumps(callback(rng, padding="p" * rng.randrange(40_000, 65_000)), rng), None
    return kind, _dumps(callback(rng, padding="p" * rng.randrange(66_000, 200_000)), rng), None


def fuzz_encoding(rng: random.Random, body: bytes) -> tuple[str, dict[str, str], bytes, bool | None]:
    """A Content-Encoding (or none) applied to a body; True if it decodes back to the body."""
    name = rng.choices(["none", "gzip", "deflate", "gzip (not)", "deflate (not)", "br", "zstd", "x-custom", "identity",
                        "gzip (cut)"], [70, 6, 4, 5, 3, 2, 2, 2, 2, 2])[0]
    if name == "none":
        return name, {}, body, True
    if name == "gzip":
        return name, {"Content-Encoding": "gzip"}, gzip.compress(body), True
    if name == "deflate":
        return name, {"Content-Encoding": "deflate"}, zlib.compress(body), True
    if name == "identity":
        return name, {"Content-Encoding": "identity"}, body, True
    if name == "gzip (cut)":
        packed = gzip.compress(body)
        return name, {"Content-Encoding": "gzip"}, packed[: max(1, len(packed) // 2)], False
    return name, {"Content-Encoding": name.split(" ")[0]}, body, None


async def fuzz(t: Target, n: int, seed: int, say: Callable[[str], None]) -> Result:
    rng = random.Random(seed)
    start_letter = snapshot(t.db)[1]
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    refused_valid: list[str] = []
    broke: list[str] = []
    new: list[tuple[str, str]] = []  # (message id, event key) of each new event acknowledged
    app_400 = duplicates = 0
    jobs = iter(range(n))
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal app_400, duplicates
        conn = Connection(t.host, t.port)
        for _ in jobs:
            kind, body, valid = fuzz_body(rng)
            enc, headers, payload, decodes = fuzz_encoding(rng, body)
            ctype = rng.choice(CONTENT_TYPES)
            if ctype:
                headers["Content-Type"] = ctype
            a = await conn.send(request("POST", t.path, payload, headers=headers, chunked=rng.random() < 0.15))
            what = f"{kind} body, {enc} encoding, {ctype or 'no'} content type"
            kinds[kind] += 1
            code = ""
            if a.status in (200, 400):
                try:
                    answer = json.loads(a.body)
                    code = answer.get("code", "") if a.status == 400 else ""
                except ValueError:
                    answer = {}  # aiohttp's own plain-text 400 for a request it cannot parse
                if a.status == 200:
                    duplicates += answer.get("duplicate") is True
                    if answer.get("duplicate") is False:
                        new.append(identity(body))
                if code in ("invalid_json", "invalid_payload"):
                    app_400 += 1
            statuses[f"{a.status or 'no answer'}{' ' + code if code else ''}"] += 1
            if a.status == 0 or a.status >= 500 or a.status not in (200, 400, 413):
                broke.append(f"{a.status or a.error} to a {what}")
            if valid and decodes and a.status != 200:
                refused_valid.append(f"{a.status} to a {what}")
        conn.close()

    await asyncio.gather(*(worker() for _ in range(8)))
    seconds = time.perf_counter() - started
    lost = unstored(t.db, new)
    letters = snapshot(t.db)[1] - start_letter
    ok = not broke and not refused_valid and not lost and letters == app_400
    say(f"    fuzz: {n:,} requests in {seconds:.1f} s")
    shown = ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items()))
    problems = "; ".join(x for x in [
        f"{len(broke)} answers outside 200/400/413 (e.g. {broke[0]})" if broke else "",
        f"{len(refused_valid)} well-formed callbacks refused (e.g. {refused_valid[0]})" if refused_valid else "",
        f"{len(lost)} acknowledged events not stored" if lost else "",
        f"{app_400:,} bodies refused but {letters:,} dead letters" if letters != app_400 else ""] if x)
    return Result(AREA, f"fuzz: {n:,} bodies (random bytes, truncated and mutated callbacks, invalid UTF-8, odd timestamps, "
                        "wrong types, deep nesting, over 64 KiB) in 10 content types and 10 encodings, 15% chunked",
                  (problems + ". " if problems else "") +
                  f"answers {shown}; {len(new):,} new events all stored, {duplicates:,} duplicates; "
                  f"{app_400:,} parser refusals = {letters:,} dead letters",
                  ok, {"requests": n, "seconds": round(seconds, 1), "statuses": dict(statuses), "kinds": dict(kinds),
                       "new_events": len(new), "stored": len(new) - len(lost), "duplicates": duplicates,
                       "parser_400": app_400, "dead_letters": letters, "broke": broke[:20], "refused_valid": refused_valid[:20]})
