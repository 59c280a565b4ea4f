"""Issue 15: what only PostgreSQL has. Two `smsmon serve` processes on one database taking the
same callbacks at the same moment; URLs and their passwords; a server that goes away and comes
back; the schema's versions; commits announced with NOTIFY. (The store, listener and read-side
suites run on PostgreSQL too, through conftest's `db` fixture.)"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from smsmon.cli import cli
from smsmon.database import PostgresUrl
from smsmon.providers import zeckta
from smsmon.sim.generate import traffic
from smsmon.store.backend import open_reader, open_writer
from smsmon.timeutil import UTC
from tests.conftest import TEST_DATABASE, schema_url
from tests.helpers import callback, connect, rows
from tests.test_serve import Serve

pytestmark = pytest.mark.postgres

# What the merge rule decides, whatever the order events arrive in (the flags that record the
# arrival order itself, such as late_event, are left out: they differ by design).
MERGED = ("id", "provider", "provider_message_id", "src", "dest", "status", "raw_status", "outcome", "is_final",
          "error_code", "network", "country_code", "segments", "units", "attempts", "cost", "reference", "first_event_at",
          "last_event_at", "final_at", "events_count", "duplicates_count", "status_at", "status_key", "attr_at",
          "deliver_seconds", "sent_at")
ORDER_FREE_FLAGS = {"unmapped", "clock_skew"}
TABLES = ("facet_counts", "agg_hour", "agg_day", "agg_latency_hour", "agg_latency_day")


def bodies(messages: int, seed: int) -> list[bytes]:
    """Zeckta callbacks of generated traffic (duplicates, out-of-order steps, unknown types among
    them), some sent twice by the provider itself."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    out = [json.dumps(a.payload).encode() for a in traffic(messages, seed=seed, now=now, days=0.5) if a.provider == "zeckta"]
    rng = random.Random(seed)
    out += rng.sample(out, len(out) // 20)  # Zeckta retrying some of them
    rng.shuffle(out)  # and out of order
    return out


def state(db: Any) -> dict[str, Any]:
    """Everything the merge rule and the counts decide, from any store."""
    conn = connect(db)
    try:
        messages = {}
        for r in conn.execute(f"SELECT {', '.join(MERGED)}, flags FROM messages"):
            flags = set((r["flags"] or "").split(",")) & ORDER_FREE_FLAGS
            messages[r["id"]] = (*tuple(r)[:-1], sorted(flags))
        events = Counter((r[0], r[1]) for r in conn.execute(
            "SELECT m.id, e.event_key FROM events e JOIN messages m ON m.seq = e.message_seq"))
        counts = {t: sorted(tuple(r) for r in conn.execute(f"SELECT * FROM {t} WHERE n != 0")) for t in TABLES}
        return {"messages": messages, "events": events, "counts": counts}
    finally:
        conn.close()


async def fire_at_both(urls: list[str], payloads: list[bytes]) -> dict[str, list[tuple[int, bool]]]:
    """Each body to every listener at the same moment (64 bodies at a time), retried on 503 as
    Zeckta would. Returns, per event id, each final answer's (status, duplicate)."""
    answers: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    gate = asyncio.Semaphore(64)

    async def one(session: aiohttp.ClientSession, url: str, body: bytes) -> None:
        for _ in range(50):
            async with session.post(url + "/callbacks/zeckta", data=body) as r:
                answer = await r.json(content_type=None)
            if r.status != 503:
                break
            await asyncio.sleep(0.05)
        answers[json.loads(body)["eventId"]].append((r.status, bool(answer.get("duplicate"))))

    async def both(session: aiohttp.ClientSession, body: bytes) -> None:
        async with gate:
            await asyncio.gather(*(one(session, url, body) for url in urls))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        await asyncio.gather(*(both(session, body) for body in payloads))
    return answers


def test_two_listeners_taking_the_same_callbacks_at_once_store_each_event_once_as_sqlite_would(pg_server, tmp_path) -> None:
    db = schema_url(pg_server)
    payloads = bodies(300, seed=15)
    first = Serve(db, "--listen", "127.0.0.1:0")
    url_a = first.url()
    second = Serve(db, "--listen", "127.0.0.1:0")  # the second finds the schema made: no race at start either
    url_b = second.url()
    try:
        answers = asyncio.run(fire_at_both([url_a, url_b], payloads))
    finally:
        for serve in (first, second):
            serve.proc.send_signal(signal.SIGTERM)
            assert serve.finish() == 0, serve.text
    # Every callback answered 200 by both, and each event stored by exactly one of them.
    assert all(status == 200 for got in answers.values() for status, _ in got)
    stored_once = Counter(sum(not dup for _, dup in got) for got in answers.values())
    distinct = {json.loads(b)["eventId"] for b in payloads}
    keys = {k for _, k in state(db)["events"]}
    assert set(answers) == distinct and keys <= distinct  # acknowledged only what is stored, stored only what came
    assert stored_once[0] + stored_once[1] == len(distinct) and not set(stored_once) - {0, 1}  # never twice
    assert stored_once[1] == len(keys)  # (a fingerprint twin under another id is a duplicate: stored 0 times)

    # The same callbacks, each twice, into SQLite: the same messages, events and counts.
    reference = tmp_path / "reference.db"
    with open_writer(reference) as w:
        for body in payloads:
            event = zeckta.parse_callback(body, received_at=datetime.now(UTC))
            w.apply([event, event])
    pg, lite = state(db), state(reference)
    assert pg["events"] == lite["events"] and max(pg["events"].values()) == 1
    assert pg["messages"] == lite["messages"]
    assert pg["counts"] == lite["counts"]
    assert len(pg["messages"]) > 100 and sum(m[MERGED.index("duplicates_count")] for m in pg["messages"].values()) > len(payloads)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"SMSMON_CONFIG": "", "SMSMON_DB": ""})


