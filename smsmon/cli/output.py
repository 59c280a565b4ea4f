"""What the commands print: explanations, a message's drill-down, stats, exports, JSON and
progress. Renders plain data the store returns; reads nothing itself."""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
import sys
import tempfile
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import click

from smsmon import catalogue
from smsmon.catalogue import Entry
from smsmon.errors import SmsmonError
from smsmon.store.queries import PUBLIC_COLUMNS
from smsmon.store.stats import Stats
from smsmon.timeutil import human_duration, seconds_between

EVENT_EXPORT_COLUMNS = ["id", "event_key", "message_id", "provider", "source", "event_type", "raw_status", "status",
                        "error_code", "event_time", "received_at", "flags", "raw"]
MESSAGE_EXPORT_COLUMNS = [*PUBLIC_COLUMNS, "stale"]
WIDTH = 96


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, width=WIDTH, initial_indent=indent, subsequent_indent=indent)


def render_entry(e: Entry, seen: dict[str, Any] | None = None) -> str:
    head = f"{e.code}  {e.title}"
    where = "unrecognized" if not e.recognized else {"smsmon": "smsmon"}.get(e.provider, e.provider.capitalize())
    kind = e.kind.value.replace("_", " ")
    lines = [head, f"  {where} {kind}" + (f" → smsmon {e.normalized}" if e.normalized else ""), "", _wrap(e.meaning)]
    if e.causes:
        lines += ["", "  Likely causes:"] + [_wrap(f"- {c}", "    ")[0:] for c in e.causes]
    lines += ["", "  What to do:", _wrap(e.action, "    "), ""]
    lines.append(f"  retryable: {e.retryable}   permanent: {e.permanent}   group: {e.group}   meaning: {e.sureness}")
    if seen is not None:
        if seen["messages"]:
            nets = ", ".join(f"{n or 'unknown network'} ({c})" for n, c in seen["networks"])
            lines.append(f"  seen on {seen['messages']} messages in {seen['database']}: {nets}")
        else:
            lines.append(f"  not seen in {seen['database']}")
    return "\n".join(lines)


def _t(iso: str | None) -> str:
    return (iso or "—").replace("T", " ").replace("Z", "")[:23]


def render_detail(d: dict[str, Any]) -> str:
    m = d["message"]
    lines = [f"{m['id']}", f"  status   {m['status']} ({m['raw_status']} from {m['provider']})   outcome {m['outcome']}"
             + ("   STALE" if m["stale"] else "")]
    facts = [("to", m["dest"]), ("from", m["src"]), ("reference", m["reference"]), ("network", m["network"]),
             ("country", m["country_code"]), ("error code", m["error_code"]), ("segments", m["segments"]),
             ("cost", m["cost"])]
    lines.append("  " + "   ".join(f"{k} {v}" for k, v in facts if v is not None))
    took = seconds_between(m["first_event_at"], m["final_at"]) if m["final_at"] and m["first_event_at"] else None
    lines.append(f"  first event {_t(m['first_event_at'])}   final {_t(m['final_at'])}"
                 + (f" ({human_duration(took)} after the first event)" if took is not None else ""))
    lines.append(f"  events {m['events_count']}   duplicates {m['duplicates_count']}")
    for f in d["flags"]:
        lines.append(_wrap(f"! {f['flag']}: {f['title']}. {f['meaning']}", "  "))
    lines += ["", "Timeline (by event time, then arrival)",
              f"  {'event time (UTC)':<23}  {'status':<13} {'raw':<14} {'source':<10} {'after prev':>10}  {'received (UTC)':<23}  flags"]
    for ev in d["events"]:
        lines.append(f"  {_t(ev['event_time']):<23}  {ev['status']:<13} {ev['raw_status'][:14]:<14} {ev['source']:<10}"
                     f" {human_duration(ev['since_previous_seconds']) if ev['since_previous_seconds'] is not None else '':>10}"
                     f"  {_t(ev['received_at']):<23}  {ev['flags'] or ''}")
    ex = d["explanation"]
    st = ex["status"]
    lines += ["", f"Status: {st['title']} ({st['provider']} {st['code']})", _wrap(st["meaning"]), _wrap("What to do: " + st["action"])]
    if ex["error_code"]:
        ec = ex["error_code"]
        lines += ["", f"Error code {ec['code']}: {ec['title']}", _wrap(ec["meaning"]), _wrap("What to do: " + ec["action"])]
    lines += ["", "Raw payloads"]
    for ev in d["events"]:
        lines.append(f"  #{ev['id']} {ev['source']} {ev['raw_status']} received {_t(ev['received_at'])}")
        raw = ev["raw"]
        text = json.dumps(raw, indent=2, ensure_ascii=False) if not isinstance(raw, str) else raw
        lines += ["    " + ln for ln in text.splitlines()]
    return "\n".join(lines)


