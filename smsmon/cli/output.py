"""What the commands print: explanations, a message's drill-down, stats, exports, JSON and
progress. Renders plain data the store returns; reads nothing itself."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import tempfile
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import click
import msgspec

from smsmon import catalogue, present
from smsmon.catalogue import Entry
from smsmon.errors import SmsmonError
from smsmon.store.stats import Stats
from smsmon.timeutil import UTC_ZONE, DisplayZone, human_duration

WIDTH = 96


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, width=WIDTH, initial_indent=indent, subsequent_indent=indent)


def render_entry(e: Entry, seen: dict[str, Any] | None = None, suggestions: list[str] | None = None) -> str:
    head = f"{e.code}  {e.title}"
    where = "unrecognized" if not e.recognized else {"smsmon": "smsmon"}.get(e.provider, e.provider.capitalize())
    kind = e.kind.value.replace("_", " ")
    lines = [head, f"  {where} {kind}" + (f" → smsmon {e.normalized}" if e.normalized else ""), "", _wrap(e.meaning)]
    if suggestions:
        lines += ["", f"  Did you mean: {', '.join(suggestions)}?  (smsmon explain {suggestions[0]})"]
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


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Columns as wide as their widest cell (the last one as it comes)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in [header, *rows]]


def render_detail(d: dict[str, Any], zone: DisplayZone = UTC_ZONE) -> str:
    m = d["message"]
    facts = present.facts(m, zone)
    width = max(len(label) for label, _ in facts)
    lines = [f"{m['id']}   (times in {zone.label})"] + [f"  {label:<{width}}  {text}" for label, text in facts]
    for f in d["flags"]:
        lines.append(_wrap(f"! {f['flag']}: {f['title']}. {f['meaning']}", "  "))
    lines += ["", "Timeline (by event time, then arrival)"]
    lines += _table(present.timeline_header(zone), present.timeline_rows(d["events"], zone))
    ex = d["explanation"]
    st = ex["status"]
    lines += ["", f"Status: {st['title']} ({st['provider']} {st['code']})", _wrap(st["meaning"]), _wrap("What to do: " + st["action"])]
    if ex["error_code"]:
        ec = ex["error_code"]
        lines += ["", f"Error code {ec['code']}: {ec['title']}", _wrap(ec["meaning"]), _wrap("What to do: " + ec["action"])]
    lines += _next_steps(d, zone)
    lines += ["", "Raw payloads"]
    for ev in d["events"]:
        lines.append(f"  #{ev['id']} {ev['source']} {ev['raw_status']} received {zone.show(ev['received_at'], fraction=True)}")
        raw = ev["raw"]
        text = json.dumps(raw, indent=2, ensure_ascii=False) if not isinstance(raw, str) else raw
        lines += ["    " + ln for ln in text.splitlines()]
    return "\n".join(lines)


def _next_steps(d: dict[str, Any], zone: DisplayZone) -> list[str]:
    """What the investigation needs next: the provider's word on an open message, how common the
    failure is right now, the other messages to the same number."""
    m, lines = d["message"], []
    if d["ask_provider"]:
        lines += ["", f"Still open: ask the provider now with  {d['ask_provider']}"]
    if (f := d["failure_now"]) is not None:
        lines += ["", f"This failure in the last {f['window']}: {plural(f['messages'], 'message')} with the same provider,"
                      f" status and error code" + (f", {f['on_network']:,} of them on {f['network']}" if f.get("on_network") is not None else "")]
        lines.append(f"  smsmon stats --filter '{f.get('network_filter') or f['filter']}'")
    if d["same_number"]:
        lines += ["", f"Other messages to {m['dest']} (newest first)"]
        lines += _table(["last event", "status", "error", "message"],
                        [[zone.show(r["last_event_at"]), r["status"], r["error_code"] or "", r["id"]] for r in d["same_number"]])
    return lines


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def render_stats(s: Stats, source: str, window: timedelta) -> str:
    rate = f"{s.delivery_rate:.1%}" if s.delivery_rate is not None else "—"
    head = (f"{s.limit:,} messages or more; the figures below are of the first {s.limit:,} read"
            " (this filter is one the maintained counts cannot answer: narrow it, e.g. with since:, for exact figures)"
            if s.partial else f"{plural(s.messages, 'message')}, {plural(s.events, 'event')}")
    lines = [head + (f"  (filter: {source})" if source else ""),
             f"  delivery rate {rate}   (delivered / delivered + not delivered)",
             f"  time to deliver: median {human_duration(s.median_seconds)},"
             f" p90 {human_duration(s.p90_seconds)}  (from the first known send time)",
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
            entry = catalogue.explain_error(provider, code, failed=True)
            lines.append(f"  {n:>8,}  {provider:<7} {code:<6} {entry.title if entry else ''}")
        uncoded = sum(n for _, c, n in s.failures_by_code if c is None)
        if uncoded:
            lines.append(f"  {uncoded:>8,}  carry no error code (Zeckta sends none)")
    if s.failures_by_network:
        lines += ["", "Failures by network"]
        for network, n in s.failures_by_network:
            lines.append(f"  {n:>8,}  {network or 'not given by the provider'}")
    return "\n".join(lines)


def render_forwarding(f: dict[str, Any], zone: DisplayZone = UTC_ZONE) -> str:
    """The outbox under `stats`, when anything waits in it (issue 13)."""
    if not f["waiting"]:
        return ""
    line = f"\n\nForwarding: {plural(f['waiting'], 'callback')} wait to be relayed, the oldest since {zone.show(f['oldest'])}"
    if f["last_error"]:
        line += f"\n  last error at {zone.show(f['last_error']['at'])}: {f['last_error']['error']}"
    return line + "\n  smsmon forward status   lists them"


def json_row(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """An event as `tail --json` gives it, as `export --format ndjson` does (smsmon.store.export):
    the payload as received (`raw`) as the JSON value it is, not a string (`jq .raw.message`)."""
    out = {k: row.get(k) for k in columns}
    raw = out.get("raw")
    if isinstance(raw, str):
        try:
            out["raw"] = _decode(raw)
        except msgspec.DecodeError:
            pass  # not JSON (it always is, as stored): the text as it is
    return out


_decode = msgspec.json.Decoder().decode


def write_export(batches: Iterable[list[bytes]], fmt: str, out: BinaryIO, columns: list[str]) -> int:
    """Write what `Reader.export` gives, batches of UTF-8 lines (a JSON object for json and
    ndjson, a CSV record for csv, ended by CRLF as the csv module and RFC 4180 do), to a binary
    stream. Returns how many rows."""
    n = 0
    if fmt == "csv":
        out.write(",".join(columns).encode() + b"\r\n")
    elif fmt == "json":
        out.write(b"[")
    end = b"\r\n" if fmt == "csv" else b"\n"
    for batch in batches:
        if not batch:
            continue
        if fmt == "json":
            out.write((b"," if n else b"") + b"\n" + b",\n".join(batch))
        else:
            out.write(end.join(batch) + end)
        n += len(batch)
    if fmt == "json":
        out.write(b"\n]\n" if n else b"]\n")
    return n


def _write_failed(exc: OSError, where: str, after: str) -> SmsmonError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SmsmonError(f"disk full: cannot write {where}; {after}")
    return SmsmonError(f"cannot write {where}: {exc.strerror or exc}; {after}")


def write_file_atomically(path: Path, write: Callable[[BinaryIO], int]) -> int:
    """Run `write` on a temporary file beside `path`, renamed over it once complete and on disk:
    a failure (a full disk) leaves `path` as it was, never half written. A path that is not a
    regular file (/dev/stdout, a FIFO) is written directly. Returns what `write` returns."""
    real = Path(os.path.realpath(path))
    if real.exists() and not stat.S_ISREG(real.stat().st_mode):
        try:
            with open(real, "wb") as f:
                return write(f)
        except OSError as exc:
            raise _write_failed(exc, str(path), "the export is incomplete") from None
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".part", dir=real.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file would be, not mkstemp's 0600
        with open(fd, "wb") as f:
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


def write_stdout(write: Callable[[BinaryIO], int]) -> int:
    """Run `write` on standard output's bytes and flush it, so that a failure happens here: a
    full disk is an error that says so; a closed pipe (`| head`) raises BrokenPipeError, which
    the command group turns into a quiet exit 0."""
    try:
        sys.stdout.flush()  # anything printed as text before goes first
        out = sys.stdout.buffer
        n = write(out)
        out.flush()
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
