"""dead-letters: the callbacks the parser refused (answered 400), listed, read and replayed
after a fix (issue 13); forward: what waits to be relayed to `--forward-to`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from smsmon.cli import UserError, cli
from smsmon.cli.options import CONTEXT, json_option, settings_options
from smsmon.cli.output import json_out, plural

if TYPE_CHECKING:  # annotations only: the commands import what they use when they run
    from smsmon.config import Settings


class WhenType(click.ParamType):
    """A point in time, as the filter's since: takes it (2h, yesterday, 2026-06-09, an ISO time): UTC text."""

    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from smsmon.timeutil import fmt, now_utc, parse_when

        try:
            return fmt(parse_when(str(value), now_utc()))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


WHEN = WhenType()
SINCE = click.option("--since", type=WHEN, default=None, help="Only those received since: 2h, yesterday, 2026-06-09, an ISO time.")


def _printable(text: str) -> str:
    from smsmon.logs import printable

    return printable(text, newlines=True)


@cli.group("dead-letters", context_settings=CONTEXT)
def dead_letters() -> None:
    """Callbacks the parser refused (answered 400), kept with the reason, the request's headers
    (secrets masked) and the body: list them, read one, replay them after a fix.

    \b
    smsmon dead-letters list --since 24h
    smsmon dead-letters show 12
    smsmon dead-letters replay --all          # after upgrading smsmon: what parses now becomes an event
    """


@dead_letters.command("list", context_settings=CONTEXT)
@SINCE
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="At most this many (newest first).")
@json_option
@settings_options()
def list_(since: str | None, limit: int, as_json: bool, settings: Settings) -> None:
    """The newest dead letters: when, from where, size and reason."""
    from smsmon.store.backend import open_reader as Reader

    with Reader(settings.db) as reader:
        rows = reader.dead_letters_where(since=since, limit=limit)
        total = len(reader.dead_letter_ids(since=since))
    if as_json:
        json_out([dict(r, headers=json.loads(r["headers"]) if r["headers"] else None) for r in rows])
        return
    if not rows:
        click.echo("no dead letters" + (" received since then" if since else ": every callback so far was well formed"), err=True)
        return
    zone = settings.display_timezone
    click.echo(f"{'id':>6}  {'received (' + zone.label + ')':<22}  {'from':<16}  {'bytes':>6}  reason")
    for r in rows:
        click.echo(f"{r['id']:>6}  {zone.show(r['received_at']):<22}  {(r['remote'] or '?')[:16]:<16}  {r['size']:>6,}  "
                   f"{_printable(r['reason'])}" + (f"  (replayed {zone.show(r['replayed_at'])})" if r["replayed_at"] else ""))
    click.echo(f"{plural(total, 'dead letter')}{' since then' if since else ''}; read one with `smsmon dead-letters show ID`,"
               " replay them with `smsmon dead-letters replay --all`", err=True)


@dead_letters.command("show", context_settings=CONTEXT)
@click.argument("letter_id", type=int, metavar="ID")
@json_option
@settings_options()
def show(letter_id: int, as_json: bool, settings: Settings) -> None:
    """One dead letter: its reason, the request's headers and the body as received."""
    from smsmon.store.backend import open_reader as Reader

    with Reader(settings.db) as reader:
        rows = reader.dead_letters_where(ids=[letter_id])
    if not rows:
        raise UserError(f"no dead letter #{letter_id} (`smsmon dead-letters list` shows them)")
    r = rows[0]
    headers = json.loads(r["headers"]) if r["headers"] else None
    if as_json:
        json_out(dict(r, headers=headers))
        return
    zone = settings.display_timezone
    lines = [f"dead letter #{r['id']}   (times in {zone.label})",
             f"  received  {zone.show(r['received_at'], fraction=True)} from {r['remote'] or '?'}",
             f"  path      {r['path']}", f"  reason    {_printable(r['reason'])}"]
    if r["replayed_at"]:
        lines.append(f"  replayed  {zone.show(r['replayed_at'])}: it still fails, with the reason above")
    lines += ["", "Headers" + ("" if headers is not None else " (not kept: received before smsmon kept them)")]
    lines += [f"  {_printable(k)}: {_printable(str(v))}" for k, v in (headers or {}).items()]
    body = r["body"] or ""
    try:
        body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        pass  # not JSON (that may be why it was refused): shown as it came
    lines += ["", f"Body ({r['size']:,} bytes kept)" if body else "Body: empty"]
    lines += ["  " + ln for ln in _printable(body).splitlines()]
    click.echo("\n".join(lines))