def render_stats(s: Stats, source: str, window: timedelta) -> str:
    rate = f"{s.delivery_rate:.1%}" if s.delivery_rate is not None else "—"
    lines = [f"{s.messages:,} messages, {s.events:,} events" + (f"  (filter: {source})" if source else ""),
             f"  delivery rate {rate}   (delivered / delivered + not delivered)",
             f"  time to deliver: median {human_duration(s.median_seconds)}, p90 {human_duration(s.p90_seconds)}",
             "  " + "   ".join(f"{k.lower().replace('_', ' ')} {v:,}" for k, v in s.outcomes.items()),
             f"  stale (no news for {human_duration(window.total_seconds())}, not final): {s.stale:,}"]
    if s.failures_by_status:
        lines += ["", "Failures by status"]
        for provider, raw, n in s.failures_by_status:
            lines.append(f"  {n:>8,}  {provider:<7} {raw:<14} {catalogue.explain_status(provider, raw).title}")
    coded = [(p, c, n) for p, c, n in s.failures_by_code if c is not None]
    if coded:
        lines += ["", "Failures by error code"]
        for provider, code, n in coded:
            entry = catalogue.explain_error(provider, code)
            lines.append(f"  {n:>8,}  {provider:<7} {code:<6} {entry.title if entry else ''}")
        uncoded = sum(n for _, c, n in s.failures_by_code if c is None)
        if uncoded:
            lines.append(f"  {uncoded:>8,}  carry no error code (Zeckta sends none)")
    if s.failures_by_network:
        lines += ["", "Failures by network"]
        for network, n in s.failures_by_network:
            lines.append(f"  {n:>8,}  {network or 'not given by the provider'}")
    return "\n".join(lines)


def write_export(rows: Iterable[dict[str, Any]], fmt: str, out: TextIO, columns: list[str]) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            n += 1
    elif fmt == "ndjson":
        for row in rows:
            out.write(json.dumps({k: row.get(k) for k in columns}, ensure_ascii=False) + "\n")
            n += 1
    else:
        out.write("[")
        for row in rows:
            out.write(("," if n else "") + "\n" + json.dumps({k: row.get(k) for k in columns}, ensure_ascii=False))
            n += 1
        out.write("\n]\n" if n else "]\n")
    return n


def _write_failed(exc: OSError, where: str, after: str) -> SmsmonError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SmsmonError(f"disk full: cannot write {where}; {after}")
    return SmsmonError(f"cannot write {where}: {exc.strerror or exc}; {after}")


def write_file_atomically(path: Path, write: Callable[[TextIO], int]) -> int:
    """Run `write` on a temporary file beside `path`, renamed over it once complete and on disk:
    a failure (a full disk) leaves `path` as it was, never half written. A path that is not a
    regular file (/dev/stdout, a FIFO) is written directly. Returns what `write` returns."""
    real = Path(os.path.realpath(path))
    if real.exists() and not stat.S_ISREG(real.stat().st_mode):
        try:
            with open(real, "w", newline="", encoding="utf-8") as f:
                return write(f)
        except OSError as exc:
            raise _write_failed(exc, str(path), "the export is incomplete") from None
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".part", dir=real.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file would be, not mkstemp's 0600
        with open(fd, "w", newline="", encoding="utf-8") as f:
            n = write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, real)
        tmp = None
        return n
    except OSError as exc:
        kept = f"{path} is as it was" if real.exists() else f"no {path} was left behind"
        raise _write_failed(exc, str(path), f"nothing was written ({kept})") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass  # it may never have been created; nothing else to clean up


def write_stdout(write: Callable[[TextIO], int]) -> int:
    """Run `write` on standard output and flush it, so that a failure happens here: a full disk
    is an error that says so; a closed pipe (`| head`) raises BrokenPipeError, which the command
    group turns into a quiet exit 0."""
    try:
        n = write(sys.stdout)
        sys.stdout.flush()
        return n
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _write_failed(exc, "standard output", "the export is incomplete") from None


def json_out(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def progress(verb: str, unit: str) -> Callable[[int], None] | None:
    """A progress line on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def report(n: int) -> None:
        click.echo(f"\r{verb}: {n:,} {unit}", err=True, nl=False)

    return report
