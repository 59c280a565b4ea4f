"""The `smsmon` command line (SPEC §8).

Exit codes: 0 ok, 1 runtime failure, 2 usage error. Errors are one line on stderr, never a
traceback (set SMSMON_DEBUG=1 to see one). Machine output (--json, exports) goes to stdout.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from smsmon import __version__
from smsmon.errors import SmsmonError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str, code: int = 1) -> None:
    raise click.exceptions.Exit(_say_error(message, code))


def _say_error(message: str, code: int) -> int:
    click.secho(f"error: {message}", fg="red", err=True)
    return code


def common(f: Callable[..., Any]) -> Callable[..., Any]:
    """--db and --config, on every command that touches a database."""

    @click.option("--db", "db", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="SQLite database [env SMSMON_DB; default: the user data dir].")
    @click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="TOML config file [env SMSMON_CONFIG; default: the user config dir].")
    @functools.wraps(f)
    def wrapper(*args: Any, db: Path | None, config_file: Path | None, **kwargs: Any) -> Any:
        from smsmon import config

        settings = config.load(config_file, flags={"db": str(db) if db else None})
        return f(*args, settings=settings, **kwargs)

    return wrapper


class UserFacingError(click.ClickException):
    """An smsmon error shown as one line, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        _say_error(self.format_message(), self.exit_code)