# ── the URL ───────────────────────────────────────────────────────────────────────
def test_a_url_is_never_taken_for_a_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = invoke("stats", "--db", "postgresql://nobody@127.0.0.1:1/nothing")  # nothing listens on port 1
    assert r.exit_code == 1 and r.stderr.startswith("error: PostgreSQL at postgresql://nobody@127.0.0.1:1/nothing unavailable")
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1
    for bad, why in (("mysql://u:hunter22@h/db", "is a URL smsmon cannot use"),
                     ("postgresql+psycopg://u:hunter22@h/db", "no driver suffix"),
                     ("postgres:hunter22@h/db", "two slashes after the colon")):
        r = invoke("stats", "--db", bad)
        assert r.exit_code == 2 and why in r.stderr and "hunter22" not in r.stderr, bad
    r = CliRunner().invoke(cli, ["stats"], env={"SMSMON_CONFIG": "", "SMSMON_DB": "mysql://u:hunter22@h/db"})
    assert r.exit_code == 1 and "db (env SMSMON_DB)" in r.stderr and "hunter22" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # no folder named postgresql:, no file


def test_a_password_is_never_shown(pg_server) -> None:
    from tests.pgserver import PASSWORD

    db = schema_url(pg_server, tcp=True)
    assert PASSWORD in db.reveal() and PASSWORD not in str(db) and "****" in str(db)
    wrong = db.reveal().replace(PASSWORD, "not-the-" + PASSWORD)
    r = invoke("stats", "--db", wrong)
    assert r.exit_code == 1 and "password authentication failed" in r.stderr and "smsmon_pw:****@" in r.stderr
    assert PASSWORD not in r.stderr
    shown = invoke("config", "--db", db.reveal())
    assert shown.exit_code == 0 and "smsmon_pw:****@" in shown.stdout and PASSWORD not in shown.stdout

    serve = Serve(db, "--listen", "127.0.0.1:0")
    url = serve.url()

    async def talk() -> dict:
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/callbacks/zeckta", data=json.dumps(callback(event_id="pw"))) as r:
                assert r.status == 200
            async with s.get(url + "/healthz") as r:
                return await r.json()

    health = asyncio.run(talk())
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.finish() == 0
    assert health["database"] == str(db) and health["events"] == 1
    assert PASSWORD not in serve.text and "smsmon_pw:****@" in serve.text


