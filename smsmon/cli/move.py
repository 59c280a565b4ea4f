"""`smsmon migrate`: an SQLite database copied into PostgreSQL (issue 15)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from smsmon.cli import cli
from smsmon.cli.options import CONTEXT, DATABASE

PROGRESS_EVERY_S = 2.0  # a progress line this often when stderr is not a terminal (a log)


class _Progress:
    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.phase = ""
        self.phase_started = self.started
        self.shown = 0.0

    def __call__(self, what: str, done: int, of: int) -> None:
        now = time.monotonic()
        if what != self.phase:
            if self.phase and self.tty:
                click.echo("", err=True)
            self.phase, self.phase_started = what, now
        if what == "counts":
            click.echo("counts, aggregates and the commit clock: copied", err=True)
            return
        finished = done >= of
        if not finished and not self.tty and now - self.shown < PROGRESS_EVERY_S:
            return
        self.shown = now
        rate = done / (now - self.phase_started) if now > self.phase_started else 0.0
        left = f", about {(of - done) / rate:.0f} s left" if rate and not finished else ""
        line = f"{what}: {done:,} of {of:,} ({100 * done / of if of else 100:.0f}%){left}"
        click.echo(("\r" + line.ljust(70)) if self.tty else line, err=True, nl=not self.tty)


@cli.command(context_settings=CONTEXT)
@click.option("--from", "source", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="The SQLite database to copy (read only; `serve` may go on writing it).")
@click.option("--to", "target", type=DATABASE, required=True,
              help="The PostgreSQL database: postgresql://USER@HOST/DB (a password is better in PGPASSWORD or ~/.pgpass"
                   " than on a command line others can see in `ps`).")
def migrate(source: Path, target: Any) -> None:
    """Copy an SQLite database into PostgreSQL, with progress.

    \b
    smsmon migrate --from ~/.local/share/smsmon/smsmon.db --to postgresql://smsmon@db.internal/smsmon

    Run it again to copy what the file got since (it changes nothing else: run it twice, the same
    result), or after Ctrl+C to go on where it stopped. The target must be empty or a copy of the
    same file; a schema of its own works too (?options=-csearch_path%3Dsmsmon in the URL).
    """
    from smsmon.database import is_postgres
    from smsmon.present import plural
    from smsmon.store.pg.copy import copy_sqlite

    if not is_postgres(target):
        raise click.BadParameter("give a postgresql:// URL (the copy goes from an SQLite file to PostgreSQL)",
                                 param_hint="--to")
    click.echo(f"copying {source} into {target} (one snapshot of it; Ctrl+C stops, the same command goes on)", err=True)
    try:
        result = copy_sqlite(source, target, progress=_Progress())
    except KeyboardInterrupt:
        click.echo("\ninterrupted: what was copied stays; run the same command again to go on", err=True)
        raise click.exceptions.Exit(130) from None
    again = f" (resumed after event {result.resumed_from:,})" if result.resumed_from else ""
    click.echo(f"copied {plural(result.messages, 'message')}, {plural(result.events_total, 'event')}"
               f" ({result.events:,} this run{again}), {plural(result.dead_letters, 'dead letter')} and"
               f" {plural(result.poll_runs, 'poll run')} in {result.seconds:.1f} s: now run"
               f" `smsmon serve --db {target}`", err=True)
