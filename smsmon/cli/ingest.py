"""Commands that write a database: serve (the listener and pollers, headless), poll, import."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from smsmon.cli import cli
from smsmon.present import plural
from smsmon.cli.options import CONTEXT, ZONE, settings_options
from smsmon.cli.output import json_out, progress
from smsmon.config import Address

if TYPE_CHECKING:  # annotations only: the commands import what they use when they run
    from smsmon.config import Settings
    from smsmon.ingest.listener import ListenerConfig

log = logging.getLogger("smsmon.serve")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@cli.command(context_settings=CONTEXT)
@click.option("--busy-timeout", type=click.FloatRange(0.01), default=5.0, show_default=True,
              help="Seconds to wait for a database locked by another process before answering 503.")
@click.option("--no-poll", is_flag=True, help="Run only the listener, even where pollers are configured.")
@settings_options(listener=True)
def serve(busy_timeout: float, no_poll: bool, settings: Settings, listener: ListenerConfig) -> None:
    """Run the callback listener, and the pollers that are configured, headless, logging to stderr.

    Every accepted callback is committed to the database before it is answered 200.
    Stops cleanly on Ctrl+C or SIGTERM: no new connections, every callback in flight committed.

    \b
    SMSMON_CALLBACK_TOKEN=$(openssl rand -hex 16) smsmon serve --listen 0.0.0.0:8787 \\
        --tls-cert cert.pem --tls-key key.pem
    """
    from smsmon import logs
    from smsmon.ingest.runtime import NOT_CONFIGURED, Ingest
    from smsmon.redact import Redactor

    logs.to_stderr(Redactor(settings.secrets))
    ingest = Ingest(settings, listener=listener, pollers=not no_poll, busy_timeout=busy_timeout)
    ingest.preflight()

    async def run() -> None:
        stop = _stop_on_signals()
        await ingest.start()
        try:
            gc.freeze()  # what start-up made lives as long as the process: keep the collector off it
            assert ingest.committer is not None and ingest.listener is not None
            log.info("smsmon serve: database %s (%s events)", settings.db, f"{ingest.committer.last_event_id:,}")
            log.info("listening on %s", ingest.health.listening)
            log.info("give Zeckta this callback URL: %s%s", ingest.health.callback_url,
                     "  (the token is masked here: use yours)" if listener.token else "")
            for line in _reachability(listener):
                log.info("%s", line)
            if listener.allow_from:
                log.info("accepting only from %s", ", ".join(str(n) for n in listener.allow_from))
            if listener.trust_proxy:
                log.info("believing X-Forwarded-For and X-Forwarded-Proto from %s only",
                         ", ".join(str(n) for n in listener.trust_proxy))
            if ingest.health.forward is not None:
                log.info("forwarding every new callback to %s (at least once; `smsmon forward status` lists what waits)",
                         ingest.health.forward.target)
            for s in ingest.scheduled:
                log.info("polling %s every %g s at %s", s.poller.provider, s.interval, s.base_url)
            if not no_poll and not ingest.scheduled:
                log.info("not polling (%s)", NOT_CONFIGURED.split(": ", 1)[1].split(" (or")[0])
            for line in ingest.operations.describe(listener.public_url or ingest.health.listening, bool(listener.token)) if ingest.operations else ():
                log.info("%s", line)
            log.info("health: %s/healthz%s   stop: Ctrl+C", listener.public_url or ingest.health.listening,
                     " (details: /healthz/<token>)" if listener.token else "")
            ingest.run_pollers()
            await stop.wait()
            log.info("stopping: no new connections; committing callbacks in flight")
        finally:
            await ingest.stop()
            if ingest.committer is not None:
                log.info("stopped: %s new events and %s duplicates stored this run; database %s",
                         f"{ingest.committer.events_stored:,}", f"{ingest.committer.duplicates:,}", settings.db)

    asyncio.run(run())


def _reachability(listener: ListenerConfig) -> list[str]:
    """What to know about the URL shown: Zeckta cannot reach loopback, and asks for HTTPS."""
    if listener.public_url is None:
        if Address(listener.host, listener.port).loopback:
            return ["(that address is this machine only: put a proxy or tunnel in front and pass --public-url; "
                    "the README has recipes for Caddy, nginx, cloudflared and ngrok)"]
        return []
    if listener.public_url.startswith("http://"):
        return ["(--public-url is http://: Zeckta asks for a publicly reachable HTTPS endpoint)"]
    return []


@cli.command(context_settings=CONTEXT)
@click.option("--once", is_flag=True, help="One cycle of each configured poller, then a summary.")
@click.option("--provider", type=click.Choice(["eazita", "zeckta"]), help="Only this provider's poller.")
@click.option("--message", "message", default=None, metavar="ID",
              help="Ask the provider about this one message now (an id, uuid, reference or number, as for `show`).")
@click.option("--json", "as_json", is_flag=True, help="With --once or --message: the outcome as JSON on stdout.")
@settings_options()
def poll(once: bool, provider: str | None, message: str | None, as_json: bool, settings: Settings) -> None:
    """Pull delivery reports headless: Eazita's reports, Zeckta's Status API for silent messages.

    \b
    SMSMON_EAZITA_API_KEY=... SMSMON_EAZITA_PASSWORD=... smsmon poll --once
    smsmon poll                     # every interval until Ctrl+C, backing off on failures
    smsmon poll --message +233241234567   # ask about one message now
    Exits 1 when a --once poll failed; the error says why (`smsmon explain <code>` says more).
    """
    from smsmon import catalogue, logs
    from smsmon.errors import SmsmonError
    from smsmon.ingest.poller import describe
    from smsmon.ingest.runtime import NOT_CONFIGURED, Ingest
    from smsmon.redact import Redactor
    from smsmon.store.backend import open_reader as Reader

    if message is not None:
        with Reader(settings.db, region=settings.default_region) as reader:
            message = reader.resolve(message)
        provider = message.split(":", 1)[0]
    ingest = Ingest(settings, only=provider)
    if not ingest.configured_pollers:
        raise SmsmonError(NOT_CONFIGURED if provider is None else f"{provider} is not configured: {NOT_CONFIGURED.split(': ', 1)[1]}")
    logs.to_stderr(Redactor(settings.secrets))

    async def run() -> list[Any]:
        async with ingest:
            if message is not None:
                return [await ingest.refresh(message)]
            if once:
                return await ingest.poll_once()
            stop = _stop_on_signals()
            for s in ingest.scheduled:
                log.info("polling %s every %g s; stop: Ctrl+C", s.poller.provider, s.interval)
            ingest.run_pollers()
            await stop.wait()
            return []

    outcomes = asyncio.run(run())
    if as_json:
        json_out([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            click.echo(describe(o), err=True)
            if not o.ok:
                specific = catalogue.lookup(o.api_code, "eazita") if o.api_code and o.api_code != "1" else []
                for entry in specific or catalogue.lookup(o.error_code or ""):
                    click.echo(f"  {entry.title}: {entry.action}", err=True)
    if any(not o.ok for o in outcomes):
        raise click.exceptions.Exit(1)


@cli.command("import", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=str))
@click.option("--timezone", "tz", type=ZONE, default=None, help="Zone of Eazita dates [setting eazita.timezone].")
@click.option("--max-errors", default=20, show_default=True, help="How many bad lines to list.")
@settings_options()
def import_(file: str, tz: Any, max_errors: int, settings: Settings) -> None:
    """Load stored callbacks and delivery reports (NDJSON) through the writer.

    Each line is a Zeckta callback (has eventId), an Eazita report row (has message_id) or a
    whole Eazita response ({"code": 1, "data": [...]}). A bad line is reported with its line
    number and skipped; the rest is imported. Use - to read standard input.
    """
    from smsmon.cli import UserError
    from smsmon.importer import import_lines

    try:
        stream = sys.stdin.buffer if file == "-" else open(file, "rb")
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror}") from None
    with stream:
        result = import_lines(stream, settings.db, tz=tz or settings.eazita.timezone, region=settings.default_region,
                              progress=progress("importing", "lines"))
    for line_no, reason in result.bad[:max_errors]:
        click.echo(f"line {line_no}: {reason}", err=True)
    if result.bad_count > max_errors:
        click.echo(f"... and {plural(result.bad_count - max_errors, 'more bad line')}", err=True)
    click.echo(
        f"imported {plural(result.new, 'new event')} ({plural(result.duplicates, 'duplicate')}) from"
        f" {plural(result.lines, 'line')} into {settings.db}; {plural(result.bad_count, 'bad line')} skipped", err=True,
    )
    if result.bad_count and not result.new and not result.duplicates:
        raise click.exceptions.Exit(1)
