"""SPEC §6 and the one writer: schema, migrations, merge in SQL, duplicates, bounds, failures.
Every test that takes `db` or `writer` runs on SQLite and on PostgreSQL (conftest.BACKENDS)."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings

from smsmon.errors import SchemaTooNew, StoreError, StoreUnavailable
from smsmon.lifecycle import Flag, Status, fold
from smsmon.sim.generate import generate_events
from smsmon.store import aggregates, schema
from smsmon.store.schema import STORED_FLAGS, connect, migrate, open_readonly
from smsmon.database import PostgresUrl
from smsmon.store.backend import open_writer
from smsmon.store.writer import FACETS, Writer
from tests.helpers import NOW, connect as connect_to, eevent, lock_out_writers, message_events, nul, rows, upgrade_under, zevent


def test_schema_tables_indexes_and_pragmas(db_path) -> None:
    writer = Writer(db_path)
    conn = writer.conn
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"messages", "events", "dead_letters", "poll_runs", "facet_counts"} <= tables
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_events_seq", "ix_messages_time", "ix_messages_status", "ix_messages_dest", "ix_messages_error",
            "ix_messages_open"} <= indexes
    assert {"agg_hour", "agg_day", "agg_latency_hour", "agg_latency_day", "payload_dicts", "event_key_blocks"} <= tables
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental: prune can give space back
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert schema.version(conn) == schema.SCHEMA_VERSION
    writer.close()


def test_stored_flags_are_the_lifecycle_flags_that_are_stored() -> None:
    assert set(STORED_FLAGS) == {f.value for f in Flag} - {"stale"}


def test_migrating_twice_is_harmless_and_newer_schemas_are_refused(db_path) -> None:
    Writer(db_path).close()
    conn = connect(db_path)
    assert migrate(conn) == schema.SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade smsmon"):
        Writer(db_path)
    with pytest.raises(SchemaTooNew):
        open_readonly(db_path)


def test_foreign_files_are_refused_not_damaged(tmp_path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("hello, not a database at all" * 100)
    with pytest.raises(StoreError, match="not an smsmon database"):
        Writer(text)
    assert text.read_text().startswith("hello")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE messages (x)").connection.commit()
    with pytest.raises(StoreError, match="not an smsmon database"):
        Writer(other)
    with pytest.raises(StoreError, match="no database at"):
        open_readonly(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_a_batch_is_merged_and_stored(writer, db) -> None:
    t0 = NOW - timedelta(minutes=10)
    applied = writer.apply([zevent("MESSAGE_DELIVERED", event_id="d", at=t0 + timedelta(seconds=9), cost=0.02),
                            zevent("MESSAGE_SUBMITTED", event_id="s", at=t0),
                            zevent("MESSAGE_SENT", event_id="x", at=t0 + timedelta(seconds=2))])
    assert [a.duplicate for a in applied] == [False, False, False]
    assert [a.event_id for a in applied] == [1, 2, 3]
    conn = connect_to(db)
    m = dict(conn.execute("SELECT * FROM messages").fetchone())
    conn.close()
    assert (m["status"], m["outcome"], m["is_final"], m["cost"], m["dest"]) == ("DELIVERED", "DELIVERED", 1, 0.02, "+233241234567")
    assert m["events_count"] == 3 and m["duplicates_count"] == 0
    assert m["flags"] == "late_event"  # SUBMITTED and SENT arrived after the final
    assert m["deliver_seconds"] == pytest.approx(9.0)
    assert m["first_event_at"] < m["final_at"] == m["last_event_at"]
    events = rows(db, "SELECT event_key, status, flags FROM events ORDER BY event_time")
    assert events == [("s", "SUBMITTED", "late_event"), ("x", "SENT", "late_event"), ("d", "DELIVERED", None)]


def test_duplicates_are_acknowledged_counted_and_change_nothing(writer, db) -> None:
    ev = zevent("MESSAGE_SENT", event_id="e1")
    twin = zevent("MESSAGE_SENT", event_id="e2", at=ev.event_time)  # same fingerprint, another id
    first = writer.apply([ev, ev])
    later = writer.apply([ev, twin])
    assert [a.duplicate for a in first + later] == [False, True, True, True]
    assert rows(db, "SELECT count(*) FROM events") == [(1,)]
    assert rows(db, "SELECT events_count, duplicates_count, status FROM messages") == [(1, 3, "SENT")]


def test_regressions_unknowns_and_conflicts_are_flagged_in_the_database(writer, db) -> None:
    t0 = NOW - timedelta(minutes=10)
    writer.apply([zevent("MESSAGE_SENT", uuid="a", at=t0 + timedelta(seconds=5))])
    writer.apply([zevent("MESSAGE_SUBMITTED", uuid="a", at=t0)])
    writer.apply([zevent("MESSAGE_READ", uuid="b", at=t0), zevent("MESSAGE_DELIVERED", uuid="c", at=t0)])
    writer.apply([zevent("MESSAGE_FAILED", uuid="c", at=t0 + timedelta(seconds=1))])
    got = dict(rows(db, "SELECT id, status || ' ' || coalesce(flags, '') FROM messages"))
    assert got == {"zeckta:a": "SENT regression_ignored", "zeckta:b": "UNKNOWN unmapped", "zeckta:c": "FAILED terminal_conflict"}


def test_eazita_late_dlr_in_the_database(writer, db) -> None:
    writer.apply([eevent("EXPIRED", sent="2026/11/23 10:00:00", done="2026/11/23 14:00:00")])
    writer.apply([eevent("DELIVERED", sent="2026/11/23 10:00:00", done="2026/11/23 16:00:00")])
    assert rows(db, "SELECT status, outcome, flags FROM messages") == [("DELIVERED", "DELIVERED", "late_dlr")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message_events())
def test_the_writer_agrees_with_the_pure_merge_in_any_order_and_batching(make_db, events) -> None:
    """Real databases: events applied in shuffled order and random batches end in the same row as fold()."""
    expected = fold(events)
    rnd = random.Random(len(events))
    shuffled = events[:]
    rnd.shuffle(shuffled)
    db = make_db()
    with open_writer(db) as w:
        i = 0
        while i < len(shuffled):
            n = rnd.randint(1, 3)
            w.apply(shuffled[i : i + n])
            i += n
        w.apply(events[:1])  # a replay
    [m] = rows(db, "SELECT status, error_code, first_event_at, last_event_at, events_count, duplicates_count,"
                   " network, cost, sent_at, deliver_seconds FROM messages")
    assert m == (expected.status.value, expected.error_code, expected.first_event_at, expected.last_event_at,
                 expected.events_count, expected.duplicates_count + 1, expected.attrs.get("network"), expected.attrs.get("cost"),
                 expected.sent_at, expected.deliver_seconds)


def test_maintained_counts_match_the_table(writer, db) -> None:
    events = list(generate_events(400, seed=3, now=NOW, days=2))
    for i in range(0, len(events), 97):
        writer.apply(events[i : i + 97])
    conn = connect_to(db)
    columns = {"status": "status", "outcome": "outcome", "provider": "provider", "error_code": "coalesce(error_code, '')",
               "network": "coalesce(network, '')", "country_code": "coalesce(country_code, '')"}
    for dim, expr in columns.items():
        maintained = dict(rows(conn, "SELECT value, n FROM facet_counts WHERE dim = ? AND n != 0", dim))
        actual = dict(rows(conn, f"SELECT {expr}, count(*) FROM messages GROUP BY 1"))
        assert maintained == actual, dim
    failed = dict(rows(conn, "SELECT provider || ':' || coalesce(error_code, ''), count(*) FROM messages"
                             " WHERE outcome = 'NOT_DELIVERED' GROUP BY 1"))
    assert dict(rows(conn, "SELECT value, n FROM facet_counts WHERE dim = 'fail_code' AND n != 0")) == failed
    failed_status = dict(rows(conn, "SELECT provider || ':' || raw_status, count(*) FROM messages"
                                    " WHERE outcome = 'NOT_DELIVERED' GROUP BY 1"))
    assert dict(rows(conn, "SELECT value, n FROM facet_counts WHERE dim = 'fail_status' AND n != 0")) == failed_status
    assert set(FACETS) == {r[0] for r in conn.execute("SELECT DISTINCT dim FROM facet_counts")}
    # The aggregates the writer maintained, batch by batch, equal the ones counted from the rows.
    tables = ("agg_hour", "agg_day", "agg_latency_hour", "agg_latency_day")
    maintained = {t: set(rows(conn, f"SELECT * FROM {t} WHERE n != 0")) for t in tables}
    assert maintained == counted_aggregates(conn)
    assert sum(n for (n,) in rows(conn, "SELECT n FROM agg_day")) == len(rows(conn, "SELECT id FROM messages"))
    conn.close()


def counted_aggregates(conn) -> dict[str, set[tuple]]:
    """The four aggregate tables as counted from the messages themselves (what aggregates.rebuild does)."""
    out: dict[str, Counter] = {t: Counter() for t in ("agg_hour", "agg_day", "agg_latency_hour", "agg_latency_day")}
    events: Counter = Counter()
    for last, p, raw, code, net, country, n_events, seconds in conn.execute(
            "SELECT last_event_at, provider, raw_status, error_code, network, country_code, events_count, deliver_seconds"
            " FROM messages"):
        dims = (p, raw or "", code or "", net or "", country or "")
        for table, span in (("agg_hour", last[:13]), ("agg_day", last[:10])):
            out[table][(span, *dims)] += 1
            events[(table, span, *dims)] += n_events
        if seconds is not None:
            for table, span in (("agg_latency_hour", last[:13]), ("agg_latency_day", last[:10])):
                out[table][(span, p, *dims[2:], aggregates.bucket(seconds))] += 1
    return {t: {(*k, n, events[(t, *k)]) if t in ("agg_hour", "agg_day") else (*k, n) for k, n in c.items()}
            for t, c in out.items()}


def test_rebuilding_the_aggregates_in_sqlite_gives_what_the_writer_kept(db_path) -> None:
    with Writer(db_path) as writer:
        events = list(generate_events(400, seed=3, now=NOW, days=2))
        for i in range(0, len(events), 97):
            writer.apply(events[i : i + 97])
        conn = writer.conn
        tables = ("agg_hour", "agg_day", "agg_latency_hour", "agg_latency_day")
        maintained = {t: set(rows(conn, f"SELECT * FROM {t} WHERE n != 0")) for t in tables}
        aggregates.rebuild(conn)
        assert maintained == {t: set(rows(conn, f"SELECT * FROM {t}")) for t in tables} == counted_aggregates(conn)


def test_generated_traffic_has_everything_a_real_database_has(writer, db) -> None:
    events = list(generate_events(2000, seed=11, now=NOW, days=3))
    applied = []
    for i in range(0, len(events), 500):
        applied += writer.apply(events[i : i + 500])
    conn = connect_to(db)
    statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM messages")}
    assert {"DELIVERED", "FAILED", "UNDELIVERABLE", "REJECTED", "EXPIRED", "UNCONFIRMED", "SENT"} <= statuses
    raw = {r[0] for r in conn.execute("SELECT DISTINCT e.raw_status FROM events e JOIN messages m ON m.seq = e.message_seq"
                                      " WHERE m.provider = 'eazita'")}
    assert raw == {"SUBMIT", "PENDING", "SENT", "EXPIRED", "DELIVERED", "REJECTED", "NOT_ALLOWED", "NOT_DELIVERED", "FAILED"}
    flags = Counter(f for (fs,) in conn.execute("SELECT flags FROM messages WHERE flags IS NOT NULL") for f in fs.split(","))
    assert {"late_event", "late_dlr", "unmapped", "terminal_conflict", "regression_ignored"} <= set(flags)
    assert any(a.duplicate for a in applied)
    assert {"8", "101", "102"} <= {r[0] for r in conn.execute("SELECT DISTINCT error_code FROM messages")}
    assert len({r[0] for r in conn.execute("SELECT DISTINCT network FROM messages WHERE network IS NOT NULL")}) >= 4
    assert conn.execute("SELECT count(*) FROM messages WHERE is_final = 0").fetchone()[0] > 0
    conn.close()


def test_generation_is_deterministic_with_a_seed() -> None:
    a = [(e.event_key, e.raw_status) for e in generate_events(200, seed=5, now=NOW)]
    b = [(e.event_key, e.raw_status) for e in generate_events(200, seed=5, now=NOW)]
    c = [(e.event_key, e.raw_status) for e in generate_events(200, seed=6, now=NOW)]
    assert a == b != c


def test_dead_letters_are_kept_bounded(db) -> None:
    with open_writer(db, dead_letter_limit=5) as w:
        for i in range(12):
            w.dead_letter(received_at="2026-11-23T10:00:00.000000Z", remote="127.0.0.1", path="/callbacks/zeckta",
                          reason=f"invalid JSON {i}", body=b"x" * (70 * 1024))
    kept = rows(db, "SELECT reason, length(body) FROM dead_letters ORDER BY id")
    assert [r[0] for r in kept] == [f"invalid JSON {i}" for i in range(7, 12)]
    assert {r[1] for r in kept} == {64 * 1024}


def test_poll_runs_are_recorded_and_bounded(db) -> None:
    with open_writer(db, poll_run_limit=3) as w:
        for i in range(5):
            w.record_poll_run(provider="eazita", started_at="s", finished_at="f", ok=0, http_status=200, api_code="-2",
                              rows_seen=0, new_events=i, error_code="poll_api_error", error="eazita API error -2")
    assert [r[0] for r in rows(db, "SELECT new_events FROM poll_runs ORDER BY id")] == [2, 3, 4]


def test_a_locked_database_is_unavailable_commits_nothing_and_recovers(db) -> None:
    w = open_writer(db, busy_timeout=0.2)
    blocker = lock_out_writers(db)
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            w.apply([zevent()])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert rows(db, "SELECT count(*) FROM events") == [(0,)]
    assert not w.apply([zevent()])[0].duplicate
    assert rows(db, "SELECT count(*) FROM events") == [(1,)]
    w.close()


def test_a_failure_mid_batch_rolls_the_whole_batch_back(writer, db) -> None:
    writer.apply([zevent(uuid="kept")])
    conn = connect_to(db)
    if isinstance(db, PostgresUrl):
        conn.execute("CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$"
                     " BEGIN RAISE EXCEPTION 'disk I/O error'; END $$")
        conn.execute("CREATE TRIGGER boom BEFORE INSERT ON events FOR EACH ROW WHEN (NEW.event_key = 'bad')"
                     " EXECUTE FUNCTION boom()")
    else:
        conn.execute("CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.event_key = 'bad'"
                     " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    conn.close()
    with pytest.raises(StoreError, match="disk I/O error"):
        writer.apply([zevent(uuid="new"), zevent(uuid="new2", event_id="bad")])
    assert rows(db, "SELECT id FROM messages") == [("zeckta:kept",)]
    assert rows(db, "SELECT sum(n) FROM facet_counts WHERE dim = 'provider'") == [(1,)]
    assert not writer.apply([zevent(uuid="new")])[0].duplicate  # and the writer goes on


def test_status_values_in_the_database_are_normalized_names(writer, db) -> None:
    writer.apply(list(generate_events(100, seed=2, now=NOW)))
    assert {r[0] for r in rows(db, "SELECT DISTINCT status FROM events")} <= {s.value for s in Status}


def test_an_id_with_a_nul_byte_is_one_message(writer, db) -> None:
    """SQLite's text functions stop at a NUL: the writer must not find messages through them
    (found by `smsmon bench attack`'s fuzz: a second event got 503 forever). PostgreSQL's text
    cannot hold a NUL at all: it is stored as U+2400, the same way every time."""
    writer.apply([zevent("MESSAGE_SENT", uuid="a\x00b", event_id="1")])
    writer.apply([zevent("MESSAGE_DELIVERED", uuid="a\x00b", event_id="2")])
    assert rows(db, "SELECT provider_message_id, status, events_count FROM messages") == [(f"a{nul(db)}b", "DELIVERED", 2)]


def test_the_writer_holds_the_collector_off_for_a_batch_and_leaves_it_as_it_found_it(tmp_path, monkeypatch) -> None:
    """Serve runs for months: a batch that left Python's cyclic collector off would leak every
    reference cycle from then on. It is off while a batch is merged, and as it was after, also
    when the batch fails, and stays off for an app that has not turned it on yet."""
    import gc

    from smsmon.store import writer as writer_module

    seen: list[bool] = []
    merge = writer_module.apply

    def spying_apply(state, event):  # the merge rule, noting the collector's state as it runs
        seen.append(gc.isenabled())
        if event.event_key == "boom":
            raise ZeroDivisionError
        return merge(state, event)

    monkeypatch.setattr(writer_module, "apply", spying_apply)
    was = gc.isenabled()
    try:
        with Writer(tmp_path / "gc.db") as w:
            gc.enable()
            w.apply([zevent(uuid="g1", event_id="g1")])
            assert gc.isenabled() and seen == [False]
            with pytest.raises(ZeroDivisionError):
                w.apply([zevent(uuid="g2", event_id="boom")])
            assert gc.isenabled() and seen == [False, False]
            gc.disable()  # as the command line leaves it until the app's first frame
            w.apply([zevent(uuid="g3", event_id="g3")])
            assert not gc.isenabled() and seen == [False, False, False]
    finally:
        (gc.enable if was else gc.disable)()


def test_missing_values_are_stored_as_null_and_payloads_as_blobs(db_path) -> None:
    """schema.py binds None and bytes through adapters of its own (for speed): what they bind
    must still be SQL NULL and a BLOB, which every query (`error_code IS NULL`, the payload's
    decoder) relies on, through an sqlite3 connection of anyone's as well as the writer's."""
    with Writer(db_path) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="n1", event_id="n1")])
    with open_readonly(db_path) as conn:
        assert rows(conn, "SELECT typeof(error_code), typeof(flags), typeof(raw) FROM events") == [("null", "null", "blob")]
        assert rows(conn, "SELECT typeof(deliver_seconds), typeof(error_code) FROM messages") == [("null", "null")]
    other = sqlite3.connect(":memory:")
    assert other.execute("SELECT typeof(?), typeof(?), ?", (None, b"\x00\xff", b"\x00\xff")).fetchone() == (
        "null", "blob", b"\x00\xff")


def test_a_writer_whose_database_a_newer_smsmon_upgraded_writes_nothing_more(writer, db) -> None:
    """A newer smsmon upgrades a database in place (`browse` does, on SQLite): a writer of the
    version before that goes on writing would leave out what the new schema keeps (stop 20 saw
    the costs come out short). From the upgrade on, its batches fail whole, saying why, and
    nothing of them is stored: serve answers 503 and the provider retries, for the newer
    smsmon to store."""
    writer.apply([zevent("MESSAGE_SENT", uuid="before", event_id="b1")])
    newer = schema.SCHEMA_VERSION + 1
    upgrade_under(db, newer)
    with pytest.raises(SchemaTooNew, match=f"upgraded to schema version {newer} by a newer smsmon while this one"):
        writer.apply([zevent("MESSAGE_DELIVERED", uuid="before", event_id="b2"), zevent("MESSAGE_SENT", uuid="after")])
    assert rows(db, "SELECT count(*) FROM events") == [(1,)]
    assert rows(db, "SELECT status FROM messages") == [("SENT",)]
