"""Tools: config (the effective settings), simulate (callbacks into a listener), sim generate (a
realistic database), bench (figures)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from smsmon.present import plural

from smsmon.cli import UserError, cli
from smsmon.cli.options import CONTEXT, DATABASE, json_option, settings_options
from smsmon.cli.output import json_out, progress

if TYPE_CHECKING:  # annotations only: the commands import what they use when they run
    from smsmon.config import Settings


# ── config ──────────────────────────────────────────────────────────────────────
@cli.command("config", context_settings=CONTEXT)
@json_option
@settings_options()
def config_(as_json: bool, settings: Settings) -> None:
    """Show the effective settings, secrets masked, and where each came from."""
    rows = settings.shown()
    if as_json:
        json_out([{"setting": k, "value": v, "source": src} for k, v, src in rows])
        return
    width = max(len(k) for k, _, _ in rows)
    for k, v, src in rows:
        click.echo(f"{k:<{width}}  {v:<40}  {src}")


# ── sim ─────────────────────────────────────────────────────────────────────────
@cli.group(context_settings=CONTEXT)
def sim() -> None:
    """Simulated provider traffic."""


@sim.command(context_settings=CONTEXT)
@click.option("--messages", type=click.IntRange(1), default=None, help="How many messages (default 1000).")
@click.option("--events", type=click.IntRange(1), default=None, help="Instead of --messages: about this many stored events.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same traffic.")
@click.option("--days", type=click.FloatRange(0.01), default=7.0, show_default=True, help="Spread over this many days up to now.")
@click.option("--append", is_flag=True, help="Add to a database that holds data already (one made by the demo or by this).")
@click.option("--allow-real-data", is_flag=True,
              help="With --append, add even to a database of real traffic (its figures will count the simulated messages).")
@settings_options()
def generate(messages: int | None, events: int | None, seed: int, days: float, append: bool, allow_real_data: bool,
             settings: Settings) -> None:
    """Fill a database with realistic traffic through the real parsers and writer.

    Both providers, every status, known and unknown error codes, several networks,
    out-of-order and duplicate events. Every generated event says it is simulated (its source
    is sim:callback or sim:poll). A new or empty database is marked as a demo one; one that
    holds data needs --append, and one that holds real traffic --allow-real-data as well.
    """
    from smsmon.sim.generate import fill
    from smsmon.store.backend import inspect_origin

    found = inspect_origin(settings.db)
    if found.has_data and not append:
        raise UserError(f"{settings.db} holds data already ({found.describe()}"
                        f"{', simulated' if found.kind == 'demo' else ''}): add --append to add to it, or give --db a new file")
    if found.kind == "real" and not allow_real_data:
        raise UserError(f"{settings.db} holds real traffic ({found.describe()}), not a demo's: generated messages would "
                        "count in its figures and exports. Give --db a new file, or add --allow-real-data if you mean to "
                        "mix them (generated events say sim: in their source)")

    result = fill(settings.db, messages=messages, events=events, seed=seed, days=days,
                  progress=progress("generating", "events"))
    click.echo(f"stored {plural(result.new, 'event')} ({plural(result.duplicates, 'duplicate')}) for {plural(result.messages, 'message')}"
               f" in {settings.db} at {result.rate:,.0f} events/s", err=True)


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
@settings_options()
def simulate(target: str | None, rate: float, count: int, forever: bool, seed: int, duplicates: float, out_of_order: float,
             unknown: float, malformed: float, as_json: bool, settings: Settings) -> None:
    """Send realistic Zeckta delivery callbacks to a listener, like `stripe trigger`.

    \b
    smsmon serve &                              # in one terminal
    smsmon simulate --count 500 --rate 50       # in another
    smsmon simulate --target https://example.org/callbacks/zeckta/TOKEN --forever
    """
    import asyncio

    from smsmon.ingest.listener import CALLBACK_PATH
    from smsmon.redact import Redactor
    from smsmon.sim.sender import Mix, send

    mix = Mix(duplicates, out_of_order, unknown, malformed)
    try:
        mix.check()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if target is None:
        token = f"/{settings.listener.token.reveal()}" if settings.listener.token else ""
        target = f"http://{settings.listen}{CALLBACK_PATH}{token}"
    shown = Redactor(settings.secrets)(target)
    click.echo(f"sending {'callbacks until Ctrl+C' if forever else f'{count:,} callbacks'} to {shown} at {rate:g}/s"
               f" (seed {seed})", err=True)

    def show_progress(report: Any) -> None:
        if sys.stderr.isatty():
            click.echo("\r" + report.line(), err=True, nl=False)

    async def run() -> Any:
        stop = asyncio.Event()
        if forever:
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        return await send(target, rate=rate, count=None if forever else count, seed=seed, mix=mix, stop=stop,
                          on_progress=show_progress)

    report = asyncio.run(run())
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(report.line(), err=True)
    if as_json:
        json_out(report.to_dict())
    if report.errors and report.errors == report.sent:
        raise UserError(f"could not reach {shown}: {report.last_error} (is `smsmon serve` running there?)")


# ── bench ───────────────────────────────────────────────────────────────────────
def _postgres_url(value: Any) -> Any:
    from smsmon.database import is_postgres

    if value is not None and not is_postgres(value):
        raise click.BadParameter("give a postgresql:// URL", param_hint="--postgres")
    return value


@cli.group(context_settings=CONTEXT)
def bench() -> None:
    """Benchmarks that print figures."""


@bench.command("store", context_settings=CONTEXT)
@click.option("--size", "sizes", type=click.IntRange(1000), multiple=True,
              help="Database sizes in events (repeatable) [default: 1,000,000 and 3,000,000].")
@click.option("--large", is_flag=True, help="Add a 10,000,000-event database (building it takes a quarter of an hour).")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the databases are built and kept [default: the user cache dir].")
@click.option("--fresh-events", type=click.IntRange(1000), default=100_000, show_default=True,
              help="Events written to a fresh database.")
@click.option("--repeat", type=click.IntRange(3), default=7, show_default=True, help="Runs of each view.")
@click.option("--postgres", type=DATABASE, default=None, metavar="URL",
              help="Every figure again on this PostgreSQL database, in the same run (in schemas smsmon_bench_*, kept).")
@click.option("--json", "as_json", is_flag=True, help="Figures as JSON on stdout.")
def bench_store(sizes: tuple[int, ...], large: bool, folder: Path | None, fresh_events: int, repeat: int,
                postgres: Any, as_json: bool) -> None:
    """What the store costs as the database grows: the writer's throughput, every view a person
    waits for (a filter with its summary, the next page, insights, a message, dead letters) beside
    the sqlite3 shell, bytes per event and export speed, at each size."""
    import platformdirs

    from smsmon.bench.store import LARGE, SIZES, store_bench

    chosen = tuple(sorted(set(sizes or SIZES) | ({LARGE} if large else set())))
    where = folder or Path(platformdirs.user_cache_dir("smsmon")) / "bench"
    figures = store_bench(sizes=chosen, folder=where, fresh_events=fresh_events, repeat=repeat,
                          say=lambda s: click.echo(s, err=True), postgres=_postgres_url(postgres))
    if as_json:
        json_out(figures)


@bench.command("ingest", context_settings=CONTEXT)
@click.option("--seconds", type=click.IntRange(1), default=10, show_default=True, help="Length of each run.")
@click.option("--connections", type=click.IntRange(1), default=64, show_default=True, help="Concurrent connections.")
@click.option("--rate", type=click.IntRange(1), default=1000, show_default=True, help="Callbacks/s of the steady-rate run.")
@click.option("--large-db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A large database to run against (built when missing; default: a temporary one).")
@click.option("--large-events", type=click.IntRange(1000), default=1_000_000, show_default=True,
              help="Size of the large database when it is built.")
@click.option("--skip-large", is_flag=True, help="Leave out the run against a large database.")
@click.option("--skip-forward", is_flag=True, help="Leave out the run with forwarding on.")
@click.option("--postgres", type=DATABASE, default=None, metavar="URL",
              help="The same runs on this PostgreSQL database, and two serves on one database against one.")
@click.option("--json", "as_json", is_flag=True, help="Figures as JSON on stdout.")
def bench_ingest(seconds: int, connections: int, rate: int, large_db: Path | None, large_events: int, skip_large: bool,
                 skip_forward: bool, postgres: Any, as_json: bool) -> None:
    """Callbacks/s and latency of `smsmon serve` next to a bare aiohttp endpoint, under the same
    load (wrk when installed), on a fresh database with forwarding off and on (to a second bare
    endpoint) and on a large one; and p99 at a steady rate."""
    from smsmon.bench.ingest import ingest_bench

    figures = ingest_bench(seconds=seconds, connections=connections, rate=rate, large_db=large_db,
                           large_events=large_events, skip_large=skip_large, say=lambda s: click.echo(s, err=True),
                           forward=not skip_forward, postgres=_postgres_url(postgres))
    if as_json:
        json_out(figures)


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
    from smsmon.bench.ui import ui_bench

    figures = ui_bench(db=large_db, events=events, rate=rate, presses=presses, say=lambda s: click.echo(s, err=True))
    if as_json:
        json_out(figures)


@bench.command("launch", context_settings=CONTEXT)
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The database to open, as it is (built with --events when missing) [default: a 1,000,000-event one "
                   "in the user cache dir].")
@click.option("--events", type=click.IntRange(1000), default=1_000_000, show_default=True, help="Size of the database when built.")
@click.option("--repeat", type=click.IntRange(3), default=9, show_default=True, help="Launches of each program.")
@click.option("--vd", default=None, metavar="PATH", help="VisiData's `vd` [default: the one on PATH, if any].")
@json_option
def bench_launch(db: Path | None, events: int, repeat: int, vd: str | None, as_json: bool) -> None:
    """From process launch to the first rows on screen, in a real terminal (tmux), for `smsmon
    browse` beside VisiData and the sqlite3 shell on the same file, taking turns."""
    import shlex
    import shutil
    import statistics

    import platformdirs

    from smsmon.bench import launch
    from smsmon.bench.store import ensure

    if not launch.available():
        raise UserError("bench launch needs tmux (apt-get install tmux)")
    say = lambda s: click.echo(s, err=True)  # noqa: E731
    db = db or Path(platformdirs.user_cache_dir("smsmon")) / "bench" / f"launch-{events // 1000}k.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    if not db.exists() or not db.stat().st_size:  # a file given is timed as it is, whatever its size
        ensure(db, events, say)
    script = Path(sys.executable).parent / "smsmon"  # this smsmon, not whichever is first on PATH
    smsmon = shlex.quote(str(script)) if script.exists() else f"{shlex.quote(sys.executable)} -m smsmon"
    entries = launch.contenders(str(db), smsmon, vd or shutil.which("vd"), shutil.which("sqlite3"))
    say(f"launch to first rows of {db}, {repeat} times each, taking turns ({', '.join(e.name for e in entries)})")
    results = launch.compare(entries, repeat, say)
    ours = results[0].median
    for t in results:
        ratio = "" if t is results[0] else f"   smsmon ÷ {t.name}: {ours / t.median:.2f}"
        say(f"{t.name:<16} median {t.median:.3f} s   min {min(t.seconds):.3f}   max {max(t.seconds):.3f}{ratio}")
    if as_json:
        json_out({t.name: {"median_s": round(t.median, 3), "seconds": [round(x, 3) for x in t.seconds],
                           "stdev_s": round(statistics.pstdev(t.seconds), 3)} for t in results})


@bench.command("writer", context_settings=CONTEXT)
@click.option("--against", required=True, metavar="PYTHON", type=click.Path(exists=True, dir_okay=False),
              help="The python of another smsmon installation (a virtual environment's bin/python) to compare with.")
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True, help="Runs of each side, taking turns.")
@click.option("--events", "fresh_events", type=click.IntRange(1000), default=100_000, show_default=True,
              help="Events written to a fresh database.")
@click.option("--large-db", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A large database of this version's schema to add events to as well...")
@click.option("--against-db", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="...and one of the other version's schema (both or neither).")
@click.option("--large-events", type=click.IntRange(1000), default=20_000, show_default=True,
              help="Events added to each large database per round.")
@json_option
def bench_writer(against: str, rounds: int, fresh_events: int, large_db: Path | None, against_db: Path | None,
                 large_events: int, as_json: bool) -> None:
    """The writer's events/s and CPU per event beside another installed smsmon (an older
    release, a branch), in one run, taking turns: each side writes the same seeded events with
    its own code, into a fresh file and, with --large-db and --against-db, into a large one."""
    from smsmon.bench.writer import compare

    if (large_db is None) != (against_db is None):
        raise click.UsageError("give --large-db and --against-db together (each side writes to its own schema)")
    say = lambda s: click.echo(s, err=True)  # noqa: E731
    cases = compare(against, rounds=rounds, fresh_events=fresh_events,
                    large=(large_db, against_db) if large_db and against_db else None, large_events=large_events, say=say)
    out = {}
    for c in cases:
        this, other = c.median("this", "rate"), c.median("other", "rate")
        cpu_this, cpu_other = c.median("this", "cpu_us_per_event"), c.median("other", "cpu_us_per_event")
        say(f"{c.name}: other {other:,.0f} events/s, this {this:,.0f} events/s (this/other {this / other:.2f});"
            f" CPU per event {cpu_other:.1f} -> {cpu_this:.1f} us ({cpu_this / cpu_other:.2f})")
        out[c.name] = {"other_events_per_s": round(other), "this_events_per_s": round(this), "ratio": round(this / other, 3),
                       "other_cpu_us": round(cpu_other, 1), "this_cpu_us": round(cpu_this, 1), "runs": c.runs}
    if as_json:
        json_out(out)


@bench.command("attack", context_settings=CONTEXT)
@click.option("--quick", is_flag=True, help="The short version (as CI runs it): fewer, smaller attacks; the same rules.")
@click.option("--area", "areas", multiple=True, type=click.Choice(["listener", "provider", "database"]),
              help="Only this area (repeatable; default: all).")
@json_option
def bench_attack(quick: bool, areas: tuple[str, ...], as_json: bool) -> None:
    """Attack a real `smsmon serve` and the pollers as an attacker, a broken provider or a careless
    operator would, and print what was tried and what happened. Exits 1 if a rule broke: a 500,
    an acknowledged event lost, a secret in a log or a file, memory out of bounds."""
    import tempfile

    from smsmon.bench.attack import AREAS, attack_bench

    with tempfile.TemporaryDirectory(prefix="smsmon-attack-") as tmp:
        results = attack_bench(tmp=Path(tmp), quick=quick, areas=areas or AREAS, say=lambda s: click.echo(s, err=True))
    failed = [r for r in results if not r.ok]
    click.echo(f"{len(results)} attacks, {len(failed)} broke a rule", err=True)
    if as_json:
        json_out([r.to_dict() for r in results])
    if failed:
        raise click.exceptions.Exit(1)


@bench.command("months", context_settings=CONTEXT)
@click.option("--db", "large_db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A database to copy for each run, used as it is (built with --events when missing; default: a temporary one). Never written.")
@click.option("--events", type=click.IntRange(1000), default=1_000_000, show_default=True, help="Size of the database when built.")
@click.option("--rate", type=click.IntRange(1), default=1000, show_default=True, help="Callbacks/s of the steady-rate runs.")
@click.option("--seconds", type=click.IntRange(1), default=20, show_default=True, help="Length of each run.")
@click.option("--only", "parts", multiple=True, type=click.Choice(["prune", "listener", "metrics", "evaluation"]),
              help="Only this part (repeatable; default: all).")
@click.option("--json", "as_json", is_flag=True, help="Figures as JSON on stdout.")
def bench_months(large_db: Path | None, events: int, rate: int, seconds: int, parts: tuple[str, ...], as_json: bool) -> None:
    """What running for months costs: pruning half of a 1M-event database and giving the space
    back; callbacks' p99 while a prune runs beside serve and inside it; throughput with metrics
    and every alert rule on against off; what reading the alert figures costs."""
    from smsmon.bench.months import months_bench

    figures = months_bench(db=large_db, events=events, rate=rate, seconds=seconds,
                           parts=parts or ("prune", "listener", "metrics", "evaluation"), say=lambda s: click.echo(s, err=True))
    if as_json:
        json_out(figures)
