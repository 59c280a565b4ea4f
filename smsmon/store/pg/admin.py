"""Schemas as whole databases: what the benchmarks (and an operator's scripts) make, empty and size."""

from __future__ import annotations

from psycopg import sql

from smsmon.database import PostgresUrl
from smsmon.store.pg.connection import connect


def create_schema(url: PostgresUrl, name: str, *, fresh: bool = False) -> None:
    """Make schema `name` if missing (dropped first, with everything in it, when `fresh`)."""
    conn = connect(url, autocommit=True)
    try:
        if fresh:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))  # type: ignore[arg-type]
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name)))  # type: ignore[arg-type]
    finally:
        conn.close()


def drop_schema(url: PostgresUrl, name: str) -> None:
    conn = connect(url, autocommit=True)
    try:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))  # type: ignore[arg-type]
    finally:
        conn.close()


def bytes_on_disk(url: PostgresUrl) -> int:
    """Every table of the URL's schema with its indexes and TOAST."""
    conn = connect(url, autocommit=True)
    try:
        return conn.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                            " JOIN pg_namespace n ON n.oid = c.relnamespace"
                            " WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()[0]  # type: ignore[index]
    finally:
        conn.close()