# ── a server that goes away ───────────────────────────────────────────────────────
def test_serve_answers_503_while_the_server_is_down_and_stores_again_once_it_is_back() -> None:
    from tests.pgserver import Server

    with Server() as server:
        db = PostgresUrl(server.create_database("restart"))
        serve = Serve(db, "--listen", "127.0.0.1:0", "--busy-timeout", "1")  # 503 after 1 s, not 5
        url = serve.url()

        async def scenario() -> list[int]:
            statuses = []
            async with aiohttp.ClientSession() as s:
                async def post(event_id: str) -> tuple[int, dict, Any]:
                    body = json.dumps(callback(uuid=event_id, event_id=event_id))
                    async with s.post(url + "/callbacks/zeckta", data=body) as r:
                        return r.status, await r.json(content_type=None), r.headers

                statuses.append((await post("before"))[0])
                await asyncio.to_thread(server.halt)  # an administrator restarts PostgreSQL
                status, answer, headers = await post("during")
                statuses.append(status)
                assert headers.get("Retry-After") and answer["ok"] is False
                async with s.get(url + "/healthz") as r:
                    assert (await r.json())["status"] == "degraded"
                await asyncio.to_thread(server.resume)
                deadline = asyncio.get_running_loop().time() + 30
                while (status := (await post("during"))[0]) != 200:  # Zeckta retrying
                    assert status == 503
                    assert asyncio.get_running_loop().time() < deadline, "still not storing 30 s after the server came back"
                    await asyncio.sleep(0.2)
                statuses.append(status)
                statuses.append((await post("after"))[0])
            return statuses

        assert asyncio.run(scenario()) == [200, 503, 200, 200]
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.finish() == 0 and "Traceback" not in serve.text
        assert sorted(r[0] for r in rows(db, "SELECT event_key FROM events")) == ["after", "before", "during"]


def test_a_read_only_server_is_read_but_never_written(pg_server) -> None:
    """A replica (here: a server that refuses writes): serve says so at once; the readers read it."""
    from tests.helpers import zevent

    db = schema_url(pg_server)
    with open_writer(db) as w:
        w.apply([zevent(uuid="seen")])
    read_only = db.reveal() + "%20-cdefault_transaction_read_only%3Don"
    serve = Serve(PostgresUrl(read_only), "--listen", "127.0.0.1:0")
    assert serve.finish() == 1 and "is read-only (a replica?)" in serve.text and "Traceback" not in serve.text
    r = invoke("stats", "--json", "--db", read_only)
    assert r.exit_code == 0 and json.loads(r.stdout)["messages"] == 1


