"""Running smsmon for months (issue 14): prune (retention by hand) and alerts (the rules and
their state now)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from smsmon.cli import cli
from smsmon.cli.options import CONTEXT, json_option, settings_options
from smsmon.cli.output import json_out, progress

if TYPE_CHECKING:  # annotations only: the commands import what they use when they run
    from smsmon.config import Settings


class DurationType(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        from smsmon.timeutil import parse_duration

        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@cli.command(context_settings=CONTEXT)
@click.option("--older-than", "older_than", type=DurationType(), default=None,
              help="Remove messages whose latest activity is older than this (90d, 2w, 36h) [default: setting retention].")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@click.option("--vacuum", type=click.Choice(["incremental", "full", "skip"]), default="incremental", show_default=True,
              help="Give the space back in small steps (writers carry on between them), all at once (VACUUM: smallest "
                   "file, writers wait until it ends), or not (new data reuses it; the file does not shrink).")
@click.option("--busy-timeout", type=click.FloatRange(0.01), default=5.0, show_default=True,
              help="Seconds to wait for a `serve` writing the same database, per batch.")
@json_option
@settings_options()
def prune(older_than: timedelta | None, dry_run: bool, vacuum: str, busy_timeout: float, as_json: bool,
          settings: Settings) -> None:
    """Remove old messages, with their events and forward-outbox rows, and poll runs and dead
    letters of the same age. Every figure stays exact: `smsmon stats` afterwards counts only
    what is left, as if the rest had never been.

    \b
    smsmon prune --older-than 90d --dry-run     what would go
    smsmon prune --older-than 90d               in batches of 500 messages; safe beside a running serve
    Set `retention` (SMSMON_RETENTION=90d) to have serve and watch do it every hour.
    The newest message is always kept, whatever its age (new ones are numbered after it).
    """
    from smsmon.errors import SmsmonError
    from smsmon.store.backend import exists
    from smsmon.store.prune import plan_file, prune_file
    from smsmon.timeutil import fmt, human_duration, now_utc

    keep = older_than or settings.retention
    if keep is None:
        raise click.UsageError("say how old: --older-than 90d (or set retention, e.g. SMSMON_RETENTION=90d)")
    if not exists(settings.db):
        raise SmsmonError(f"no database at {settings.db} (pass --db)")
    cutoff = fmt(now_utc() - keep)
    age = human_duration(keep.total_seconds()).replace(".0", "")
    if dry_run:
        result, size = plan_file(settings.db, cutoff), None
    else:
        report = progress("pruning", "messages")
        result, size = prune_file(settings.db, cutoff, busy_timeout=busy_timeout,
                                  vacuum="skipped" if vacuum == "skip" else vacuum, progress=report)
        if report:
            click.echo("", err=True)
    if as_json:
        json_out(result.to_dict() | {"older_than_seconds": keep.total_seconds(), "file_bytes": size})
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {result.messages:,} messages ({result.events:,} events), {result.outbox:,} forward-outbox rows, "
               f"{result.poll_runs:,} poll runs and {result.dead_letters:,} dead letters older than {age} "
               f"(before {cutoff})" + ("" if dry_run else f" in {result.seconds:.1f} s ({result.batches:,} batch{'es' if result.batches != 1 else ''})"), err=True)
    if result.shared:
        click.echo("another process (serve?) was writing the database: each batch left it room, so this took longer", err=True)
    if result.kept_newest:
        click.echo("kept the newest message although it is older: new messages and events are numbered after it", err=True)
    if dry_run:
        return
    if result.vacuum == "refused":
        click.echo("did not VACUUM: another process (serve?) is writing the database, and a VACUUM would hold it up until "
                   "it ends; run `--vacuum full` when nothing else writes (the space freed is reused meanwhile)", err=True)
    elif result.vacuum == "server":
        click.echo(f"PostgreSQL's autovacuum makes the space freed reusable by new data; the database's tables take "
                   f"{_mb(size or 0)} now (VACUUM FULL, by its administrator, gives space back to the disk)", err=True)
    elif result.vacuum == "none":
        click.echo(f"{settings.db} was made without incremental vacuum: the space freed is reused by new data, but the "
                   f"file does not shrink (now {_mb(size or 0)}). `smsmon prune --older-than {age} --vacuum full` rebuilds "
                   "it once (writers wait until it ends); later prunes then shrink it a step at a time.", err=True)
    elif result.vacuum != "skipped":
        click.echo(f"gave back {_mb(result.bytes_freed)}; the file is now {_mb(size or 0)}", err=True)


@cli.command(context_settings=CONTEXT)
@click.option("--check", is_flag=True, help="Exit 1 when an alert fires (for cron or a monitoring check).")
@click.option("--send-test", is_flag=True, help="Send a test notice to alerts.webhook and alerts.command, and say how it went.")
@json_option
@settings_options()
def alerts(check: bool, send_test: bool, as_json: bool, settings: Settings) -> None:
    """The alert rules, their thresholds and their state, judged on the database now.

    `serve` and `watch` judge the same rules every 15 s and send a notice (alerts.webhook,
    alerts.command) once when an alert starts and once when it clears; this command only
    looks, and works without them. Silence is judged here from the newest stored callback.

    \b
    SMSMON_ALERTS_DELIVERY_RATE_BELOW=90% SMSMON_ALERTS_SILENCE_AFTER=30m smsmon alerts
    smsmon alerts --check || echo "something is firing"
    """
    import asyncio

    from smsmon.alerts import RULES, SETTING, Tracker, evaluate, window_text
    from smsmon.errors import SmsmonError
    from smsmon.ingest.alerting import webhook_host
    from smsmon.ingest.operations import delivery_from, rules_from
    from smsmon.store.backend import exists, figures_source
    from smsmon.timeutil import fmt, now_utc

    rules = rules_from(settings.alerts)
    delivery = delivery_from(settings)
    if send_test:
        from smsmon import logs
        from smsmon.redact import Redactor

        if delivery is None:
            raise SmsmonError("nowhere to send: set alerts.webhook (SMSMON_ALERTS_WEBHOOK) or alerts.command (SMSMON_ALERTS_COMMAND)")
        body = {"source": "smsmon", "alert": "test", "state": "test", "at": fmt(now_utc()),
                "summary": "a test notice from `smsmon alerts --send-test`"}
        restore = logs.to_stderr(Redactor(settings.secrets))  # why a notice failed, redacted
        try:
            ok = asyncio.run(_send(delivery, body))
        finally:
            restore()  # as it was: a caller in the same process (a test, a script) keeps its logging
        for where, good in ok:
            click.echo(f"{where}: {'ok' if good else 'FAILED (the line above says why)'}", err=True)
        if not all(good for _, good in ok):
            raise click.exceptions.Exit(1)
        return
    if not exists(settings.db):
        raise SmsmonError(f"no database at {settings.db} (pass --db)")
    now = now_utc()
    source = figures_source(settings.db)
    try:
        figures = source.read(now=now, window=rules.window, watch_window=settings.watch_window,
                              silence=rules.silence_after, streak=rules.poll_failures or 0)
    finally:
        source.close()
    conditions = evaluate(rules, figures)
    tracker = Tracker()
    tracker.update(conditions, now)
    firing = tracker.firing()
    if as_json:
        json_out({
            "at": fmt(now), "window_seconds": rules.window.total_seconds(), "min_messages": rules.min_messages,
            "rules": [{"rule": r, "setting": SETTING[r], "threshold": _threshold(rules.threshold(r)), "on": rules.on(r),
                       "conditions": [{"subject": c.subject or None, "firing": c.active, "value": c.value, "summary": c.summary}
                                      for c in conditions if c.rule == r]} for r in RULES],
            "firing": [a.to_dict() for a in firing],
            "delivery": {"webhook": webhook_host(settings.alerts.webhook.reveal()) if settings.alerts.webhook else None,
                         "command": bool(settings.alerts.command)},
        })
    else:
        for r in RULES:
            if not rules.on(r):
                click.echo(f"  off     {r:<17} set {SETTING[r]} to turn it on")
                continue
            for c in (c for c in conditions if c.rule == r):
                name = f"{r} ({c.subject})" if c.subject else r
                click.echo(f"  {'FIRING' if c.active else 'ok':<7} {name:<17} {c.summary}")
        where = [f"webhook {webhook_host(settings.alerts.webhook.reveal())}"] if settings.alerts.webhook else []
        where += ["command " + settings.alerts.command.split()[0]] if settings.alerts.command else []
        click.echo(f"{len(firing)} firing; window {window_text(rules.window)}; notices go to "
                   f"{' and '.join(where) if where else 'the log only (set alerts.webhook or alerts.command)'}"
                   " when serve or watch runs", err=True)
    if check and firing:
        raise click.exceptions.Exit(1)


def _threshold(value: Any) -> Any:
    return value.total_seconds() if isinstance(value, timedelta) else value


async def _send(delivery: Any, body: dict[str, Any]) -> list[tuple[str, bool]]:
    from smsmon.ingest.alerting import webhook_host

    out = []
    if delivery.webhook is not None:
        out.append((f"webhook {webhook_host(delivery.webhook.reveal())}", await delivery.post(body)))
    if delivery.command is not None:
        out.append((f"command {delivery.command[0]}", await delivery.run_command(body)))
    return out
