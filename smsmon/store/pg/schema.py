"""The PostgreSQL schema: the SQLite store's tables, column for column, and their migrations.

Versions are rows of `schema_versions` (one per step applied, with when); `MIGRATIONS[i]`
takes a database from version i to i + 1, each step in one transaction (PostgreSQL's DDL is
transactional), under an advisory lock so that two processes starting at once on a new
database do not both build it. A database of a newer smsmon is refused; a schema (the first
of the URL's search_path, `public` by default) that holds other tables and no smsmon is
refused rather than written into.

Differences from SQLite, each for a reason:
- text in the "C" collation: compares by code point, as SQLite does (ids, ISO times);
- `commit_clock`, one row: every write transaction locks it last, so that writers in several
  processes commit one at a time from there on and events get ids in commit order (the
  watermark readers follow, as SQLite's rowids are);
- a unique index on (message_seq, event_key): the database itself refuses a second copy of an
  event, whatever a writer does;
- `total()`, `group_concat()` and `sum()` of a comparison, which the read side's SQL uses, defined
  as aggregates.
"""

from __future__ import annotations

import logging
from typing import Callable

import psycopg

from smsmon.errors import NotSmsmonDatabase, SchemaTooNew, SchemaTooOld
from smsmon.store.payloads import DICT_ID, shipped_dictionary
from smsmon.store.schema import EVENT_COLUMNS, GENERATED_MESSAGE_COLUMNS, MESSAGE_COLUMNS, STORED_FLAGS, flag_condition
from smsmon.timeutil import fmt, now_utc

log = logging.getLogger("smsmon.store")

TEXT = 'text COLLATE "C"'
TYPES = {str: TEXT, int: "bigint", float: "double precision"}
MIGRATION_LOCK = 0x736D736D6F6E  # "smsmon": pg_advisory_xact_lock key of schema changes, database-wide
# A schema's own lock: (this, hashtext(its name)). A migration takes it alone, every writer's
# transaction shares it (pg/writer.py), so that no batch is written between a migration and a
# writer's look at the version. Per schema: a migration of one stalls no writer of another.
SCHEMA_LOCK = 0x736D736D  # "smsm"
LOCK_SCHEMA = "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))"
SHARE_SCHEMA = "SELECT pg_advisory_xact_lock_shared($1, hashtext(current_schema()))"
GENERATED = {
    "provider_message_id": f"{TEXT} GENERATED ALWAYS AS (substr(id, length(provider) + 2)) STORED",
    "final_at": f"{TEXT} GENERATED ALWAYS AS (CASE WHEN is_final <> 0 THEN status_at END) STORED",
}
assert set(GENERATED) == set(GENERATED_MESSAGE_COLUMNS)


def _messages_sql() -> list[str]:
    not_null = {"seq", "provider", "status"}
    cols = ", ".join(
        f"{c} {GENERATED[c]}" if c in GENERATED else
        f"{c} {TYPES[t]}{' PRIMARY KEY' if c == 'id' else ''}{' NOT NULL' if c in not_null else ''}"
        for c, t in MESSAGE_COLUMNS.items())
    # Pages go newest first by (last_event_at, seq): every index that drives a page carries both.
    return [
        f"CREATE TABLE messages ({cols}, CONSTRAINT ux_messages_seq UNIQUE (seq))",
        *(f"CREATE INDEX ix_messages_{name} ON messages ({column})" for name, column in (
            ("status", "status"), ("dest", "dest"), ("error", "error_code"), ("network", "network"),
            ("reference", "reference"))),
        "CREATE INDEX ix_messages_time ON messages (last_event_at, seq)",
        "CREATE INDEX ix_messages_open ON messages (last_event_at, seq) WHERE is_final = 0",
        *(f"CREATE INDEX ix_messages_flag_{flag} ON messages (last_event_at, seq) WHERE {flag_condition(flag)}"
          for flag in STORED_FLAGS),
    ]


def _events_sql() -> list[str]:
    not_null = {"event_key", "message_seq", "source", "status", "event_time", "received_at"}
    cols = ", ".join(
        f"{c} {'bytea' if c == 'raw' else TYPES[t]}{' PRIMARY KEY' if c == 'id' else ''}{' NOT NULL' if c in not_null else ''}"
        for c, t in EVENT_COLUMNS.items())
    return [f"CREATE TABLE events ({cols}, FOREIGN KEY (message_seq) REFERENCES messages (seq))",
            "CREATE UNIQUE INDEX ux_events_key ON events (message_seq, event_key)"]


def _aggregates_sql() -> list[str]:
    dims = f"provider {TEXT} NOT NULL, raw_status {TEXT} NOT NULL, error_code {TEXT} NOT NULL, network {TEXT} NOT NULL," \
           f" country_code {TEXT} NOT NULL"
    out = [f"CREATE TABLE {t} (span {TEXT} NOT NULL, {dims}, n bigint NOT NULL, events bigint NOT NULL,"
           " PRIMARY KEY (span, provider, raw_status, error_code, network, country_code))" for t in ("agg_hour", "agg_day")]
    dims = dims.replace(f" raw_status {TEXT} NOT NULL,", "")
    out += [f"CREATE TABLE {t} (span {TEXT} NOT NULL, {dims}, bucket bigint NOT NULL, n bigint NOT NULL,"
            " PRIMARY KEY (span, provider, error_code, network, country_code, bucket))"
            for t in ("agg_latency_hour", "agg_latency_day")]
    return out