# ── the schema ────────────────────────────────────────────────────────────────────
def test_the_schema_keeps_its_versions_and_refuses_what_it_must_not_write(pg_server) -> None:
    from smsmon.errors import NotSmsmonDatabase, SchemaTooNew
    from smsmon.store.pg.schema import SCHEMA_VERSION

    db = schema_url(pg_server)
    open_writer(db).close()
    open_writer(db).close()  # twice: nothing more to do
    assert [r[0] for r in rows(db, "SELECT version FROM schema_versions ORDER BY 1")] == list(range(1, SCHEMA_VERSION + 1))
    conn = connect(db)
    conn.execute("INSERT INTO schema_versions VALUES (99, 'later', 'from a newer smsmon')")
    conn.close()
    with pytest.raises(SchemaTooNew, match="schema version 99; this smsmon knows up to"):
        open_writer(db)
    with pytest.raises(SchemaTooNew):
        open_reader(db).open()

    other = schema_url(pg_server)
    conn = connect(other)
    conn.execute("CREATE TABLE invoices (id integer)")
    conn.close()
    with pytest.raises(NotSmsmonDatabase, match=r"holds other tables \(invoices\) and no smsmon schema"):
        open_writer(other)
    assert rows(other, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()") == [("invoices",)]
    with pytest.raises(NotSmsmonDatabase, match="not an smsmon database"):
        open_reader(schema_url(pg_server)).open()


def test_a_version_1_database_is_upgraded_with_its_data(pg_server) -> None:
    """Schema step 2 (the SQLite store's v5: meta, the outbox, dead letters' headers) on a
    database that holds data, as a PostgreSQL store of before issue 13 left it."""
    from tests.helpers import zevent

    db = schema_url(pg_server)
    with open_writer(db) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="m1", event_id="e1"), zevent(uuid="m1", event_id="e2")])
        w.dead_letter(received_at="2026-11-23T10:00:00.000000Z", remote="203.0.113.9", path="/callbacks/zeckta",
                      reason="invalid_json", body=b"{nope")
    before = state(db)
    conn = connect(db)
    for statement in ("DROP TABLE forward_outbox", "DROP TABLE meta", "ALTER TABLE dead_letters DROP COLUMN headers",
                      "ALTER TABLE dead_letters DROP COLUMN body_bytes", "ALTER TABLE dead_letters DROP COLUMN replayed_at",
                      "DROP TABLE agg_cost_hour", "DELETE FROM schema_versions WHERE version >= 2"):
        conn.execute(statement)
    conn.close()
    with open_reader(db) as r:  # a reader brings it up to date, as on SQLite
        assert r.stats(None).messages == 1
    assert [v for (v,) in rows(db, "SELECT version FROM schema_versions ORDER BY 1")] == [1, 2, 3]
    assert state(db) == before
    assert rows(db, "SELECT reason, body, headers, body_bytes FROM dead_letters") == [("invalid_json", "{nope", None, None)]
    with open_writer(db) as w:
        w.apply([zevent(uuid="m2", event_id="e3")], forward=["application/json"])
    assert rows(db, "SELECT message_id, content_type FROM forward_outbox") == [("zeckta:m2", "application/json")]


def test_a_version_2_database_gets_the_costs_its_writer_would_have_kept(pg_server) -> None:
    """Schema step 3 (the SQLite store's v6: agg_cost_hour) on a database that holds data: filled
    from the messages, the same rows the writer keeps (a cost rounded to millionths the same way)."""
    from smsmon.sim.generate import fill

    db = schema_url(pg_server)
    fill(db, messages=300, seed=12, days=2)
    kept = sorted(rows(db, "SELECT * FROM agg_cost_hour WHERE priced != 0"))
    assert sum(r[7] for r in kept) > 100
    conn = connect(db)
    for statement in ("DROP TABLE agg_cost_hour", "DELETE FROM schema_versions WHERE version = 3"):
        conn.execute(statement)
    conn.close()
    with open_reader(db) as r:  # a reader brings it up to date
        assert r.stats(None).messages == 300
    assert [v for (v,) in rows(db, "SELECT version FROM schema_versions ORDER BY 1")] == [1, 2, 3]
    assert sorted(rows(db, "SELECT * FROM agg_cost_hour")) == kept


def test_processes_starting_at_once_on_an_empty_database_build_the_schema_once(pg_server) -> None:
    from smsmon.store.pg.schema import SCHEMA_VERSION

    db = schema_url(pg_server)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            open_writer(db).close()
        except BaseException as exc:  # noqa: BLE001 -- collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert rows(db, "SELECT count(*) FROM schema_versions") == [(SCHEMA_VERSION,)]