class SmsmonGroup(click.Group):
    """Turns smsmon's own errors into one line and exit code 1, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SmsmonError as exc:
            raise UserFacingError(str(exc)) from None
        except ValueError as exc:  # a bad value that got past click (a time zone, a duration)
            raise UserFacingError(str(exc)) from None


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

    With no command, `smsmon` runs `smsmon watch`.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(watch)


# ── explain ─────────────────────────────────────────────────────────────────────
@cli.command(context_settings=CONTEXT)
@click.argument("code")
@click.option("--provider", type=click.Choice(["zeckta", "eazita", "smsmon"]), help="Only this provider's meaning.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@common
def explain(code: str, provider: str | None, as_json: bool, settings: Any) -> None:
    """Explain a status, error code, API code, flag or failure.

    \b
    smsmon explain DELIVERED        both providers' meaning
    smsmon explain 101              an Eazita error code
    smsmon explain -2 --provider eazita
    smsmon explain late_dlr         a flag smsmon sets
    An unrecognized code is explained as such, with how often it was seen in the database.
    """
    from smsmon import catalogue
    from smsmon.cli_output import render_entry, sightings

    entries = catalogue.explain(code, provider)
    seen = sightings(settings.db_path, code, provider) if not entries[0].recognized else None
    if as_json:
        out = [e.to_dict() for e in entries]
        if seen is not None:
            out[0]["seen"] = seen
        _json_out(out)
        return
    for i, entry in enumerate(entries):
        if i:
            click.echo()
        click.echo(render_entry(entry, seen if i == 0 else None))


# ── show ────────────────────────────────────────────────────────────────────────
@cli.command(context_settings=CONTEXT)
@click.argument("message")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@common
def show(message: str, as_json: bool, settings: Any) -> None:
    """One message's drill-down: facts, timeline, explanations, raw payloads.

    MESSAGE is `provider:id`, or a bare id, uuid, reference or phone number when only one
    message matches (otherwise the candidates are listed).
    """
    from smsmon.cli_output import message_detail, render_detail
    from smsmon.errors import Ambiguous
    from smsmon.store import queries
    from smsmon.store.schema import open_readonly

    conn = open_readonly(settings.db_path)
    try:
        mid = queries.resolve(conn, message)
    except Ambiguous as exc:
        if as_json:
            _json_out({"error": str(exc), "candidates": exc.candidates})
        else:
            click.echo(f"error: {exc}", err=True)
            for c in exc.candidates:
                click.echo(f"  {c['id']:<50} {c['status']:<14} {c['dest'] or '':<16} {c['last_event_at'] or ''}", err=True)
        raise click.exceptions.Exit(1) from None
    detail = message_detail(conn, mid, settings.window)
    if as_json:
        _json_out(detail)
    else:
        click.echo(render_detail(detail))


# ── stats ───────────────────────────────────────────────────────────────────────
@cli.command(context_settings=CONTEXT)
@click.option("--filter", "-f", "expr", default="", help="A filter, as in the app: status:, provider:, since:2h, ...")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@common
def stats(expr: str, as_json: bool, settings: Any) -> None:
    """Delivery rate, time to deliver, outcomes, stale messages, failures by code and network."""
    from smsmon import filters
    from smsmon.cli_output import render_stats
    from smsmon.store import queries
    from smsmon.store.schema import open_readonly
    from smsmon.timeutil import now_utc

    now = now_utc()
    flt = filters.parse(expr, now)
    conn = open_readonly(settings.db_path)
    result = queries.stats(conn, flt, now=now, window=settings.window)
    if as_json:
        _json_out(dict(result.to_dict(), filter=flt.source or None, database=str(settings.db_path)))
    else:
        click.echo(render_stats(result, flt.source, settings.window))


# ── export ──────────────────────────────────────────────────────────────────────
@cli.command(context_settings=CONTEXT)
@click.option("--table", type=click.Choice(["messages", "events"]), default="messages", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "ndjson"]), default="csv", show_default=True)
@click.option("--filter", "-f", "expr", default="", help="Only messages matching this filter (for events: their events).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@common
def export(table: str, fmt: str, expr: str, output: Path | None, settings: Any) -> None:
    """Export messages or events as CSV, JSON or NDJSON.

    \b
    smsmon export --format csv -o messages.csv
    smsmon export --table events --format ndjson --filter "status:failed since:24h" | jq .
    """
    from smsmon import filters
    from smsmon.cli_output import EVENT_EXPORT_COLUMNS, MESSAGE_EXPORT_COLUMNS, write_export
    from smsmon.store import queries
    from smsmon.store.schema import open_readonly
    from smsmon.timeutil import now_utc

    now = now_utc()
    flt = filters.parse(expr, now)
    conn = open_readonly(settings.db_path)
    rows = (queries.iter_messages(conn, flt, now=now, window=settings.window) if table == "messages"
            else queries.iter_events(conn, flt, now=now, window=settings.window))
    try:
        stream = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    try:
        columns = MESSAGE_EXPORT_COLUMNS if table == "messages" else EVENT_EXPORT_COLUMNS
        n = write_export(rows, fmt, stream, columns)
    finally:
        if output:
            stream.close()
    click.echo(f"exported {n} {table}" + (f" to {output}" if output else ""), err=True)


# ── import ──────────────────────────────────────────────────────────────────────
@cli.command("import", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=str))
@click.option("--timezone", "tz", default=None, help="Zone of Eazita dates [setting eazita.timezone].")
@click.option("--max-errors", default=20, show_default=True, help="How many bad lines to list.")
@common
def import_(file: str, tz: str | None, max_errors: int, settings: Any) -> None:
    """Load stored callbacks and delivery reports (NDJSON) through the writer.

    Each line is a Zeckta callback (has eventId), an Eazita report row (has message_id) or a
    whole Eazita response ({"code": 1, "data": [...]}). A bad line is reported with its line
    number and skipped; the rest is imported. Use - to read standard input.
    """
    from smsmon.importer import import_lines
    from smsmon.timeutil import zone

    zone_info = zone(tz) if tz else settings.tz
    try:
        stream = sys.stdin.buffer if file == "-" else open(file, "rb")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    with stream:
        result = import_lines(stream, settings.db_path, tz=zone_info, progress=_progress("importing", "lines"))
    for line_no, reason in result.bad[:max_errors]:
        click.echo(f"line {line_no}: {reason}", err=True)
    if result.bad_count > max_errors:
        click.echo(f"... and {result.bad_count - max_errors} more bad lines", err=True)
    click.echo(
        f"imported {result.new} new events ({result.duplicates} duplicates) from {result.lines} lines"
        f" into {settings.db_path}; {result.bad_count} bad lines skipped", err=True,
    )
    if result.bad_count and not result.new and not result.duplicates:
        raise click.exceptions.Exit(1)


# ── the app ─────────────────────────────────────────────────────────────────────
def _listener_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--listen", default=None, metavar="HOST:PORT", help="Where to listen [setting listen; default 127.0.0.1:8787]."),
        click.option("--token", default=None, help="Callback token [env SMSMON_CALLBACK_TOKEN, which keeps it out of `ps`]."),
        click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="HTTPS certificate (PEM)."),
        click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="HTTPS private key (PEM)."),
        click.option("--allow-from", multiple=True, metavar="CIDR", help="Only these addresses may call (repeatable)."),
        click.option("--insecure", is_flag=True, help="Allow a non-loopback address without a token."),
    ]):
        f = option(f)
    return f


def _listener_config(settings: Any, listen: str | None, token: str | None, tls_cert: Path | None, tls_key: Path | None,
                     allow_from: tuple[str, ...], insecure: bool) -> Any:
    from smsmon.ingest.listener import ListenerConfig, parse_listen, parse_networks

    host, port = parse_listen(listen or settings.listen)
    config = ListenerConfig(host=host, port=port, token=token or settings.callback_token,
                            allow_from=parse_networks(list(allow_from)), tls_cert=tls_cert, tls_key=tls_key, insecure=insecure)
    config.check()
    return config


def _run_app(app: Any) -> None:
    app.run()
    if app.return_code:
        raise click.exceptions.Exit(app.return_code)


@cli.command(context_settings=CONTEXT)
@_listener_options
@common
def watch(listen: str | None, token: str | None, tls_cert: Path | None, tls_key: Path | None, allow_from: tuple[str, ...],
          insecure: bool, settings: Any) -> None:
    """The live app: the callback listener and the configured pollers, into the database, on screen.

    Same listener options as `smsmon serve`. Keys: / filter, enter open, p pause, i insights,
    d dead letters, ? help, q quit.
    """
    from smsmon.ui.app import SmsmonApp

    config = _listener_config(settings, listen, token, tls_cert, tls_key, allow_from, insecure)
    _run_app(SmsmonApp(settings.db_path, mode="watch", settings=settings, listener_config=config, window=settings.window))


@cli.command(context_settings=CONTEXT)
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same simulated traffic.")
@click.option("--listen", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT",
              help="Where the demo's listener listens (0: any free port).")
@common
def demo(seed: int, listen: str, settings: Any) -> None:
    """The live app against simulated providers: no credentials needed.

    A fake Eazita API on loopback, polled by the real poller; simulated Zeckta callbacks posted to
    the real listener; all stored by the real writer in a fresh database (or --db).
    """
    import tempfile

    from smsmon.ingest.listener import ListenerConfig, parse_listen
    from smsmon.ui.app import SmsmonApp

    if settings.sources.get("db") == "default":
        settings.values["db"] = str(Path(tempfile.mkdtemp(prefix="smsmon-demo-")) / "demo.db")
    host, port = parse_listen(listen)
    app = SmsmonApp(settings.db_path, mode="demo", settings=settings, listener_config=ListenerConfig(host=host, port=port),
                    window=settings.window, seed=seed)
    _run_app(app)
    click.echo(f"the demo's database is {settings.db_path}: `smsmon browse --db {settings.db_path}` to look again", err=True)


@cli.command(context_settings=CONTEXT)
@common
def browse(settings: Any) -> None:
    """The app on a database, offline: no listener, no pollers. Follows rows another process
    (`smsmon serve` on the same file) adds."""
    from smsmon.store.schema import open_readonly
    from smsmon.ui.app import SmsmonApp

    open_readonly(settings.db_path).close()  # a clear error now rather than an empty screen
    _run_app(SmsmonApp(settings.db_path, mode="browse", window=settings.window))


# ── serve ───────────────────────────────────────────────────────────────────────
@cli.command(context_settings=CONTEXT)
@click.option("--listen", default=None, metavar="HOST:PORT", help="Where to listen [setting listen; default 127.0.0.1:8787].")
@click.option("--token", default=None, help="Callback token [env SMSMON_CALLBACK_TOKEN, which keeps it out of `ps`].")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="HTTPS certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="HTTPS private key (PEM).")
@click.option("--allow-from", multiple=True, metavar="CIDR", help="Only these addresses may call (repeatable); others get 403.")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback address without a token.")
@click.option("--busy-timeout", type=click.FloatRange(0.01), default=5.0, show_default=True,
              help="Seconds to wait for a database locked by another process before answering 503.")
@click.option("--no-poll", is_flag=True, help="Run only the listener, even where pollers are configured.")
@common
def serve(listen: str | None, token: str | None, tls_cert: Path | None, tls_key: Path | None, allow_from: tuple[str, ...],
          insecure: bool, busy_timeout: float, no_poll: bool, settings: Any) -> None:
    """Run the callback listener, and the pollers that are configured, headless, logging to stderr.

    Every accepted callback is committed to the database before it is answered 200.
    Stops cleanly on Ctrl+C or SIGTERM: no new connections, every callback in flight committed.

    \b
    SMSMON_CALLBACK_TOKEN=$(openssl rand -hex 16) smsmon serve --listen 0.0.0.0:8787 \\
        --tls-cert cert.pem --tls-key key.pem
    """
    from smsmon.ingest.listener import ListenerConfig, parse_listen, parse_networks
    from smsmon.serve import run_serve

    host, port = parse_listen(listen or settings.listen)
    config = ListenerConfig(host=host, port=port, token=token or settings.callback_token,
                            allow_from=parse_networks(list(allow_from)), tls_cert=tls_cert, tls_key=tls_key,
                            insecure=insecure)
    config.check()
    run_serve(settings, config, busy_timeout=busy_timeout, pollers=not no_poll)


# ── poll ────────────────────────────────────────────────────────────────────────
@cli.command(context_settings=CONTEXT)
@click.option("--once", is_flag=True, help="One cycle of each configured poller, then a summary.")
@click.option("--provider", type=click.Choice(["eazita", "zeckta"]), help="Only this provider's poller.")
@click.option("--message", "message", default=None, metavar="ID",
              help="Ask the provider about this one message now (an id, uuid, reference or number, as for `show`).")
@click.option("--json", "as_json", is_flag=True, help="With --once or --message: the outcome as JSON on stdout.")
@common
def poll(once: bool, provider: str | None, message: str | None, as_json: bool, settings: Any) -> None:
    """Pull delivery reports headless: Eazita's reports, Zeckta's Status API for silent messages.

    \b
    SMSMON_EAZITA_API_KEY=... SMSMON_EAZITA_PASSWORD=... smsmon poll --once
    smsmon poll                     # every interval until Ctrl+C, backing off on failures
    smsmon poll --message +233241234567   # ask about one message now
    Exits 1 when a --once poll failed; the error says why (`smsmon explain <code>` says more).
    """
    from smsmon.ingest.poller import describe
    from smsmon.serve import run_poll

    if message is not None:
        from smsmon.store import queries
        from smsmon.store.schema import open_readonly

        conn = open_readonly(settings.db_path)
        message = queries.resolve(conn, message)
        conn.close()
    outcomes = run_poll(settings, once=once, only=provider, message=message)
    if as_json:
        _json_out([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            click.echo(describe(o), err=True)
            if not o.ok:
                from smsmon import catalogue

                specific = catalogue.lookup(o.api_code, "eazita") if o.api_code and o.api_code != "1" else []
                for entry in specific or catalogue.lookup(o.error_code or ""):
                    click.echo(f"  {entry.title}: {entry.action}", err=True)
    if any(not o.ok for o in outcomes):
        raise click.exceptions.Exit(1)


# ── config ──────────────────────────────────────────────────────────────────────
@cli.command("config", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@common
def config_(as_json: bool, settings: Any) -> None:
    """Show the effective settings, secrets masked, and where each came from."""
    rows = settings.shown()
    if as_json:
        _json_out([{"setting": k, "value": v, "source": src} for k, v, src in rows])
        return
    width = max(len(k) for k, _, _ in rows)
    for k, v, src in rows:
        click.echo(f"{k:<{width}}  {v:<40}  {src}")


# ── sim ─────────────────────────────────────────────────────────────────────────
@cli.group(cls=SmsmonGroup, context_settings=CONTEXT)
def sim() -> None:
    """Simulated provider traffic."""


@sim.command(context_settings=CONTEXT)
@click.option("--messages", type=click.IntRange(1), default=None, help="How many messages (default 1000).")
@click.option("--events", type=click.IntRange(1), default=None, help="Instead of --messages: about this many stored events.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same traffic.")
@click.option("--days", type=click.FloatRange(0.01), default=7.0, show_default=True, help="Spread over this many days up to now.")
@common
def generate(messages: int | None, events: int | None, seed: int, days: float, settings: Any) -> None:
    """Fill a database with realistic traffic through the real parsers and writer.

    Both providers, every status, known and unknown error codes, several networks,
    out-of-order and duplicate events.
    """
    from smsmon.sim.generate import fill

    result = fill(settings.db_path, messages=messages, events=events, seed=seed, days=days,
                  progress=_progress("generating", "events"))
    click.echo(f"stored {result.new} events ({result.duplicates} duplicates) for {result.messages} messages"
               f" in {settings.db_path} at {result.rate:,.0f} events/s", err=True)


# ── simulate ────────────────────────────────────────────────────────────────────
@cli.command(context_settings=CONTEXT)
@click.option("--target", default=None, metavar="URL",
              help="Callback URL [default: the local listener, http://127.0.0.1:8787/callbacks/zeckta, with the token if set].")
@click.option("--rate", type=click.FloatRange(0.1, 100_000), default=20.0, show_default=True, help="Callbacks a second.")
@click.option("--count", type=click.IntRange(1), default=100, show_default=True, help="How many callbacks.")
@click.option("--forever", is_flag=True, help="Keep sending until Ctrl+C (ignores --count).")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same callbacks.")
@click.option("--duplicates", type=float, default=0.03, show_default=True, help="Share of callbacks sent twice.")
@click.option("--out-of-order", type=float, default=0.05, show_default=True, help="Share held up to arrive after a later one.")
@click.option("--unknown", type=float, default=0.01, show_default=True, help="Share of messages with an unknown event type.")
@click.option("--malformed", type=float, default=0.01, show_default=True, help="Share of messages followed by a malformed body.")
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON on stdout.")
@common
def simulate(target: str | None, rate: float, count: int, forever: bool, seed: int, duplicates: float, out_of_order: float,
             unknown: float, malformed: float, as_json: bool, settings: Any) -> None:
    """Send realistic Zeckta delivery callbacks to a listener, like `stripe trigger`.

    \b
    smsmon serve &                              # in one terminal
    smsmon simulate --count 500 --rate 50       # in another
    smsmon simulate --target https://example.org/callbacks/zeckta/TOKEN --forever
    """
    import asyncio

    from smsmon.ingest.listener import CALLBACK_PATH, parse_listen
    from smsmon.sim.sender import Mix, send

    mix = Mix(duplicates, out_of_order, unknown, malformed)
    mix.check()
    if target is None:
        host, port = parse_listen(settings.listen)
        token = f"/{settings.callback_token}" if settings.callback_token else ""
        target = f"http://{host}:{port}{CALLBACK_PATH}{token}"
    from smsmon.redact import Redactor

    shown = Redactor([settings.callback_token])(target)
    click.echo(f"sending {'callbacks until Ctrl+C' if forever else f'{count:,} callbacks'} to {shown} at {rate:g}/s"
               f" (seed {seed})", err=True)

    def progress(report: Any) -> None:
        if sys.stderr.isatty():
            click.echo("\r" + report.line(), err=True, nl=False)

    async def run() -> Any:
        stop = asyncio.Event()
        if forever:
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        return await send(target, rate=rate, count=None if forever else count, seed=seed, mix=mix, stop=stop,
                          on_progress=progress)

    report = asyncio.run(run())
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(report.line(), err=True)
    if as_json:
        _json_out(report.to_dict())
    if report.errors and report.errors == report.sent:
        fail(f"could not reach {shown}: {report.last_error} (is `smsmon serve` running there?)")


# ── bench ───────────────────────────────────────────────────────────────────────
@cli.group(cls=SmsmonGroup, context_settings=CONTEXT)
def bench() -> None:
    """Benchmarks that print figures."""


@bench.command("store", context_settings=CONTEXT)
@click.option("--events", "size", type=click.IntRange(1000), default=1_000_000, show_default=True,
              help="Size of the large database.")
@click.option("--fresh-events", type=click.IntRange(1000), default=100_000, show_default=True,
              help="Events written to a fresh database.")
@click.option("--db", "large_db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the large database here and reuse it next time (default: a temporary file).")
@click.option("--repeat", type=click.IntRange(3), default=21, show_default=True, help="Runs of each read query.")
@click.option("--json", "as_json", is_flag=True, help="Figures as JSON on stdout.")
def bench_store(size: int, fresh_events: int, large_db: Path | None, repeat: int, as_json: bool) -> None:
    """Writer throughput (batches of 500, synchronous=FULL) on a fresh and on a large database,
    and the time of each read query on the large one."""
    from smsmon.bench import store_bench

    figures = store_bench(size=size, fresh_events=fresh_events, large_db=large_db, repeat=repeat,
                          say=lambda s: click.echo(s, err=True))
    if as_json:
        _json_out(figures)


@bench.command("ingest", context_settings=CONTEXT)
@click.option("--seconds", type=click.IntRange(1), default=10, show_default=True, help="Length of each run.")
@click.option("--connections", type=click.IntRange(1), default=64, show_default=True, help="Concurrent connections.")
@click.option("--rate", type=click.IntRange(1), default=1000, show_default=True, help="Callbacks/s of the steady-rate run.")
@click.option("--large-db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A large database to run against (built when missing; default: a temporary one).")
@click.option("--large-events", type=click.IntRange(1000), default=1_000_000, show_default=True,
              help="Size of the large database when it is built.")
@click.option("--skip-large", is_flag=True, help="Leave out the run against a large database.")
@click.option("--json", "as_json", is_flag=True, help="Figures as JSON on stdout.")
def bench_ingest(seconds: int, connections: int, rate: int, large_db: Path | None, large_events: int, skip_large: bool,
                 as_json: bool) -> None:
    """Callbacks/s and latency of `smsmon serve` next to a bare aiohttp endpoint, under the same
    load (wrk when installed), on a fresh and on a large database; and p99 at a steady rate."""
    from smsmon.bench_ingest import ingest_bench

    figures = ingest_bench(seconds=seconds, connections=connections, rate=rate, large_db=large_db,
                           large_events=large_events, skip_large=skip_large, say=lambda s: click.echo(s, err=True))
    if as_json:
        _json_out(figures)


@bench.command("ui", context_settings=CONTEXT)
@click.option("--db", "large_db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A large database to browse (built when missing; default: a temporary one).")
@click.option("--events", type=click.IntRange(1000), default=1_000_000, show_default=True, help="Size of the database when built.")
@click.option("--rate", type=click.IntRange(1), default=500, show_default=True, help="Callbacks/s into watch during the key test.")
@click.option("--presses", type=click.IntRange(5), default=100, show_default=True, help="Key presses to time.")
@click.option("--json", "as_json", is_flag=True, help="Figures as JSON on stdout.")
def bench_ui(large_db: Path | None, events: int, rate: int, presses: int, as_json: bool) -> None:
    """Time to first paint and memory while browsing a large database; key-press latency while
    `smsmon simulate` pushes callbacks into `watch`."""
    from smsmon.ui.bench import ui_bench

    figures = ui_bench(db=large_db, events=events, rate=rate, presses=presses, say=lambda s: click.echo(s, err=True))
    if as_json:
        _json_out(figures)


# ── helpers ─────────────────────────────────────────────────────────────────────
def _json_out(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _progress(verb: str, unit: str) -> Callable[[int], None] | None:
    """A progress line on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def report(n: int) -> None:
        click.echo(f"\r{verb}: {n:,} {unit}", err=True, nl=False)

    return report


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every failure into one line and an exit code."""
    try:
        rv = cli.main(args=argv, prog_name="smsmon", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`smsmon export | head`): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except SmsmonError as exc:
        sys.exit(_say_error(str(exc), 1))
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if os.environ.get("SMSMON_DEBUG"):
            raise
        sys.exit(_say_error(f"internal error: {type(exc).__name__}: {exc} (set SMSMON_DEBUG=1 for a traceback)", 1))
