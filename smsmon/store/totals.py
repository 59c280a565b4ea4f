"""Totals that outlive a prune (issue 14). Events are numbered 1, 2, 3, ... as they arrive and
only a prune (prune.py) takes any away, keeping count in `facet_counts` as ('pruned', 'events'):
so the number of events stored is two point reads, however large the database."""

from __future__ import annotations

import sqlite3

PRUNED_EVENTS = ("pruned", "events")  # facet_counts (dim, value): events removed by prunes so far


def pruned_events(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT n FROM facet_counts WHERE dim = ? AND value = ?", PRUNED_EVENTS).fetchone()
    return row[0] if row else 0


def stored_events(conn: sqlite3.Connection) -> int:
    """How many events are stored."""
    top = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    return top - pruned_events(conn)