def test_a_schema_being_upgraded_holds_up_only_its_own_writers_and_starting_holds_up_none(pg_server) -> None:
    """Every writer's transaction shares its schema's lock, which a migration takes alone (so
    that no batch lands between an upgrade and a writer's look at the version). The lock is the
    schema's: an upgrade of one schema of a database stalls no writer of another; and a process
    that opens an up-to-date schema (every serve, prune, import) takes it shared, so it neither
    waits for writers in the middle of a batch nor makes them wait."""
    from smsmon.errors import StoreUnavailable
    from smsmon.store.pg.connection import connect as pg_connect
    from smsmon.store.pg.schema import LOCK_SCHEMA, SCHEMA_LOCK, SHARE_SCHEMA
    from tests.helpers import zevent

    mine, other = schema_url(pg_server), schema_url(pg_server)
    with open_writer(mine, busy_timeout=1.0) as w_mine, open_writer(other, busy_timeout=0.3) as w_other:
        upgrading = pg_connect(other)  # a newer smsmon in the middle of upgrading the other schema
        try:
            upgrading.execute(LOCK_SCHEMA, (SCHEMA_LOCK,))
            w_mine.apply([zevent("MESSAGE_SENT", uuid="m1", event_id="e1")])
            with pytest.raises(StoreUnavailable, match="locked"):
                w_other.apply([zevent("MESSAGE_SENT", uuid="o1", event_id="o1")])
        finally:
            upgrading.rollback()
            upgrading.close()
    assert rows(mine, "SELECT event_key FROM events") == [("e1",)]
    assert rows(other, "SELECT count(*) FROM events") == [(0,)]

    batch = pg_connect(mine)  # a writer in the middle of a batch
    try:
        batch.execute(SHARE_SCHEMA, (SCHEMA_LOCK,))
        with open_writer(mine, busy_timeout=1.0) as w:  # starting: looks at the version, shares the lock
            w.apply([zevent("MESSAGE_DELIVERED", uuid="m1", event_id="e2")])
    finally:
        batch.rollback()
        batch.close()
    assert rows(mine, "SELECT count(*) FROM events") == [(2,)]


# ── commits announced ─────────────────────────────────────────────────────────────
def test_readers_hear_of_every_commit_from_the_server(pg_server) -> None:
    from tests.helpers import zevent

    db = schema_url(pg_server)
    writer = open_writer(db)
    heard: list[int] = []
    arrived = threading.Condition()

    def on_change(event_id: int) -> None:
        with arrived:
            heard.append(event_id)
            arrived.notify_all()

    with open_reader(db) as reader:
        stop = reader.listen(on_change)
        try:
            for n in (1, 2, 3):
                writer.apply([zevent(uuid=f"m{n}", event_id=f"e{n}")])
                with arrived:
                    assert arrived.wait_for(lambda: n in heard, timeout=10), heard
            writer.apply([zevent(uuid="m1", event_id="e1")])  # a duplicate: a commit all the same, the same watermark
            with arrived:
                assert arrived.wait_for(lambda: len(heard) == 4, timeout=10) and heard == [1, 2, 3, 3]
        finally:
            stop()
            writer.close()
    other = schema_url(pg_server)  # another smsmon schema of the same database hears nothing of these
    with open_writer(other) as w, open_reader(other) as r:
        quiet: list[int] = []

        def heard_here(event_id: int) -> None:
            with arrived:
                quiet.append(event_id)
                arrived.notify_all()

        stop = r.listen(heard_here)
        open_writer(db).apply([zevent(uuid="elsewhere")])
        w.apply([zevent(uuid="here")])
        with arrived:
            arrived.wait_for(lambda: quiet, timeout=10)
        stop()
        assert quiet == [1]


# ── smsmon migrate ────────────────────────────────────────────────────────────────
def everything(db: Any) -> dict[str, Any]:
    """`state` and the tables of record that state() leaves out."""
    out = state(db)
    out["dead_letters"] = rows(db, "SELECT id, received_at, remote, path, reason, body, size, headers, body_bytes,"
                                   " replayed_at FROM dead_letters ORDER BY id")
    out["outbox"] = rows(db, "SELECT event_id, message_id, created_at, content_type, attempts, next_at, last_error"
                             " FROM forward_outbox ORDER BY event_id")
    out["meta"] = rows(db, "SELECT key, value FROM meta ORDER BY key")
    out["poll_runs"] = rows(db, "SELECT id, provider, new_events, error FROM poll_runs ORDER BY id")
    out["events_minute"] = rows(db, "SELECT minute, n FROM events_minute ORDER BY 1")
    return out