@dead_letters.command("replay", context_settings=CONTEXT)
@click.option("--id", "ids", type=int, multiple=True, metavar="N", help="This dead letter (repeatable).")
@click.option("--all", "all_", is_flag=True, help="Every dead letter (received since --since).")
@SINCE
@json_option
@settings_options()
def replay(ids: tuple[int, ...], all_: bool, since: str | None, as_json: bool, settings: Settings) -> None:
    """Run dead letters through the parser again, after a fix: one that parses now becomes an
    event (a callback stored already is a duplicate and changes nothing) and leaves the dead
    letters; one that still fails stays, with its new reason. Exits 1 when one still fails.

    Where forwarding is configured (forward.url), a replayed callback is relayed as well.
    """
    from smsmon.ingest.replay import replay as run_replay
    from smsmon.store.backend import open_reader as Reader

    if bool(ids) == all_:
        raise click.UsageError("say which: --id N (repeatable) or --all")
    with Reader(settings.db) as reader:
        known = set(reader.dead_letter_ids(since=since))
    missing = [i for i in ids if i not in known]
    result = run_replay(settings.db, ids=None if all_ else [i for i in ids if i in known], since=since, region=settings.default_region,
                        forward=settings.forward.url is not None)
    if as_json:
        json_out(dict(result.to_dict(), missing=missing))
    else:
        for r in result.events:
            click.echo(f"#{r.id}: {'already stored' if r.duplicate else 'stored'} {r.message_id} (event {r.event_key})", err=True)
        for i, reason in result.failed:
            click.echo(f"#{i}: still refused: {_printable(reason)}", err=True)
        for i in missing:
            click.echo(f"#{i}: no such dead letter" + (" received since then" if since else ""), err=True)
        click.echo(result.summary(), err=True)
    if result.failed or missing:
        raise click.exceptions.Exit(1)


@cli.group(context_settings=CONTEXT)
def forward() -> None:
    """Forwarding callbacks to your app (`serve --forward-to URL`)."""


@forward.command("status", context_settings=CONTEXT)
@click.option("--limit", type=click.IntRange(0), default=20, show_default=True, help="List at most this many waiting callbacks.")
@json_option
@settings_options()
def status(limit: int, as_json: bool, settings: Settings) -> None:
    """What waits to be relayed: how many, since when, the last error, the first ones.

    A callback waits in the outbox (in the database) until the target answers 2xx; `smsmon
    serve --forward-to` relays it, retrying with backoff, and after a restart too.
    """
    from smsmon.store.backend import open_reader as Reader
    from smsmon.timeutil import now_utc, parse_iso, human_duration

    target = settings.forward.url.masked() if settings.forward.url else None
    with Reader(settings.db) as reader:
        s = reader.outbox_summary(limit=limit)
    if as_json:
        json_out(dict(s, target=target))
        return
    zone = settings.display_timezone
    click.echo(f"forwarding to {target} (forward.url, {settings.sources.get('forward.url')})" if target else
               "forwarding is not configured here (smsmon serve --forward-to URL, or the setting forward.url)")
    if not s["waiting"]:
        click.echo("nothing waits: every forwarded callback was delivered")
        return
    age = human_duration((now_utc() - parse_iso(s["oldest"])).total_seconds())
    click.echo(f"{plural(s['waiting'], 'callback')} wait, the oldest since {zone.show(s['oldest'])} ({age} ago)")
    if (e := s["last_error"]) is not None:
        click.echo(f"last error at {zone.show(e['at'])}: {_printable(e['error'] or '')}")
    if s["rows"]:
        click.echo(f"\n{'event':>8}  {'message':<46}  {'tries':>5}  {'next try (' + zone.label + ')':<22}  last error")
        for r in s["rows"]:
            click.echo(f"{r['event_id']:>8}  {r['message_id'][:46]:<46}  {r['attempts']:>5}  {zone.show(r['next_at']):<22}  "
                       f"{_printable((r['last_error'] or '')[:80])}")
