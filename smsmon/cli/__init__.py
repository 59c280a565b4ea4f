"""The `smsmon` command line (SPEC §8): one click group, a module per family of commands.

    read.py     explain, show, stats, export          (read a database)
    ingest.py   serve, poll, import                   (write one)
    app.py      watch, demo, browse                   (the Textual app)
    tools.py    config, simulate, sim generate, bench
    move.py     migrate                               (SQLite to PostgreSQL)
    deadletters.py  dead-letters list|show|replay, forward status
    tail.py     tail                                  (follow a database)
    ops.py      prune, alerts                         (running it for months)

Exit codes are click's: 0 ok, 1 a runtime failure, 2 a mistake on the command line (click's
usage errors, which the parameter types in options.py raise for bad values). smsmon's own
errors are one line on stderr. Anything else is a bug: one "internal error" line, and the
traceback with SMSMON_DEBUG=1. Machine output (--json, exports) goes to stdout.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any

import click

from smsmon import __version__
from smsmon.cli.options import CONTEXT
from smsmon.errors import SmsmonError


class UserError(click.ClickException):
    """An smsmon error shown as one line, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.secho(f"error: {self.format_message()}", fg="red", err=True)


# Where each command is defined: a module is imported only when one of its commands runs (or
# for --help), so that `smsmon browse` starts without loading what `serve` needs.
LAZY = {"watch": "app", "demo": "app", "browse": "app", "web": "app", "serve": "ingest", "poll": "ingest", "import": "ingest",
        "explain": "read", "show": "read", "stats": "read", "export": "read", "config": "tools", "simulate": "tools",
        "sim": "tools", "bench": "tools", "dead-letters": "deadletters", "forward": "deadletters", "tail": "tail",
        "prune": "ops", "alerts": "ops", "migrate": "move"}


# The commands that run the Textual app in this process (`web` serves it, each tab a process).
RUN_THE_APP = {"watch", "demo", "browse"}


class SmsmonGroup(click.Group):
    """Gives every subcommand the same way out: smsmon's errors as one line, a closed pipe
    as success, Ctrl+C as 130, a bug as "internal error". Loads command modules lazily."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in RUN_THE_APP:  # see `main`: only the app keeps the collector off until it has drawn
            gc.enable()
        if name not in self.commands and name in LAZY:
            importlib.import_module(f"smsmon.cli.{LAZY[name]}")
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in sorted(set(LAZY.values())):
            importlib.import_module(f"smsmon.cli.{module}")
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except SmsmonError as exc:
            raise UserError(str(exc)) from None
        except BrokenPipeError:
            # The reader went away (`smsmon export | head`): not an error. Point stdout at
            # /dev/null so that the interpreter's last flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if os.environ.get("SMSMON_DEBUG"):
                raise
            raise UserError(f"internal error: {type(exc).__name__}: {exc} (a bug in smsmon; set SMSMON_DEBUG=1 for a traceback)")


@click.group(cls=SmsmonGroup, context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, "-V", "--version", prog_name="smsmon")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Watch SMS deliveries: Zeckta callbacks and Eazita delivery reports into SQLite,
    every status and error code explained, any message drilled into.

    \b
    Watch:        smsmon watch   smsmon demo   smsmon browse --db yesterday.db
    Receive:      smsmon serve                    (Zeckta callbacks into the database)
    Investigate:  smsmon show +233241234567      smsmon explain 101
    Report:       smsmon stats --filter since:24h
    Move data:    smsmon import callbacks.ndjson smsmon export --format csv
    Follow:       smsmon tail --json | jq .     smsmon forward status
    Repair:       smsmon dead-letters list       smsmon dead-letters replay --all

    With no command, `smsmon` runs `smsmon watch`.
    """
    if ctx.invoked_subcommand is None:
        watch = cli.get_command(ctx, "watch")
        assert watch is not None
        ctx.invoke(watch)


def main(argv: list[str] | None = None) -> None:
    """Entry point (`smsmon`, `python -m smsmon`).

    The cyclic garbage collector is off while the command starts: the app's imports make some
    70,000 objects it tracks, all lasting as long as the process, and it walked them again and
    again (measured: about 9 ms of the 0.2 s of imports before the first frame). Every command
    but the app's turns it back on as soon as it is known (`SmsmonGroup.get_command`); the app
    does after its first frame (`SmsmonApp.collect_normally`)."""
    gc.disable()
    try:
        cli.main(args=argv, prog_name="smsmon")
    finally:
        gc.enable()

