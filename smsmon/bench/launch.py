"""What a person waits for from process launch, in a real terminal: a command is started in a
tmux window, and the clock runs until its screen shows what was asked for (capture-pane, polled
every few milliseconds). The same file is opened by smsmon and by the peers a user would pick
instead (VisiData, the sqlite3 shell) in one run, so the figures compare side by side."""

from __future__ import annotations

import re
import shlex
import shutil
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Callable

POLL_S = 0.005
TMUX = ["tmux", "-L", "smsmon-bench"]  # a server of its own: other tmux sessions neither slow it nor end it
TIMEOUT_S = 60.0


@dataclass
class Timed:
    name: str
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def available() -> bool:
    return shutil.which("tmux") is not None


def until_screen(command: str, shows: Callable[[str], bool], *, width: int = 200, height: int = 50,
                 keys_after: list[str] | None = None) -> float:
    """Seconds from starting `command` in a fresh tmux window until its screen `shows(text)`."""
    session = f"smsmon-bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    for attempt in range(3):  # the server of a session just killed may still be exiting: start again
        if subprocess.run([*TMUX, "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), command],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.2)
        started = time.perf_counter()
    else:
        raise RuntimeError(f"tmux could not start {command!r}")
    try:
        deadline = started + TIMEOUT_S
        while True:
            screen = subprocess.run([*TMUX, "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            if shows(screen):
                return time.perf_counter() - started
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{command!r} did not show what was expected within {TIMEOUT_S:g} s:\n{screen}")
            time.sleep(POLL_S)
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)


def rows_of_messages(screen: str) -> bool:
    """A table row of messages: a time, a status and a message id (a uuid or Eazita's number)."""
    return bool(re.search(r"\d\d:\d\d(:\d\d)?\s+[A-Z_]{4,}\s+([0-9a-f]{6}|\d{5,})", screen))


def repeat(name: str, command: str, shows: Callable[[str], bool], times: int) -> Timed:
    return Timed(name, [until_screen(command, shows) for _ in range(times)])


def vd_rows(screen: str) -> bool:
    """VisiData's sheet of the messages table: rows holding message ids."""
    return bool(re.search(r"(zeckta|eazita):[0-9a-f]{4,}|eazita:\d+", screen))


def sqlite_rows(screen: str) -> bool:
    return bool(re.search(r"(zeckta|eazita):\S+\|[A-Z_]+\|", screen))


@dataclass
class Contender:
    name: str
    command: str
    shows: Callable[[str], bool]


def contenders(db: str, smsmon: str, vd: str | None, sqlite3: str | None) -> list[Contender]:
    """smsmon (`smsmon`: the command that starts it, quoted) and the peers a user would pick
    instead, each opening the same file to its first rows."""
    out = [Contender("smsmon browse", f"{smsmon} browse --db {shlex.quote(db)}", rows_of_messages)]
    if vd:
        out.append(Contender("VisiData", f"{shlex.quote(vd)} {shlex.quote(db)} +:messages:1:1", vd_rows))
    if sqlite3:
        query = "SELECT id, status, dest FROM messages ORDER BY last_event_at DESC LIMIT 40"
        out.append(Contender("sqlite3 shell", f"{shlex.quote(sqlite3)} {shlex.quote(db)} {shlex.quote(query)}; sleep 30",
                             sqlite_rows))
    return out


def compare(entries: list[Contender], times: int, say: Callable[[str], None]) -> list[Timed]:
    """Each contender `times` times, taking turns (so a busy moment of the machine hits all alike),
    on one tmux server kept up for the whole run."""
    subprocess.run([*TMUX, "kill-server"], capture_output=True)
    try:  # the server goes whatever ends this (Ctrl+C as it starts too): no smsmon left running in it
        subprocess.run([*TMUX, "new-session", "-d", "-s", "keep", "sleep 86400"], check=True)
        results = {e.name: Timed(e.name, []) for e in entries}
        for i in range(times):
            for e in entries:
                results[e.name].seconds.append(until_screen(e.command, e.shows))
            say(f"  round {i + 1}/{times}: " + ", ".join(f"{n} {t.seconds[-1]:.3f} s" for n, t in results.items()))
        return list(results.values())
    finally:
        subprocess.run([*TMUX, "kill-server"], capture_output=True)
