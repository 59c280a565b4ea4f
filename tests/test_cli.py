"""The read-side commands as a user runs them: output, exit codes, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from smsmon.cli import cli
from smsmon.sim.generate import fill
from smsmon.store.writer import Writer
from tests.helpers import DATA, callback, eevent, report_row, zevent


def run(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "s.db"
    fill(path, messages=300, seed=4, days=2)
    with Writer(path) as w:
        w.apply([zevent("MESSAGE_SENT", uuid="otp-1", dest="+233209999999", event_id="e-sent"),
                 zevent("MESSAGE_FAILED", uuid="otp-1", dest="+233209999999", event_id="e-fail")])
    return path


# ── explain ──────────────────────────────────────────────────────────────────────
def test_explain_a_status_of_both_providers() -> None:
    r = run("explain", "sent")
    assert r.exit_code == 0
    assert "Handed to the carrier" in r.stdout and "Sent, no delivery report" in r.stdout and "What to do" in r.stdout


def test_explain_json_for_machines() -> None:
    r = run("explain", "101", "--json")
    (entry,) = json.loads(r.stdout)
    assert entry["provider"] == "eazita" and entry["kind"] == "error_code" and entry["retryable"] == "after fix"


def test_explain_an_unknown_code_says_so_and_counts_sightings(tmp_path) -> None:
    db = tmp_path / "e.db"
    with Writer(db) as w:
        w.apply([eevent("FAILED", error_code="8")])
    r = run("explain", "8", "--provider", "eazita", "--db", str(db))
    assert r.exit_code == 0
    assert "Unrecognized code 8" in r.stdout and "roaming not allowed" in r.stdout
    assert "seen on 1 messages" in r.stdout and "Zong (1)" in r.stdout
    data = json.loads(run("explain", "8", "--json", "--db", str(db)).stdout)
    assert data[0]["recognized"] is False and data[0]["seen"]["messages"] == 1


def test_explain_needs_no_database(tmp_path) -> None:
    r = run("explain", "zz", "--db", str(tmp_path / "none.db"))
    assert r.exit_code == 0 and "Unrecognized code zz" in r.stdout
    assert not (tmp_path / "none.db").exists()


# ── show ─────────────────────────────────────────────────────────────────────────
def test_show_a_message_by_uuid(sample_db) -> None:
    r = run("show", "otp-1", "--db", str(sample_db))
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "zeckta:otp-1" in out and "FAILED" in out and "Timeline" in out and "Delivery attempt failed" in out
    assert out.index("SENT") < out.index("Raw payloads") and '"eventType": "MESSAGE_FAILED"' in out


def test_show_json(sample_db) -> None:
    data = json.loads(run("show", "zeckta:otp-1", "--json", "--db", str(sample_db)).stdout)
    assert data["message"]["status"] == "FAILED"
    assert [e["status"] for e in data["events"]] == ["SENT", "FAILED"]
    assert data["events"][1]["since_previous_seconds"] == 0.0
    assert data["events"][0]["raw"]["eventId"] == "e-sent"  # raw payloads as objects
    assert data["explanation"]["status"]["title"] == "Delivery attempt failed"


def test_show_by_phone_number_in_any_format(sample_db) -> None:
    for q in ("+233209999999", "233209999999", "+233 20 999 9999"):
        assert "zeckta:otp-1" in run("show", q, "--db", str(sample_db)).stdout


def test_show_ambiguous_lists_candidates_and_fails(tmp_path) -> None:
    db = tmp_path / "a.db"
    with Writer(db) as w:
        w.apply([zevent(uuid="a", dest="+233200000001"), zevent(uuid="b", dest="+233200000001")])
    r = run("show", "+233200000001", "--db", str(db))
    assert r.exit_code == 1 and "matches 2 messages" in r.stderr and "zeckta:a" in r.stderr and "zeckta:b" in r.stderr
    data = json.loads(run("show", "+233200000001", "--json", "--db", str(db)).stdout)
    assert len(data["candidates"]) == 2


def test_errors_are_one_line_with_exit_1(sample_db) -> None:
    r = run("show", "nope", "--db", str(sample_db))
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and "no message matches 'nope'" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("args,message", [
    (["stats", "--filter", "status:sleeping"], "status: unknown value"),
    (["stats", "--filter", "since:2x"], "since: not a time"),
    (["export", "--filter", "colour:red"], "unknown filter field 'colour'"),
    (["import", "-", "--timezone", "Mars/Olympus"], "unknown time zone"),
    (["serve", "--listen", "nonsense"], "HOST:PORT"),
])
def test_command_line_mistakes_exit_2_and_say_what_is_wrong(sample_db, args, message) -> None:
    r = run(*args, "--db", str(sample_db))
    assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_a_missing_database_is_a_clear_error_and_is_not_created(tmp_path) -> None:
    for cmd in (["show", "x"], ["stats"], ["export"]):
        r = run(*cmd, "--db", str(tmp_path / "missing.db"))
        assert r.exit_code == 1 and "no database at" in r.stderr
    assert not (tmp_path / "missing.db").exists()


def test_usage_errors_exit_2() -> None:
    assert run("export", "--format", "xml").exit_code == 2
    assert run("show").exit_code == 2
    assert run("frobnicate").exit_code == 2


def test_a_bug_is_one_internal_error_line_and_a_traceback_only_when_asked(sample_db, monkeypatch) -> None:
    """A bug cannot be made with real parts: one is planted where `stats` reads."""
    from smsmon.store.reader import Reader

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(Reader, "stats", broken)
    monkeypatch.delenv("SMSMON_DEBUG", raising=False)
    r = CliRunner().invoke(cli, ["stats", "--db", str(sample_db)])
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: internal error: ZeroDivisionError: planted (a bug in smsmon; set SMSMON_DEBUG=1 for a traceback)"]
    monkeypatch.setenv("SMSMON_DEBUG", "1")
    r = CliRunner().invoke(cli, ["stats", "--db", str(sample_db)])
    assert isinstance(r.exception, ZeroDivisionError)  # raised for the traceback


# ── stats ────────────────────────────────────────────────────────────────────────
def test_stats_text_and_json(sample_db) -> None:
    text = run("stats", "--db", str(sample_db)).stdout
    assert "delivery rate" in text and "time to deliver: median" in text and "Failures by error code" in text
    data = json.loads(run("stats", "--json", "--db", str(sample_db)).stdout)
    assert data["messages"] == sum(data["outcomes"].values()) > 300
    assert 0 < data["delivery_rate"] < 1 and data["median_seconds_to_deliver"] > 0
    only = json.loads(run("stats", "--json", "--filter", "provider:zeckta status:failed", "--db", str(sample_db)).stdout)
    assert only["outcomes"]["NOT_DELIVERED"] == only["messages"] and only["delivery_rate"] == 0


# ── export ───────────────────────────────────────────────────────────────────────
def test_export_csv_json_ndjson_agree(sample_db) -> None:
    as_csv = list(csv.DictReader(io.StringIO(run("export", "--db", str(sample_db)).stdout)))
    as_json = json.loads(run("export", "--format", "json", "--db", str(sample_db)).stdout)
    as_nd = [json.loads(line) for line in run("export", "--format", "ndjson", "--db", str(sample_db)).stdout.splitlines()]
    assert [r["id"] for r in as_csv] == [r["id"] for r in as_json] == [r["id"] for r in as_nd]
    assert len(as_json) > 300 and "attr_at" not in as_json[0] and "stale" in as_json[0]


def test_export_events_with_a_filter_to_a_file(sample_db, tmp_path) -> None:
    out = tmp_path / "ev.ndjson"
    r = run("export", "--table", "events", "--format", "ndjson", "--filter", "otp-1", "-o", str(out), "--db", str(sample_db))
    assert r.exit_code == 0 and "exported 2 events" in r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["event_key"] for e in rows] == ["e-sent", "e-fail"]


def test_export_empty_result_is_still_valid(sample_db) -> None:
    assert json.loads(run("export", "--format", "json", "--filter", "no-such", "--db", str(sample_db)).stdout) == []
    header = run("export", "--filter", "no-such", "--db", str(sample_db)).stdout
    assert header.startswith("id,provider,provider_message_id")


def test_export_to_an_unwritable_place(sample_db, tmp_path) -> None:
    r = run("export", "-o", str(tmp_path / "no" / "such" / "dir.csv"), "--db", str(sample_db))
    assert r.exit_code == 1 and "cannot write" in r.stderr


# ── import ───────────────────────────────────────────────────────────────────────
def test_import_mixed_lines_reports_bad_ones_and_keeps_the_rest(tmp_path) -> None:
    db = tmp_path / "i.db"
    lines = [
        json.dumps(callback("MESSAGE_SENT", uuid="u1", event_id="a")),
        "{not json",
        json.dumps(report_row("DELIVERED", message_id=77)),
        "",
        json.dumps({"code": -2, "error": "Authentication Error"}),
        json.dumps({"eventId": "x", "eventType": "MESSAGE_SENT"}),
        (DATA / "eazita_sample_response.json").read_text().replace("\n", " "),
        json.dumps(callback("MESSAGE_SENT", uuid="u1", event_id="a")),  # a duplicate
        "[1, 2, 3]",
    ]
    r = run("import", "-", "--db", str(db), input="\n".join(lines) + "\n")
    assert r.exit_code == 0, r.stderr
    assert "line 2: invalid JSON" in r.stderr
    assert "line 5: eazita API error -2: Authentication Error" in r.stderr
    assert "line 6: missing required field `timestamp`" in r.stderr
    assert "line 9: expected a JSON object" in r.stderr
    assert "imported 6 new events (1 duplicate) from 9 lines" in r.stderr and "4 bad lines skipped" in r.stderr
    stats = json.loads(run("stats", "--json", "--db", str(db)).stdout)
    assert stats["messages"] == 6 and stats["events"] == 6
    again = run("import", "-", "--db", str(db), input="\n".join(lines))
    assert "imported 0 new events (7 duplicates)" in again.stderr  # importing again changes nothing


def test_import_counts_every_bad_line_beyond_those_it_lists(tmp_path) -> None:
    lines = ["junk"] * 1500 + [json.dumps(callback(uuid="good"))]
    r = run("import", "-", "--db", str(tmp_path / "i.db"), input="\n".join(lines) + "\n")
    assert r.exit_code == 0
    assert "... and 1,480 more bad lines" in r.stderr
    assert "1,500 bad lines skipped" in r.stderr and "imported 1 new event " in r.stderr


def test_import_sources_are_marked(tmp_path) -> None:
    db = tmp_path / "i.db"
    f = tmp_path / "cb.ndjson"
    f.write_text(json.dumps(callback(uuid="z")) + "\n")
    assert run("import", str(f), "--db", str(db)).exit_code == 0
    data = json.loads(run("show", "z", "--json", "--db", str(db)).stdout)
    assert data["events"][0]["source"] == "import"


def test_import_nothing_good_fails(tmp_path) -> None:
    r = run("import", "-", "--db", str(tmp_path / "i.db"), input="junk\nmore junk\n")
    assert r.exit_code == 1 and "2 bad lines" in r.stderr


def test_import_an_unreadable_file(tmp_path) -> None:
    r = run("import", str(tmp_path / "nope.ndjson"), "--db", str(tmp_path / "i.db"))
    assert r.exit_code == 1 and "cannot read" in r.stderr


def test_import_a_huge_line_is_skipped_not_loaded(tmp_path) -> None:
    big = json.dumps(callback(uuid="big", src="x" * (2 << 20)))
    ok = json.dumps(callback(uuid="ok"))
    r = run("import", "-", "--db", str(tmp_path / "i.db"), input=f"{big}\n{ok}\n")
    assert "line 1: line longer than 1024 KiB" in r.stderr and "imported 1 new event " in r.stderr


def test_import_invalid_utf8_and_times_out_of_range_are_bad_lines(tmp_path) -> None:
    """Issue 9: one such line aborted the import (13,339 of 20,000 lines imported, no line number)."""
    lines = [json.dumps(callback(uuid=f"u{i}", event_id=f"e{i}")).encode() for i in range(8)]
    lines[1] = b'{"eventId": "x\xff", "eventType": "MESSAGE_SENT", "timestamp": "2026-06-09T13:04:57Z", "message": {"uuid": "u"}}'
    lines[3] = json.dumps(callback(uuid="late", at="9999-12-31T23:59:59-05:00")).encode()
    lines[4] = json.dumps(callback(uuid="early", at="0001-01-01T00:00:00+05:00")).encode()
    lines[5] = json.dumps(report_row("DELIVERED", done="0001/01/01 00:00:00")).encode()
    r = run("import", "-", "--db", str(tmp_path / "i.db"), input=b"\n".join(lines) + b"\n")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines()[:4] == [
        "line 2: not UTF-8",
        "line 4: `timestamp`: not an ISO-8601 time in range: '9999-12-31T23:59:59-05:00'",
        "line 5: `timestamp`: not an ISO-8601 time in range: '0001-01-01T00:00:00+05:00'",
        "line 6: `done_date`: time out of range: '0001/01/01 00:00:00'"]
    assert "imported 4 new events (0 duplicates) from 8 lines" in r.stderr and "4 bad lines skipped" in r.stderr


def test_import_batches_by_bytes_so_memory_does_not_follow_the_lines(tmp_path) -> None:
    """Issue 9: 500 lines a batch, each up to 1 MiB, held up to 500 MiB (a 1 GB file took 668 MB)."""
    import tracemalloc

    from smsmon.importer import import_lines
    from smsmon.timeutil import zone

    big = io.BytesIO(b"".join(json.dumps(callback(uuid=f"m{i}", event_id=f"e{i}", src="x" * 1_000_000)).encode() + b"\n"
                              for i in range(40)))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = import_lines(big, tmp_path / "i.db", tz=zone("UTC"))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert (result.new, result.bad_count) == (40, 0)
    assert peak < 30 << 20  # measured: 17 MB; 47 MB when the 40 lines were one batch


def test_import_timezone_option(tmp_path) -> None:
    db = tmp_path / "tz.db"
    row = json.dumps(report_row("DELIVERED", message_id=5, done="2026/11/23 16:00:00"))
    run("import", "-", "--timezone", "UTC", "--db", str(db), input=row)
    assert json.loads(run("show", "eazita:5", "--json", "--db", str(db)).stdout)["message"]["final_at"].startswith("2026-11-23T16:00")
    bad = run("import", "-", "--timezone", "Mars/Olympus", "--db", str(db), input=row)
    assert bad.exit_code == 2 and "unknown time zone" in bad.stderr


# ── sim generate, bench ──────────────────────────────────────────────────────────
def test_sim_generate_fills_a_database(tmp_path) -> None:
    db = tmp_path / "g.db"
    r = run("sim", "generate", "--messages", "200", "--seed", "3", "--db", str(db))
    assert r.exit_code == 0 and "for 200 messages" in r.stderr
    assert json.loads(run("stats", "--json", "--db", str(db)).stdout)["messages"] == 200


def test_bench_store_prints_figures_per_size_beside_sqlite3(tmp_path) -> None:
    r = run("bench", "store", "--size", "3000", "--size", "6000", "--dir", str(tmp_path), "--fresh-events", "1000",
            "--repeat", "3", "--json")
    assert r.exit_code == 0, r.stderr
    figures = json.loads(r.stdout)
    assert figures["write_fresh_events_per_s"] > 0 and set(figures["sizes"]) == {"3000", "6000"}
    assert figures["sizes"]["6000"]["bytes_per_event"] > 0 and figures["sizes"]["6000"]["export_events_csv_rows_per_s"] > 0
    assert 0 < figures["sizes"]["6000"]["export_messages_ndjson_peak_rss_mb"] < 1000
    views = figures["views_ms"]
    assert {"filter (none)", "filter status:failed", "next page", "insights, last 24 h", "message screen (zeckta)", "dead letters"} <= set(views)
    assert set(views["filter status:failed"]) == {"3000", "6000"}
    assert figures["sqlite3_ms"]["filter status:failed"] > 0  # the same question at the sqlite3 shell, beside it
    assert "what a person waits for" in r.stderr and (tmp_path / "bench-6000.db").exists()  # kept for the next run


def test_bench_writer_puts_another_installation_beside_this_one(tmp_path) -> None:
    """Here both sides are this installation (the only one a test has), each run in a process of
    its own, each writing into its own large database."""
    from smsmon.store.reader import Reader

    large = tmp_path / "l.db"
    other = tmp_path / "o.db"
    assert run("sim", "generate", "--messages", "300", "--seed", "4", "--db", str(large)).exit_code == 0
    other.write_bytes(large.read_bytes())
    with Reader(large) as reader:
        before = reader.latest_event_id()
    r = run("bench", "writer", "--against", sys.executable, "--rounds", "1", "--events", "2000", "--large-db", str(large),
            "--against-db", str(other), "--large-events", "1000", "--json")
    assert r.exit_code == 0, r.stderr
    figures = json.loads(r.stdout)
    assert set(figures) == {"fresh", "large"}
    assert all(figures[c]["this_events_per_s"] > 0 and figures[c]["other_events_per_s"] > 0 for c in figures)
    assert "fresh: other" in r.stderr and "this/other" in r.stderr
    after = []
    for db in (large, other):  # each side added the round's events (some are duplicates) to its own database
        with Reader(db) as reader:
            after.append(reader.latest_event_id())
    assert after[0] == after[1] > before
    assert run("bench", "writer", "--against", sys.executable, "--large-db", str(large)).exit_code == 2


# ── the real entry point ─────────────────────────────────────────────────────────
def _smsmon(*args: str, **kw):
    return subprocess.run([sys.executable, "-m", "smsmon", *args], capture_output=True, text=True, timeout=60, **kw)


def test_python_m_smsmon_and_version() -> None:
    r = _smsmon("--version")
    assert r.returncode == 0 and "smsmon" in r.stdout


def test_no_traceback_ever_reaches_the_user(tmp_path) -> None:
    (tmp_path / "bad.toml").write_text("this is = = not toml")
    r = _smsmon("stats", "--config", str(tmp_path / "bad.toml"))
    assert r.returncode == 1 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr
    r = _smsmon("show", "x", "--db", str(DATA / "eazita_sample_response.json"))
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("error:")


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_export_into_a_closed_pipe_exits_0_and_says_nothing(sample_db, fmt) -> None:
    """`smsmon export | head -1`: the reader leaving early is not an error (issue 9)."""
    p = subprocess.Popen([sys.executable, "-m", "smsmon", "export", "--format", fmt, "--table", "events", "--db", str(sample_db)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()
    assert p.wait(60) == 0 and first
    said = p.stderr.read()
    # Nothing, or (when the whole export fitted in the pipe before it closed) the usual count.
    assert said == b"" or said.startswith(b"exported "), said


def test_export_to_a_full_disk_says_disk_full(sample_db) -> None:
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "smsmon", "export", "--format", "json", "--db", str(sample_db)], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr == "error: disk full: cannot write standard output; the export is incomplete\n"


def _limit_file_size() -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_an_export_that_fails_half_way_leaves_the_file_as_it_was(sample_db, tmp_path) -> None:
    """Writes fail after 64 KB (the file-size limit), as on a disk that fills up half way."""
    out = tmp_path / "messages.json"
    out.write_text("[]\n")
    cmd = [sys.executable, "-m", "smsmon", "export", "--format", "json", "-o", str(out), "--db", str(sample_db)]
    p = subprocess.run(cmd, preexec_fn=_limit_file_size, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.startswith(f"error: cannot write {out}: File too large; nothing was written")
    assert out.read_text() == "[]\n" and sorted(tmp_path.iterdir()) == [out]  # no half file, no temporary left
    fresh = tmp_path / "new.json"
    p = subprocess.run([*cmd[:-4], "-o", str(fresh), *cmd[-2:]], preexec_fn=_limit_file_size, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and f"no {fresh} was left behind" in p.stderr and not fresh.exists()
    assert run("export", "--format", "json", "-o", str(out), "--db", str(sample_db)).exit_code == 0
    assert len(json.loads(out.read_text())) > 300 and oct(out.stat().st_mode & 0o777) != "0o600"


@pytest.mark.parametrize("command", ["watch", "demo", "browse", "explain", "show", "stats", "export", "import", "serve", "poll",
                                     "simulate", "config", "sim", "sim generate", "bench", "bench store", "bench ingest", "migrate",
                                     "bench ui", "bench attack"])
def test_every_command_has_help_and_is_in_the_readme(command: str) -> None:
    r = run(*command.split(), "--help")
    assert r.exit_code == 0 and "Usage:" in r.stdout
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"smsmon {command}" in readme


def test_bench_ingest_prints_figures() -> None:
    r = run("bench", "ingest", "--seconds", "1", "--skip-large", "--rate", "100", "--connections", "8", "--json")
    assert r.exit_code == 0, r.stderr
    figures = json.loads(r.stdout)
    assert figures["bare"]["callbacks_per_s"] > 0 and figures["fresh"]["callbacks_per_s"] > 0
    assert 0 < figures["fresh"]["ratio"] and figures["steady"]["non_2xx_or_errors"] == 0
    stored, acknowledged = figures["fresh_stored_vs_acknowledged"]
    assert stored >= acknowledged > 0  # every acknowledged callback was stored
    assert "load generator:" in r.stderr and "vs bare" in r.stderr


def test_every_command_is_known_to_the_lazy_loader() -> None:
    import subprocess
    import sys

    from smsmon.cli import LAZY

    code = ("import importlib, json; from smsmon.cli import cli, LAZY\n"
            "[importlib.import_module('smsmon.cli.' + m) for m in set(LAZY.values())]\n"
            "print(json.dumps(sorted(cli.commands)))")
    defined = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert defined == sorted(LAZY)
    # and `smsmon browse` does not load what serve needs
    loaded = subprocess.run([sys.executable, "-c", "import sys; from smsmon.cli import cli; cli.get_command(None, 'browse');"
                             " print(' '.join(sys.modules))"], capture_output=True, text=True, check=True).stdout.split()
    assert "aiohttp" not in loaded and "httpx" not in loaded and "smsmon.cli.ingest" not in loaded
