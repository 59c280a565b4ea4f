"""Commands that read a database: explain, show, stats, export. None of them creates one."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from smsmon.cli import cli
from smsmon.cli.options import CONTEXT, filter_option, json_option, settings_options
from smsmon.cli.output import json_out

if TYPE_CHECKING:  # annotations only: the commands import what they use when they run
    from smsmon.config import Settings


@cli.command(context_settings=dict(CONTEXT, ignore_unknown_options=True))  # `explain -2`: a code, not an option
@click.argument("code")
@click.option("--provider", type=click.Choice(["zeckta", "eazita", "smsmon"]), help="Only this provider's meaning.")
@json_option
@settings_options()
def explain(code: str, provider: str | None, as_json: bool, settings: Settings) -> None:
    """Explain a status, error code, API code, flag or failure.

    \b
    smsmon explain DELIVERED        both providers' meaning
    smsmon explain 101              an Eazita error code
    smsmon explain -2 --provider eazita
    smsmon explain late_dlr         a flag smsmon sets
    An unrecognized code is explained as such, with how often it was seen in the database.
    """
    from smsmon import catalogue
    from smsmon.cli.output import render_entry
    from smsmon.errors import StoreError
    from smsmon.store.backend import exists, open_reader

    if code.startswith("--"):
        raise click.UsageError(f"no such option: {code}")
    entries = catalogue.explain(code, provider)
    suggestions = catalogue.suggest(code, provider) if not entries[0].recognized else []
    seen = None
    if not entries[0].recognized and exists(settings.db):
        try:
            with open_reader(settings.db) as reader:
                seen = reader.sightings(code, provider)
        except StoreError:
            seen = None  # no usable database: the explanation stands without the sightings
    if as_json:
        out = [e.to_dict() for e in entries]
        if seen is not None:
            out[0]["seen"] = seen
        if suggestions:
            out[0]["suggestions"] = suggestions
        json_out(out)
        return
    for i, entry in enumerate(entries):
        if i:
            click.echo()
        click.echo(render_entry(entry, seen if i == 0 else None, suggestions if i == 0 else None))


@cli.command(context_settings=CONTEXT)
@click.argument("message")
@json_option
@settings_options()
def show(message: str, as_json: bool, settings: Settings) -> None:
    """One message's drill-down: facts, timeline, explanations, raw payloads.

    MESSAGE is `provider:id`, or a bare id, uuid, reference, phone number (any format; local
    ones in the default_region setting) or the eventId of one of its callbacks, when only one
    message matches (otherwise the candidates are listed). Times are shown in display_timezone;
    --json gives them in UTC.
    """
    from smsmon.cli.output import render_detail
    from smsmon.errors import Ambiguous
    from smsmon.store.backend import open_reader as Reader

    with Reader(settings.db, window=settings.watch_window, region=settings.default_region) as reader:
        try:
            mid = reader.resolve(message)
        except Ambiguous as exc:
            if as_json:
                json_out({"error": str(exc), "candidates": exc.candidates})
            else:
                click.echo(f"error: {exc}", err=True)
                for c in exc.candidates:
                    when = settings.display_timezone.show(c["last_event_at"])
                    click.echo(f"  {c['id']:<50} {c['status']:<14} {c['dest'] or '':<16} {when}", err=True)
            raise click.exceptions.Exit(1) from None
        detail = reader.detail(mid)
    if as_json:
        json_out(detail)
    else:
        click.echo(render_detail(detail, settings.display_timezone))


@cli.command(context_settings=CONTEXT)
@filter_option()
@json_option
@settings_options()
def stats(flt: Any, as_json: bool, settings: Settings) -> None:
    """Delivery rate, time to deliver, outcomes, stale messages, failures by code and network;
    and what waits to be forwarded (serve --forward-to), when anything does."""
    from smsmon.cli.output import render_forwarding, render_stats
    from smsmon.store.backend import open_reader as Reader

    with Reader(settings.db, window=settings.watch_window, region=settings.default_region) as reader:
        result = reader.stats(flt)
        waiting = reader.outbox_summary(limit=0)
    forwarding = {k: waiting[k] for k in ("waiting", "oldest", "last_error")}
    if as_json:
        json_out(dict(result.to_dict(), filter=flt.source or None, database=str(settings.db), forwarding=forwarding))
    else:
        click.echo(render_stats(result, flt.source, settings.watch_window) + render_forwarding(forwarding, settings.display_timezone))


EXPORT_CACHE_KIB = 32 * 1024  # enough for the messages an events export joins (1M events: 10 % faster than 8 MB)


@cli.command(context_settings=CONTEXT)
@click.option("--table", type=click.Choice(["messages", "events"]), default="messages", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "ndjson"]), default="csv", show_default=True)
@filter_option("Only messages matching this filter (for events: their events).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@settings_options()
def export(table: str, fmt: str, flt: Any, output: Path | None, settings: Settings) -> None:
    """Export messages or events as CSV, JSON or NDJSON.

    \b
    smsmon export --format csv -o messages.csv
    smsmon export --table events --format ndjson --filter "status:failed since:24h" | jq .
    With -o the file is replaced only once the export is complete: a full disk leaves it as it was.
    """
    from smsmon.cli.output import write_export, write_file_atomically, write_stdout
    from smsmon.present import plural
    from smsmon.store.backend import open_reader as Reader

    # A page cache and memory map would only hold what was read once: memory stays flat instead.
    with Reader(settings.db, window=settings.watch_window, region=settings.default_region, cache_kib=EXPORT_CACHE_KIB,
                mmap=False) as reader:
        columns, rows = reader.export(table, flt, as_json=fmt != "csv")
        gc.disable()  # millions of short-lived rows and no cycles: collections would only cost time
        if output:
            n = write_file_atomically(output, lambda out: write_export(rows, fmt, out, columns))
        else:
            n = write_stdout(lambda out: write_export(rows, fmt, out, columns))
    click.echo(f"exported {plural(n, table[:-1])}" + (f" to {output}" if output else ""), err=True)
