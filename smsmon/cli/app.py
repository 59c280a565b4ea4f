"""The Textual app: watch (live), demo (live, simulated providers), browse (offline)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from smsmon.cli import cli
from smsmon.cli.options import ADDRESS, CONTEXT, DEMO_DB_HELP, settings_options
from smsmon.database import is_postgres

if TYPE_CHECKING:  # annotations only: the commands import what they use when they run
    from smsmon.config import Settings
    from smsmon.ingest.listener import ListenerConfig


def _run_app(settings: Settings, ingest: Any, on_hangup: Any = None) -> None:
    """`on_hangup`: what must still be done when the terminal closes (SIGHUP ends the process at once)."""
    if ingest is not None:  # a clear line now, not a flash of the app before it
        from smsmon.store.backend import check_writer_can_open

        check_writer_can_open(settings.db)
        ingest.preflight()
    look = None
    if is_postgres(settings.db) or Path(settings.db).is_file() and Path(settings.db).stat().st_size:
        # The first screen's rows are read while Textual loads (most of the wait from launch).
        from smsmon.timeutil import now_utc
        from smsmon.ui.first_look import FirstLook, app_reader

        reader = app_reader(settings.db, window=settings.watch_window, region=settings.default_region)
        look = FirstLook(reader, now_utc, live=ingest is not None)
    from smsmon.ui.app import SmsmonApp

    app = SmsmonApp(settings.db, ingest=ingest, window=settings.watch_window, zone=settings.display_timezone,
                    region=settings.default_region, first_look=look, forward=settings.forward.url is not None)
    if on_hangup is not None:
        app.on_hangup.append(on_hangup)
    app.run()
    if app.return_code:
        raise click.exceptions.Exit(app.return_code)


@cli.command(context_settings=CONTEXT)
@settings_options(listener=True)
def watch(settings: Settings, listener: ListenerConfig) -> None:
    """The live app: the callback listener and the configured pollers, into the database, on screen.

    Same listener options as `smsmon serve`. Keys: / filter, enter open, p pause, i insights,
    d dead letters, ? help, q quit.
    """
    from smsmon.ingest.runtime import Ingest

    _run_app(settings, Ingest(settings, listener=listener))


@cli.command(context_settings=CONTEXT)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same simulated traffic.")
@click.option("--listen", type=ADDRESS, default="127.0.0.1:0", show_default=True,
              help="Where the demo's listener listens (0: any free port).")
@click.option("--forward-to", default=None, metavar="URL",
              help="Relay the simulated callbacks to your app at URL, to try forwarding (only when given here).")
@settings_options(db_help=DEMO_DB_HELP)
def demo(seed: int, listen: Any, forward_to: str | None, settings: Settings) -> None:
    """The live app against simulated providers: no credentials needed.

    A fake Eazita API on loopback, polled by the real poller; simulated Zeckta callbacks posted to
    the real listener; all stored by the real writer. Without --db on its command line it runs on
    a temporary database, deleted when it ends; it never writes into a database holding real data.
    """
    from smsmon.ingest.listener import ListenerConfig
    from smsmon.sim.demo import TEMPORARY, DemoIngest, demo_database

    if forward_to is not None:
        settings = settings.override({"forward.url": forward_to}, source="flag")
    with demo_database(settings, lambda line: click.echo(line, err=True)) as settings:
        temporary = settings.sources.get("db") == TEMPORARY
        _run_app(settings, DemoIngest(settings, ListenerConfig(host=listen.host, port=listen.port), seed=seed),
                 on_hangup=(lambda: shutil.rmtree(Path(settings.db).parent, ignore_errors=True)) if temporary else None)


@cli.command(context_settings=CONTEXT)
@settings_options()
def browse(settings: Settings) -> None:
    """The app on a database, offline: no listener, no pollers. Follows rows another process
    (`smsmon serve` on the same file) adds."""
    from smsmon.store.backend import open_reader

    open_reader(settings.db).open().close()  # a clear error now rather than an empty screen
    _run_app(settings, None)


WEB_DEFAULT = "127.0.0.1:8790"


@cli.command(context_settings=CONTEXT)
@click.option("--listen", type=ADDRESS, default=WEB_DEFAULT, show_default=True, help="Where to serve the app.")
@click.option("--token", envvar="SMSMON_WEB_TOKEN", default=None,
              help="Needed to serve on a non-loopback address: open /?token=... once [env SMSMON_WEB_TOKEN, which keeps it out of `ps`].")
@click.option("--insecure", is_flag=True, help="Serve a non-loopback address without a token (something in front checks).")
@click.option("--title", default="smsmon", show_default=True, help="The browser tab's title.")
@settings_options()
def web(listen: Any, token: str | None, insecure: bool, title: str, settings: Settings) -> None:
    """The app in a browser, for people who will not open a terminal.

    Each browser tab runs its own `smsmon browse` on the database: the same screens and keys,
    offline, following the rows `smsmon serve` (or `watch`) adds. Loopback only by default; on
    another address it needs a token (or --insecure), given once as /?token=... and then kept in
    a cookie.
    """
    from smsmon.config import Secret
    from smsmon.store.backend import open_reader
    from smsmon.ui.web import browse_command, check, make_server

    secret = Secret(token) if token else None
    try:
        check(listen, secret, insecure)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    open_reader(settings.db).open().close()  # a clear error now rather than an empty page
    files = {src[5:] for src in settings.sources.values() if src.startswith("file ")}  # the config file read, if any
    db = None
    if is_postgres(settings.db):  # the tabs inherit it from the environment: never on a command line others can see
        os.environ["SMSMON_DB"] = settings.db.reveal()
    else:
        db = Path(settings.db)
    server = make_server(browse_command(db, Path(files.pop()) if files else None), listen, token=secret, title=title)
    server.serve()