def _v1(conn: psycopg.Connection) -> None:
    """The SQLite store's schema 4 (issue 11), and the commit clock."""
    statements = [
        "CREATE TABLE commit_clock (id integer PRIMARY KEY CHECK (id = 1), last_event_id bigint NOT NULL,"
        " last_seq bigint NOT NULL)",
        "INSERT INTO commit_clock VALUES (1, 0, 0)",
        *_messages_sql(),
        *_events_sql(),
        f"CREATE TABLE facet_counts (dim {TEXT} NOT NULL, value {TEXT} NOT NULL, n bigint NOT NULL, PRIMARY KEY (dim, value))",
        f"CREATE TABLE dead_letters (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, received_at {TEXT},"
        f" remote {TEXT}, path {TEXT}, reason {TEXT}, body {TEXT}, size bigint NOT NULL DEFAULT 0)",
        "CREATE INDEX ix_dead_letters_size ON dead_letters (id) INCLUDE (size)",
        f"CREATE TABLE poll_runs (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, provider {TEXT},"
        f" started_at {TEXT}, finished_at {TEXT}, ok bigint, http_status bigint, api_code {TEXT}, rows_seen bigint,"
        f" new_events bigint, error_code {TEXT}, error {TEXT})",
        "CREATE INDEX ix_poll_runs_provider ON poll_runs (provider, id)",
        "CREATE TABLE payload_dicts (id integer PRIMARY KEY, data bytea NOT NULL)",
        "CREATE TABLE event_key_blocks (block bigint PRIMARY KEY, bloom bytea NOT NULL)",
        f"CREATE TABLE events_minute (minute {TEXT} PRIMARY KEY, n bigint NOT NULL)",
        # `smsmon migrate`: which SQLite database this one is a copy of, and how far the copy got.
        f"CREATE TABLE copied_from (identity {TEXT} PRIMARY KEY, source {TEXT}, events bigint NOT NULL,"
        f" started_at {TEXT}, finished_at {TEXT})",
        *_aggregates_sql(),
        # SQLite's total() (0.0 over nothing) and group_concat(), as the read side uses them.
        "CREATE AGGREGATE total(double precision) (SFUNC = float8pl, STYPE = double precision, INITCOND = '0')",
        "CREATE FUNCTION smsmon_join(double precision[]) RETURNS text LANGUAGE sql IMMUTABLE"
        " AS $$ SELECT nullif(array_to_string($1, ','), '') $$",
        "CREATE AGGREGATE group_concat(double precision) (SFUNC = array_append, STYPE = double precision[],"
        " FINALFUNC = smsmon_join)",
        # SQLite's comparisons are 0 or 1, so sum() over one counts: the same over PostgreSQL's booleans.
        "CREATE FUNCTION smsmon_count_true(bigint, boolean) RETURNS bigint LANGUAGE sql IMMUTABLE"
        " AS $$ SELECT $1 + CASE WHEN $2 THEN 1 ELSE 0 END $$",
        "CREATE AGGREGATE sum(boolean) (SFUNC = smsmon_count_true, STYPE = bigint, INITCOND = '0')",
    ]
    for statement in statements:
        conn.execute(statement)  # type: ignore[arg-type]
    conn.execute("INSERT INTO payload_dicts (id, data) VALUES ($1, $2)", (DICT_ID, shipped_dictionary()))


def _v2(conn: psycopg.Connection) -> None:
    """The SQLite store's schema 5 (issue 13, smsmon.store.migrate_v5): the demo mark, the
    forward outbox (written in its event's transaction), dead letters' headers, exact bytes and
    last replay."""
    statements = [
        f"CREATE TABLE meta (key {TEXT} PRIMARY KEY, value {TEXT} NOT NULL)",
        "CREATE TABLE forward_outbox ("
        " event_id bigint PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,"
        f" message_id {TEXT} NOT NULL, created_at {TEXT} NOT NULL, content_type {TEXT},"
        f" attempts bigint NOT NULL DEFAULT 0, next_at {TEXT} NOT NULL, last_at {TEXT}, last_status bigint,"
        f" last_error {TEXT})",
        "CREATE INDEX ix_forward_outbox_due ON forward_outbox (next_at)",
        "CREATE INDEX ix_forward_outbox_message ON forward_outbox (message_id)",
        f"ALTER TABLE dead_letters ADD COLUMN headers {TEXT}",
        "ALTER TABLE dead_letters ADD COLUMN body_bytes bytea",
        f"ALTER TABLE dead_letters ADD COLUMN replayed_at {TEXT}",
    ]
    for statement in statements:
        conn.execute(statement)  # type: ignore[arg-type]


