"""`smsmon demo` as a user runs it, in a real terminal (issue 13): SMSMON_DB and the config
file's db are not used; without --db the demo runs on a temporary database that it deletes, and
says where it was; with --db on its own command line it uses (and keeps) a new file.
(tests/test_demo_safety.py shows that the demo refuses a database with real data whatever names
it)."""

from __future__ import annotations

import os
import re
import subprocess
import signal
import sys
from pathlib import Path

import pytest

from smsmon.store.origin import inspect
from tests.helpers import rows, run_in_terminal
from tests.test_demo_safety import digest, real_db  # noqa: F401 (a fixture)



def plain(out: str) -> str:
    return " ".join(re.sub(r"\x1b\[[0-9;?<>=]*[a-zA-Z]|\x1b\][^\x07]*\x07", "", out).split())


def test_smsmon_db_is_not_used_and_the_temporary_database_goes(real_db: Path, tmp_path: Path) -> None:  # noqa: F811
    before = digest(real_db)
    config = tmp_path / "config.toml"
    config.write_text(f'db = "{real_db}"\n')
    env = {**os.environ, "SMSMON_DB": str(real_db), "SMSMON_CONFIG": str(config), "TERM": "xterm-256color"}
    out = plain(run_in_terminal([sys.executable, "-m", "smsmon", "demo"], env, 60, ready="LIVE"))
    m = re.search(r"demo: a temporary database at (\S+/demo\.db), deleted when the demo ends", out)
    assert m, out[-2000:]
    assert f"demo: deleted its temporary database {m.group(1)}" in out and not Path(m.group(1)).parent.exists()
    assert digest(real_db) == before


def test_db_on_its_command_line_is_used_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "kept.db"
    out = plain(run_in_terminal([sys.executable, "-m", "smsmon", "demo", "--db", str(db)],
                                {**os.environ, "TERM": "xterm-256color"}, 60, ready="LIVE"))
    assert f"the demo's database is {db}" in out, out[-2000:]
    assert inspect(db).kind == "demo" and all(s.startswith("sim:") for (s,) in rows(db, "SELECT DISTINCT source FROM events"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_demo_ended_by_a_signal_deletes_its_temporary_database_too(sig: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SMSMON_DB", "SMSMON_CONFIG")}
    out = plain(run_in_terminal([sys.executable, "-m", "smsmon", "demo"], {**env, "TERM": "xterm-256color"}, 60,
                                ready="LIVE", stop=sig))
    m = re.search(r"demo: a temporary database at (\S+/demo\.db), deleted when the demo ends", out)
    assert m, out[-2000:]
    assert not Path(m.group(1)).parent.exists()
    if sig == signal.SIGTERM:  # a hangup ends it at once: nobody is left to read a last line
        assert f"demo: deleted its temporary database {m.group(1)}" in out


def test_browse_ends_at_once_when_its_terminal_hangs_up(tmp_path: Path) -> None:
    """Textual's orderly exit can hang writing to a terminal that is gone: a `browse` was left
    running for good. On SIGHUP the app ends at once."""
    import pty
    import time

    from smsmon.sim.generate import fill

    db = tmp_path / "b.db"
    fill(db, messages=20)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "smsmon", "browse", "--db", str(db)], stdin=slave, stdout=slave,
                            stderr=slave, env={**os.environ, "TERM": "xterm-256color"}, start_new_session=True)
    os.close(slave)
    out, deadline = b"", time.monotonic() + 30
    try:
        while b"OFFLINE" not in out and time.monotonic() < deadline:
            out += os.read(master, 65536)
        assert b"OFFLINE" in out
        os.close(master)  # the terminal goes, as when its window is closed
        master = -1
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(10) == 128 + signal.SIGHUP
    finally:
        if proc.poll() is None:
            proc.kill()
        if master >= 0:
            os.close(master)