def as_stored_in_postgresql(value: Any) -> Any:
    """SQLite's values as PostgreSQL reads them back: a NUL character is U+2400 there."""
    if isinstance(value, str):
        return value.replace("\x00", "\u2400")
    if isinstance(value, Counter):
        return Counter({as_stored_in_postgresql(k): n for k, n in value.items()})
    if isinstance(value, dict):
        return {as_stored_in_postgresql(k): as_stored_in_postgresql(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(as_stored_in_postgresql(v) for v in value)
    return value


def source_db(path: Any) -> Any:
    from smsmon.sim.generate import fill
    from tests.helpers import zevent

    fill(path, messages=400, seed=3, days=2)
    with open_writer(path) as w:
        w.apply([zevent(uuid="nul\x00id", event_id="x"), zevent(uuid="relayed", event_id="r1")],
                forward=[None, "application/json"])  # one waits in the outbox
        for i in range(3):  # a NUL, and a body that is not UTF-8, kept exactly
            w.dead_letter(received_at="2026-11-23T10:00:00.000000Z", remote="127.0.0.1", path="/callbacks/zeckta",
                          reason=f"invalid_json: {i}", body=b"{not json " + bytes([i, 0xE9 * (i == 2)]),
                          headers=json.dumps({"Content-Type": "application/json"}) if i else None)
        w.record_poll_run(provider="eazita", started_at="s", finished_at="f", ok=1, http_status=200, rows_seen=3, new_events=3)
    return path


def test_migrate_copies_everything_and_again_only_what_came_since(pg_server, tmp_path) -> None:
    from tests.helpers import zevent

    source, target = source_db(tmp_path / "source.db"), schema_url(pg_server)
    r = invoke("migrate", "--from", str(source), "--to", target.reveal())
    assert r.exit_code == 0, r.stderr
    assert "events: " in r.stderr and "(100%)" in r.stderr and "copied 402 messages" in r.stderr
    want, got = as_stored_in_postgresql(everything(source)), everything(target)
    assert got == want

    assert len(got["dead_letters"]) == 3 and got["dead_letters"][2][8] == b"{not json \x02\xe9" and len(got["outbox"]) == 1
    again = invoke("migrate", "--from", str(source), "--to", target.reveal())
    assert again.exit_code == 0 and "(0 this run" in again.stderr
    assert everything(target) == got

    from datetime import datetime

    from smsmon.store import deadletters, outbox

    with open_writer(source) as w:  # on the file meanwhile: a dead letter replayed, another tried; the outbox relayed
        w.run(lambda w: deadletters.resolve(w, [1], [(2, "invalid_json: again")], datetime(2026, 11, 24, tzinfo=UTC)))
        w.run(lambda w: outbox.settle(w, [outbox.Attempt(got["outbox"][0][0], True, "2026-11-24T00:00:00Z")]))
    assert invoke("migrate", "--from", str(source), "--to", target.reveal()).exit_code == 0
    assert everything(target) == as_stored_in_postgresql(everything(source))
    assert [r[0] for r in everything(target)["dead_letters"]] == [2, 3] and everything(target)["outbox"] == []

    with open_writer(source) as w:  # the file goes on getting callbacks until the switch
        w.apply([zevent(uuid="late", event_id="late-1")])
    assert invoke("migrate", "--from", str(source), "--to", target.reveal()).exit_code == 0
    assert rows(target, "SELECT status FROM messages WHERE id = 'zeckta:late'") == [("DELIVERED",)]
    assert everything(target)["counts"] == everything(source)["counts"]

    with open_writer(target) as w:  # the switch: serve now writes PostgreSQL, ids go on from the copy's
        [applied] = w.apply([zevent(uuid="after-the-switch")])
    assert applied.event_id == rows(source, "SELECT max(id) FROM events")[0][0] + 1
    refused = invoke("migrate", "--from", str(source), "--to", target.reveal())
    assert refused.exit_code == 1 and "1 events written since it was copied" in refused.stderr
    assert json.loads(invoke("show", "late-1", "--json", "--db", target.reveal()).stdout)["message"]["id"] == "zeckta:late"


def test_an_interrupted_migrate_goes_on_where_it_stopped(pg_server, tmp_path, monkeypatch) -> None:
    from smsmon.store.pg import copy

    source, target = source_db(tmp_path / "source.db"), schema_url(pg_server)
    monkeypatch.setattr(copy, "BATCH", 100)
    real, calls = copy._copy, []

    def interrupted(pg: Any, table: str, columns: list, batch: list) -> None:
        if table == "events" and len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl+C in the fifth batch of events
        calls.append(table) if table == "events" else None
        real(pg, table, columns, batch)

    monkeypatch.setattr(copy, "_copy", interrupted)
    r = invoke("migrate", "--from", str(source), "--to", target.reveal())
    assert r.exit_code == 130 and "interrupted: what was copied stays" in r.stderr
    assert rows(target, "SELECT count(*) FROM events") == [(400,)]  # four whole batches, not part of the fifth
    assert rows(target, "SELECT finished_at FROM copied_from") == [(None,)]
    monkeypatch.setattr(copy, "_copy", real)
    r = invoke("migrate", "--from", str(source), "--to", target.reveal())
    assert r.exit_code == 0 and "resumed after event 400" in r.stderr
    assert everything(target)["counts"] == everything(source)["counts"]
    assert rows(target, "SELECT count(*) FROM events") == rows(source, "SELECT count(*) FROM events")


def test_migrate_refuses_a_target_with_data_of_its_own(pg_server, tmp_path) -> None:
    from tests.helpers import zevent

    source, target = source_db(tmp_path / "source.db"), schema_url(pg_server)
    with open_writer(target) as w:
        w.apply([zevent(uuid="someone-elses")])
    r = invoke("migrate", "--from", str(source), "--to", target.reveal())
    assert r.exit_code == 1 and "already holds 1 events that did not come from" in r.stderr
    assert rows(target, "SELECT count(*) FROM messages") == [(1,)]
    r = invoke("migrate", "--from", str(source), "--to", str(tmp_path / "other.db"))
    assert r.exit_code == 2 and "give a postgresql:// URL" in r.stderr


# ── a replica ─────────────────────────────────────────────────────────────────────
async def test_on_a_replica_serve_is_refused_and_the_app_follows_the_primary() -> None:
    """The deployment picture: the listeners write the primary, people browse a replica."""
    import time

    from smsmon.ui.app import SmsmonApp
    from tests.helpers import zevent
    from tests.pgserver import Server
    from tests.test_app import SIZE, table, until

    with Server() as primary:
        db = PostgresUrl(primary.create_database("live"))
        with open_writer(db) as w:
            w.apply([zevent(uuid="first")])
        replica = primary.replica()
        try:
            on_replica = PostgresUrl(replica.url("live"))
            deadline = time.monotonic() + 20
            while True:  # streaming replication: the replica catches up within moments
                try:
                    if rows(on_replica, "SELECT count(*) FROM messages") == [(1,)]:
                        break
                except Exception:  # noqa: BLE001 -- not there yet (the database itself may still be on its way)
                    pass
                assert time.monotonic() < deadline, "the replica did not catch up"
                await asyncio.sleep(0.1)
            serve = Serve(on_replica, "--listen", "127.0.0.1:0")
            assert serve.finish() == 1 and "read-only (a replica?)" in serve.text
            with open_reader(on_replica) as r:
                assert r.listen(lambda n: None) is None  # a replica cannot LISTEN: the app looks every second
            app = SmsmonApp(on_replica)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: table(app).row_count == 1)
                with open_writer(db) as w:  # a listener commits on the primary
                    w.apply([zevent(uuid="second")])
                await until(pilot, lambda: table(app).row_count == 2, timeout=20)
        finally:
            replica.stop()
