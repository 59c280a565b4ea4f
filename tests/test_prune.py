"""Retention (issue 14): `prune` removes old messages with their events, outbox rows, and poll
runs and dead letters of the same age, and every figure `stats` shows afterwards (with and without
a filter) equals the same figure recounted from the rows that are left."""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from smsmon import filters
from smsmon.lifecycle import Outcome
from smsmon.sim.generate import fill
from smsmon.store import aggregates, keyindex, prune as pruning, stats
from smsmon.store.schema import MESSAGE_COLUMNS, open_readonly
from smsmon.store.writer import FACETS, Writer, _facet_values, _state_from_row  # the writer's own counts of a message
from smsmon.timeutil import fmt
from tests.helpers import NOW, rows, zevent
from tests.test_queries import STATS_FILTERS, _percentile, _same_bucket, matches

WINDOW = timedelta(hours=72)
CUTS = [timedelta(days=5), timedelta(hours=61), timedelta(hours=25, minutes=17), timedelta(minutes=90), timedelta(0)]


@pytest.fixture(scope="module", params=[3, 11], ids=["seed3", "seed11"])
def generated(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prune") / "g.db"
    fill(path, messages=700, seed=request.param, days=6, now=NOW)
    return path


def _maintained(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every table the writer maintains, zero rows left out, sorted."""
    return {
        "facet_counts": sorted(r for r in rows(conn, "SELECT dim, value, n FROM facet_counts WHERE n != 0") if r[0] != "pruned"),
        **{t: sorted(rows(conn, f"SELECT * FROM {t} WHERE n != 0 OR events != 0")) for t in ("agg_hour", "agg_day")},
        **{t: sorted(rows(conn, f"SELECT * FROM {t} WHERE n != 0")) for t in ("agg_latency_hour", "agg_latency_day")},
        "agg_cost_hour": sorted(rows(conn, "SELECT * FROM agg_cost_hour WHERE priced != 0 OR cost_micros != 0")),
    }


def _recounted(path: Path, tmp: Path) -> dict[str, list[tuple]]:
    """The same tables rebuilt from the messages left, in a copy: the reference."""
    copy = tmp / "recount.db"
    shutil.copy(path, copy)
    conn = sqlite3.connect(copy)
    aggregates.rebuild(conn)
    aggregates.rebuild_costs(conn)
    conn.execute("DELETE FROM facet_counts")
    facets: Counter = Counter()
    for row in conn.execute(f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages"):
        for dim, value in zip(FACETS, _facet_values(_state_from_row(dict(zip(MESSAGE_COLUMNS, row))))):
            if value is not None:
                facets[(dim, value)] += 1
    conn.executemany("INSERT INTO facet_counts VALUES (?, ?, ?)", [(d, v, n) for (d, v), n in facets.items()])
    conn.commit()
    out = _maintained(conn)
    conn.close()
    return out


def _check_stats(path: Path) -> None:
    conn = open_readonly(path)
    everything = [dict(r) for r in conn.execute("SELECT rowid AS seq, * FROM messages")]
    assert stats.stats(conn, None, now=NOW, window=WINDOW).events == rows(conn, "SELECT count(*) FROM events")[0][0]
    for expr in STATS_FILTERS:
        f = filters.parse(expr, NOW)
        ms = [m for m in everything if matches(m, f)]
        s = stats.stats(conn, f, now=NOW, window=WINDOW)
        outcomes = Counter(m["outcome"] for m in ms)
        assert s.messages == len(ms), expr
        assert s.outcomes == {o.value: outcomes.get(o.value, 0) for o in Outcome}, expr
        d, nd = outcomes["DELIVERED"], outcomes["NOT_DELIVERED"]
        assert s.delivery_rate == (pytest.approx(d / (d + nd)) if d + nd else None), expr
        secs = [m["deliver_seconds"] for m in ms if m["deliver_seconds"] is not None]
        assert _same_bucket(s.median_seconds, _percentile(secs, 0.5)), expr
        assert _same_bucket(s.p90_seconds, _percentile(secs, 0.9)), expr
        assert s.stale == sum(1 for m in ms if not m["is_final"] and m["last_event_at"] < fmt(NOW - WINDOW)), expr
        assert s.events == sum(m["events_count"] for m in ms), expr
        failed = [m for m in ms if m["outcome"] == "NOT_DELIVERED"]
        assert Counter({(p, c): n for p, c, n in s.failures_by_code}) == Counter((m["provider"], m["error_code"]) for m in failed)
        assert Counter(dict(s.failures_by_network)) == Counter(m["network"] for m in failed), expr
        for dim in stats.FACET_DIMS:
            assert dict(stats.facets(conn, dim, f, limit=100, now=NOW, window=WINDOW)) == dict(
                Counter(m[dim] for m in ms)), (expr, dim)
    events_per_message = Counter(r[0] for r in rows(conn, "SELECT message_seq FROM events"))
    assert all(events_per_message[m["seq"]] == m["events_count"] for m in everything)
    # the sparkline's counts, minute by minute, for the minutes it keeps
    arrivals = Counter(r[0][:16] for r in rows(conn, "SELECT received_at FROM events"))
    kept = dict(rows(conn, "SELECT minute, n FROM events_minute"))
    assert kept == {m: n for m, n in arrivals.items() if kept and m >= min(kept)}
    # a Bloom block goes with its last event; the events left are still found by their ids
    blocks = {r[0] for r in rows(conn, "SELECT block FROM event_key_blocks")}
    assert blocks == {r[0] // keyindex.BLOCK for r in rows(conn, "SELECT id FROM events")}
    for key, mid in rows(conn, "SELECT e.event_key, m.id FROM events e JOIN messages m ON m.seq = e.message_seq"
                               " ORDER BY e.id LIMIT 20"):
        assert mid in keyindex.find(conn, key)
    conn.close()


@pytest.mark.parametrize("cut", CUTS, ids=[str(c) for c in CUTS])
def test_stats_after_a_prune_equal_a_recount_of_the_rows_left(generated, tmp_path, cut) -> None:
    path = tmp_path / "p.db"
    shutil.copy(generated, path)
    cutoff = fmt(NOW - cut)
    before = rows(path, "SELECT count(*), sum(events_count) FROM messages")[0]
    older = rows(path, "SELECT count(*), coalesce(sum(events_count), 0) FROM messages WHERE last_event_at < ?", cutoff)[0]
    with Writer(path) as w:
        dry = pruning.plan(w.conn, cutoff)
        result = pruning.prune(w, cutoff, batch=97)  # many batches, and a last one cut short
    assert (dry.messages, dry.events) == (result.messages, result.events)
    after = rows(path, "SELECT count(*), sum(events_count) FROM messages")[0]
    assert after[0] == before[0] - result.messages
    kept_old = rows(path, "SELECT count(*) FROM messages WHERE last_event_at < ?", cutoff)[0][0]
    assert kept_old == int(result.kept_newest) * kept_old <= 2  # only the newest, kept on purpose
    assert result.messages == older[0] - kept_old
    assert rows(path, "SELECT count(*) FROM events")[0][0] == (after[1] or 0)
    if cut >= timedelta(hours=61):
        assert 0 < result.messages < before[0] and result.batches >= 2
    _check_stats(path)
    assert _maintained(sqlite3.connect(path)) == _recounted(path, tmp_path)


def test_pruning_twice_and_writing_between_keeps_every_count_exact(tmp_path, monkeypatch) -> None:
    """Prunes interleaved with new events for kept and for pruned messages (a late callback for
    a message already pruned starts it again); Bloom blocks small enough for many to empty."""
    monkeypatch.setattr(keyindex, "BLOCK", 64)
    path = tmp_path / "p.db"
    fill(path, messages=700, seed=5, days=6, now=NOW)
    assert rows(path, "SELECT count(*) FROM event_key_blocks")[0][0] > 20
    with Writer(path) as w:
        pruning.prune(w, fmt(NOW - timedelta(days=4)))
        gone = rows(w.conn, "SELECT 1 FROM messages WHERE id = 'zeckta:late-one'")
        assert not gone
        kept = rows(w.conn, "SELECT id FROM messages WHERE provider = 'zeckta' ORDER BY last_event_at LIMIT 1")[0][0]
        w.apply([zevent("MESSAGE_FAILED", uuid=kept.split(":", 1)[1], at=NOW - timedelta(minutes=1)),
                 zevent("MESSAGE_DELIVERED", uuid="late-one", at=NOW - timedelta(days=5))])
        pruning.prune(w, fmt(NOW - timedelta(days=2)))
    _check_stats(path)
    assert _maintained(sqlite3.connect(path)) == _recounted(path, tmp_path)


def test_numbers_are_never_given_twice_after_pruning_everything(tmp_path) -> None:
    path = tmp_path / "p.db"
    with Writer(path) as w:
        w.apply([zevent("MESSAGE_SENT", uuid=f"m{i}", at=NOW - timedelta(days=30)) for i in range(20)])
        top = w.latest_event_id()
        result = pruning.prune(w, fmt(NOW))
        assert result.messages == 19 and result.kept_newest
        applied = w.apply([zevent("MESSAGE_SENT", uuid="new")])
    assert applied[0].event_id == top + 1
    assert rows(path, "SELECT max(seq) FROM messages")[0][0] == 21


def test_outbox_rows_poll_runs_and_dead_letters_of_the_same_age_go(tmp_path) -> None:
    path = tmp_path / "p.db"
    old, new = NOW - timedelta(days=40), NOW - timedelta(days=1)
    cutoff = fmt(NOW - timedelta(days=30))
    with Writer(path) as w:
        # forwarded callbacks, as the listener stores them with --forward-to: an outbox row each
        # (schema v5), queued when the event arrived
        events = [
            replace(zevent(uuid="old", at=old), received_at=fmt(new)),  # queued recently, for a message that goes: goes with it
            replace(zevent("MESSAGE_SENT", uuid="new", at=old), received_at=fmt(old)),  # queued long ago, its message stays: goes
            replace(zevent(uuid="new", at=new), received_at=fmt(new)),  # stays
            replace(zevent(uuid="newest", at=new), received_at=fmt(new)),  # stays
        ]
        w.apply(events, forward=["application/json"] * len(events))
        assert len(rows(w.conn, "SELECT * FROM forward_outbox")) == 4
        for t in (old, new):
            w.record_poll_run(provider="eazita", started_at=fmt(t), finished_at=fmt(t), ok=1)
            w.dead_letter(received_at=fmt(t), remote="127.0.0.1", path="/callbacks/zeckta", reason="invalid_json: x", body=b"{")
        dry = pruning.plan(w.conn, cutoff)
        result = pruning.prune(w, cutoff)
    for r in (dry, result):
        assert (r.messages, r.events, r.outbox, r.poll_runs, r.dead_letters) == (1, 1, 2, 1, 1)
    assert rows(path, "SELECT message_id, created_at FROM forward_outbox ORDER BY message_id") == [
        ("zeckta:new", fmt(new)), ("zeckta:newest", fmt(new))]
    # every row left still has its event: the forwarder can relay it
    assert rows(path, "SELECT count(*) FROM forward_outbox o JOIN events e ON e.id = o.event_id") == [(2,)]
    assert rows(path, "SELECT started_at FROM poll_runs") == [(fmt(new),)]
    assert rows(path, "SELECT received_at FROM dead_letters") == [(fmt(new),)]
    assert [r[0] for r in rows(path, "SELECT id FROM messages ORDER BY id")] == ["zeckta:new", "zeckta:newest"]


def test_a_dry_run_changes_nothing(generated, tmp_path) -> None:
    path = tmp_path / "p.db"
    shutil.copy(generated, path)
    before = path.read_bytes()
    conn = open_readonly(path)
    result = pruning.plan(conn, fmt(NOW - timedelta(days=3)))
    conn.close()
    assert result.dry_run and result.messages > 0
    assert path.read_bytes() == before


def test_space_comes_back_in_steps(tmp_path) -> None:
    """New databases shrink a step at a time after a prune (auto_vacuum=INCREMENTAL)."""
    path = tmp_path / "p.db"
    fill(path, messages=3000, seed=5, days=6, now=NOW)
    with Writer(path) as w:
        assert pruning.incremental(w.conn)
        w.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = w.conn.execute("PRAGMA page_count").fetchone()[0]
        result = pruning.prune(w, fmt(NOW - timedelta(days=2)))
        w.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert result.vacuum == "incremental" and result.pages_freed > pages // 3
        assert w.conn.execute("PRAGMA page_count").fetchone()[0] == pages - result.pages_freed
        assert pruning.free_pages(w.conn) == 0
    assert path.stat().st_size == (pages - result.pages_freed) * 2048


def test_a_prune_beside_another_writer_leaves_it_room(generated, tmp_path) -> None:
    """Another connection committing meanwhile (as `serve` does) is noticed, and the prune pauses
    after each batch: the other writer keeps committing all along instead of starving."""
    import threading
    import time

    path = tmp_path / "p.db"
    shutil.copy(generated, path)
    stop = threading.Event()
    commits: list[float] = []

    def other() -> None:
        with Writer(path) as w:
            i = 0
            while not stop.is_set():
                w.apply([zevent("MESSAGE_SENT", uuid=f"other-{i}", at=NOW)])
                commits.append(time.monotonic())
                i += 1
                time.sleep(0.002)

    t = threading.Thread(target=other)
    t.start()
    try:
        with Writer(path) as w:
            started = time.monotonic()
            result = pruning.prune(w, fmt(NOW - timedelta(days=2)), batch=50, vacuum="full")
            ended = time.monotonic()
    finally:
        stop.set()
        t.join()
    assert result.shared and result.batches > 5
    assert result.vacuum == "refused"  # a VACUUM would hold the other writer up until it ended
    during = [c for c in commits if started <= c <= ended]
    assert len(during) > result.batches  # it got in between batches, not only at the end
    with Writer(path) as w:
        alone = pruning.prune(w, fmt(NOW - timedelta(days=1)), batch=50)
    assert not alone.shared


# ── on PostgreSQL (issue 15) ────────────────────────────────────────────────────
def recount(db) -> dict[str, list[tuple]]:
    """The maintained tables computed again from the messages left, in Python, from either store:
    each message counted once, where the writer counts it (facets, its Place)."""
    from smsmon.store.aggregates import Deltas, Place

    facets: Counter = Counter()
    moves = Deltas()
    for row in rows(db, f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages"):
        state = _state_from_row(dict(zip(MESSAGE_COLUMNS, row)))
        for dim, value in zip(FACETS, _facet_values(state)):
            if value is not None:
                facets[(dim, value)] += 1
        moves.move(None, Place(state))
    out = {"facet_counts": sorted((d, v, n) for (d, v), n in facets.items())}
    for table, upserts in moves.rows():
        out[table] = sorted(tuple(r) for r in upserts)
    return out


def maintained(db) -> dict[str, list[tuple]]:
    """`_maintained` of either store (a database, not a connection)."""
    return {
        "facet_counts": sorted(r for r in rows(db, "SELECT dim, value, n FROM facet_counts WHERE n != 0") if r[0] != "pruned"),
        **{t: sorted(rows(db, f"SELECT * FROM {t} WHERE n != 0 OR events != 0")) for t in ("agg_hour", "agg_day")},
        **{t: sorted(rows(db, f"SELECT * FROM {t} WHERE n != 0")) for t in ("agg_latency_hour", "agg_latency_day")},
        "agg_cost_hour": sorted(rows(db, "SELECT * FROM agg_cost_hour WHERE priced != 0 OR cost_micros != 0")),
    }


def in_postgresql(path: Path, pg_server) -> object:
    """The SQLite database copied into a fresh PostgreSQL schema, by `smsmon migrate`'s copy."""
    from smsmon.store.pg.copy import copy_sqlite
    from tests.conftest import schema_url

    url = schema_url(pg_server)
    copy_sqlite(path, url)
    return url


@pytest.mark.postgres
@pytest.mark.parametrize("cut", CUTS[:4], ids=[str(c) for c in CUTS[:4]])
def test_on_postgresql_a_prune_leaves_exactly_a_recount_of_the_rows_left_as_on_sqlite(generated, tmp_path, cut,
                                                                                      pg_server) -> None:
    from smsmon.store.backend import open_reader, open_writer

    path = tmp_path / "p.db"
    shutil.copy(generated, path)
    url = in_postgresql(path, pg_server)
    cutoff = fmt(NOW - cut)
    assert maintained(url) == maintained(path) == recount(url)  # before: the copy is the file
    dry = pruning.plan_file(url, cutoff)
    with Writer(path) as w:
        on_sqlite = pruning.prune(w, cutoff, batch=97)
    result, size = pruning.prune_file(url, cutoff, batch=97)
    assert (dry.messages, dry.events) == (result.messages, result.events) == (on_sqlite.messages, on_sqlite.events)
    assert (result.outbox, result.kept_newest, result.vacuum) == (on_sqlite.outbox, on_sqlite.kept_newest, "server")
    assert size > 0 and (result.batches >= 2 or result.messages < 97)
    assert maintained(url) == recount(url) == maintained(path)
    assert rows(url, "SELECT id, events_count FROM messages ORDER BY id") == rows(path, "SELECT id, events_count FROM messages ORDER BY id")
    assert rows(url, "SELECT id, received_at FROM events ORDER BY id") == rows(path, "SELECT id, received_at FROM events ORDER BY id")
    assert dict(rows(url, "SELECT minute, n FROM events_minute")) == dict(rows(path, "SELECT minute, n FROM events_minute"))
    assert rows(url, "SELECT block FROM event_key_blocks ORDER BY 1") == rows(path, "SELECT block FROM event_key_blocks ORDER BY 1")
    with open_reader(url) as r, open_reader(path) as lite:
        for expr in STATS_FILTERS:  # every figure stats shows, the same on both stores
            f = filters.parse(expr, NOW)
            assert r.stats(f, now=NOW) == lite.stats(f, now=NOW), expr
        applied = open_writer(url).apply([zevent("MESSAGE_SENT", uuid="after-the-prune")])
    assert applied[0].event_id == rows(path, "SELECT max(id) FROM events")[0][0] + 1  # ids go on from the newest


@pytest.mark.postgres
def test_on_postgresql_a_prune_beside_a_writer_loses_no_update(generated, tmp_path, pg_server) -> None:
    """Another writer committing events for the very messages being pruned (late callbacks: they
    start them again) while the prune runs in small batches: every count stays a recount."""
    import threading

    from smsmon.store.backend import open_writer

    path = tmp_path / "p.db"
    shutil.copy(generated, path)
    url = in_postgresql(path, pg_server)
    old = [r[0].split(":", 1)[1] for r in rows(url, "SELECT id FROM messages WHERE provider = 'zeckta' AND last_event_at < ?"
                                                    " ORDER BY last_event_at LIMIT 150", fmt(NOW - timedelta(days=3)))]
    assert len(old) == 150
    stop, errors = threading.Event(), []

    def late_callbacks() -> None:
        try:
            with open_writer(url) as w:
                for i, uuid in enumerate(old):
                    if stop.is_set():
                        break
                    w.apply([zevent("MESSAGE_DELIVERED", uuid=uuid, event_id=f"late-{i}", at=NOW - timedelta(days=4))])
        except Exception as exc:  # noqa: BLE001 -- collected for the assertion
            errors.append(exc)

    t = threading.Thread(target=late_callbacks)
    t.start()
    try:
        result, _ = pruning.prune_file(url, fmt(NOW - timedelta(days=3)), batch=20)
    finally:
        stop.set()
        t.join(60)
    assert not errors and result.batches > 5
    assert maintained(url) == recount(url)
    assert rows(url, "SELECT count(*) FROM events")[0][0] == rows(url, "SELECT coalesce(sum(events_count), 0) FROM messages")[0][0]