def _v3(conn: psycopg.Connection) -> None:
    """The SQLite store's schema 6 (smsmon.store.aggregates.COST_SCHEMA): the priced messages'
    cost per hour of latest activity and day sent, filled from the messages."""
    from smsmon.store import aggregates

    conn.execute(f"CREATE TABLE agg_cost_hour (span {TEXT} NOT NULL, sent_day {TEXT} NOT NULL, provider {TEXT} NOT NULL,"  # type: ignore[arg-type]
                 f" raw_status {TEXT} NOT NULL, error_code {TEXT} NOT NULL, network {TEXT} NOT NULL,"
                 f" country_code {TEXT} NOT NULL, priced bigint NOT NULL, cost_micros bigint NOT NULL,"
                 " PRIMARY KEY (span, sent_day, provider, raw_status, error_code, network, country_code))")
    conn.execute(aggregates.PG_REBUILD_COSTS)  # type: ignore[arg-type]


MIGRATIONS: list[tuple[str, Callable[[psycopg.Connection], None]]] = [
    ("the tables of the SQLite store's schema 4, and the commit clock", _v1),
    ("the SQLite store's schema 5: meta (the demo mark), forward_outbox, dead letters' headers", _v2),
    ("the SQLite store's schema 6: agg_cost_hour, the cost of priced messages per hour and day sent", _v3),
]
SCHEMA_VERSION = len(MIGRATIONS)


def version(conn: psycopg.Connection) -> int:
    """The schema version; 0 for an empty schema. NotSmsmonDatabase for one with other tables."""
    row = conn.execute("SELECT to_regclass('schema_versions') IS NOT NULL").fetchone()
    if row and row[0]:
        return conn.execute("SELECT coalesce(max(version), 0) FROM schema_versions").fetchone()[0]  # type: ignore[index]
    other = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1 LIMIT 3")]
    if other:
        raise NotSmsmonDatabase(f"holds other tables ({', '.join(other)}) and no smsmon schema: it is not an smsmon database"
                                " (give --db an empty database, or a schema of its own with"
                                " ?options=-csearch_path%3Dsmsmon in the URL)")
    if conn.execute("SELECT current_schema() IS NULL").fetchone()[0]:  # type: ignore[index]
        raise NotSmsmonDatabase("has no schema to create tables in (the search_path names none that exists)")
    return 0


def check(conn: psycopg.Connection, where: str) -> int:
    """For readers: the version, which must be this smsmon's. Raises SchemaTooNew, SchemaTooOld,
    NotSmsmonDatabase."""
    try:
        v = version(conn)
    except NotSmsmonDatabase as exc:
        raise NotSmsmonDatabase(f"{where} {exc}") from None
    finally:
        conn.rollback()
    if v == 0:
        raise NotSmsmonDatabase(f"{where} is not an smsmon database (no smsmon schema in it: `smsmon serve` or"
                                " `smsmon migrate` creates one)")
    if v > SCHEMA_VERSION:
        raise SchemaTooNew(f"{where} has schema version {v}; this smsmon knows up to {SCHEMA_VERSION}: upgrade smsmon")
    if v < SCHEMA_VERSION:
        raise SchemaTooOld(f"{where} was written by an older smsmon (schema version {v}; this one reads {SCHEMA_VERSION})")
    return v


def migrate(conn: psycopg.Connection, where: str) -> int:
    """Bring the schema up to date, one transaction per step; return the version. Only a step
    to run takes the schema's lock alone (and stalls its writers): a look at an up-to-date
    schema, which every writer's start makes, shares it."""
    with conn.transaction():
        conn.execute(SHARE_SCHEMA, (SCHEMA_LOCK,))
        try:
            if version(conn) == SCHEMA_VERSION:
                return SCHEMA_VERSION
        except NotSmsmonDatabase:
            pass  # said below, under the lock
    fresh = False  # a schema built now, step by step: no upgrade to announce
    for _ in range(SCHEMA_VERSION + 1):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock($1)", (MIGRATION_LOCK,))  # as every smsmon before takes it
            conn.execute(LOCK_SCHEMA, (SCHEMA_LOCK,))
            try:
                current = version(conn)
            except NotSmsmonDatabase as exc:
                raise NotSmsmonDatabase(f"{where} {exc}") from None
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(f"{where} has schema version {current}; this smsmon knows up to {SCHEMA_VERSION}:"
                                   " upgrade smsmon")
            if current == SCHEMA_VERSION:
                return current
            if current == 0:
                fresh = True
                conn.execute(f"CREATE TABLE schema_versions (version integer PRIMARY KEY, applied_at {TEXT} NOT NULL,"
                             f" what {TEXT} NOT NULL)")
            elif not fresh:
                log.warning("upgrading %s from schema version %d to %d ...", where, current, current + 1)
            what, step = MIGRATIONS[current]
            step(conn)
            conn.execute("INSERT INTO schema_versions VALUES ($1, $2, $3)", (current + 1, fmt(now_utc()), what))
    return SCHEMA_VERSION
