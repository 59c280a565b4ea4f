"""Every shell example in the README runs (issue 13), so that the README cannot drift from smsmon.

The examples are taken from the README's indented code blocks, a test per block, in the README's
order, as a user would type them into one shell: in a workspace of their own (its own HOME, so
the default database and config are the workspace's), against a database with the messages the
examples name, with the network commands pointed at the fake providers (`smsmon.sim.servers`,
whose credentials are the README's `...`), and other ports than the README's where it names
fixed ones. A command must exit 0 (or as its block's expectations say) without a traceback.

What serves until stopped (`serve`, `watch`, `demo`, `poll` without --once, `tail`, the benches)
runs for a few seconds, in a terminal when it draws one, must show its first lines and not have
failed, and is then stopped with Ctrl+C (or `q`). What cannot run here is skipped, with why: what
changes the machine (`sudo`, `apt-get`; tests/test_recipes.py runs the recipes' own parts), what
needs the internet or a program that is not installed, and the test suite itself (.ci/run runs
the README's test command). The README's first command, from a clean clone, is a slow test of its
own. Blocks that take long (the benches, a million generated events, a 1 GB import) are slow.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from smsmon.sim.generate import fill
from smsmon.sim.servers import FakeEazita, FakeZeckta, Step
from smsmon.store.writer import Writer
from tests import pgserver
from tests.helpers import callback, eevent, report_row, run_in_terminal
from tests.test_simulate_and_poll_cli import InThread

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent  # this environment's smsmon and sqlite-utils
COMMANDS = {"smsmon", "python3", "pip", "pytest", "sqlite-utils", "sqlite3", "datasette", "export", "apt-get", "cat",
            "/usr/bin/time", "sudo", "journalctl", "cloudflared", "ngrok"}
NOT_SHELL = ("line 2: not UTF-8", "error: zeckta.api_key", "pure domain (no I/O)",  # output shown, diagrams
             "removed ", "  FIRING ", "retention: removed ",  # what prune, alerts and serve's retention print
             " " * 16 + "Zeckta callbacks")
ZECKTA_ID, EVENT_ID, NUMBER = "016205e1-3c54-4b7a-9f4e-8a2d1c0b9e77", "4075b658-81d8-4f66-8da4-eb88ac4592b6", "+233241234567"
TUI = ("watch", "demo", "browse")
FOREVER_S = 4.0  # how long something that serves until stopped runs before it is stopped
LONG_S = 20.0  # how long something that takes minutes (a million events, a 1 GB file) runs before it is stopped
LONG = r"--events 1000000|range\(1000\)|/usr/bin/time"


@dataclass
class Command:
    line: int
    text: str


@dataclass
class Block:
    line: int
    commands: list[Command] = field(default_factory=list)

    @property
    def slow(self) -> bool:
        return any(_slow(c.text) for c in self.commands)


def _complete(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False  # a quote still open (a python3 -c '...' over several lines)
    return not text.rstrip().endswith("\\")


def _first_word(text: str) -> str:
    words = shlex.split(text, comments=True)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        words.pop(0)
    return words[0] if words else ""


def readme_blocks() -> tuple[list[Block], list[tuple[int, str]]]:
    """The shell blocks, and the first line of every indented block that is neither shell nor known."""
    lines = README.read_text().splitlines()
    raw: list[tuple[int, list[tuple[int, str]]]] = []
    fenced, current = False, None
    for no, line in enumerate(lines, 1):
        if line.startswith("```"):
            fenced, current = not fenced, None
            continue
        if fenced:
            continue
        if line.startswith("    ") and (current is not None or lines[no - 2].strip() == ""):
            if current is None:
                current = (no, [])
                raw.append(current)
            current[1].append((no, line[4:]))
        elif not line.strip() and current is not None:
            continue
        else:
            current = None
    blocks, unknown = [], []
    for start, body in raw:
        first = body[0][1]
        if first.startswith(NOT_SHELL):
            continue
        word = first.split()[0]
        if not re.fullmatch(r"[A-Z_]+=\S*", word) and word not in COMMANDS:  # an environment variable, or a command
            unknown.append((start, first))
            continue
        block, pending, at = Block(start), "", 0
        for no, text in body:
            at = at or no
            pending = f"{pending}\n{text}" if pending else text
            if _complete(pending):
                block.commands.append(Command(at, pending))
                pending, at = "", 0
        assert not pending, f"README line {at}: a command that never ends: {pending!r}"
        blocks.append(block)
    return blocks, unknown


BLOCKS, UNKNOWN = readme_blocks()


def test_every_indented_block_is_known() -> None:
    """A new shell example cannot hide from these tests: a block is shell, or it is listed above."""
    assert not UNKNOWN, f"README blocks neither shell nor listed in NOT_SHELL: {UNKNOWN}"
    assert len(BLOCKS) >= 25 and sum(len(b.commands) for b in BLOCKS) >= 80


# ── what each command is ──────────────────────────────────────────────────────
def _slow(text: str) -> bool:
    return _background(text) or bool(re.search(r"smsmon bench |--events 1000000|range\(1000\)|/usr/bin/time|pip install|--count 500", text))


def _skip(text: str) -> str | None:
    word = _first_word(text)
    if word in ("sudo", "apt-get", "journalctl"):
        return "changes this machine (packages, services, /etc): tests/test_recipes.py runs the recipes' own parts"
    if word in ("cloudflared", "ngrok"):
        return f"{word} needs the internet and an account's tunnel (and is not in Debian)"
    if word == "pytest" or ("pip install" in text and "smsmon demo" not in text):
        return "the test suite itself: .ci/run runs the README's test command"
    if "tests.pgserver" in text:
        return "a throwaway PostgreSQL server kept until Ctrl+C, for trying things by hand: the suite starts its own"
    if "postgresql://" in text and (why := pgserver.why_not()):
        return f"no PostgreSQL server can be started here: {why}"
    if word == "datasette" and not shutil.which("datasette"):
        return "datasette is not installed here"
    for tool in ("sqlite3", "jq", "/usr/bin/time", "openssl"):
        if re.search(rf"(^|[\s|$(]){re.escape(tool)}\s", text) and not shutil.which(tool):
            return f"{tool} is not installed here"
    return None


def _smsmon(text: str) -> tuple[str, list[str]] | None:
    """The smsmon command a line runs (its subcommand, "" for none, and its words), or None."""
    code = re.split(r"\s#", text)[0]
    m = re.search(r"(?:^|[\s;|&)])smsmon(?=\s|$)(.*?)(?:\||$)", code, re.S)
    if m is None:
        return None
    words = m.group(1).split()
    return (words[0] if words else ""), words


def _code(text: str) -> str:
    """The command without its comment."""
    return re.split(r"\s#", text)[0]


def _background(text: str) -> bool:
    return _code(text).rstrip().endswith("&")


def _forever(text: str) -> bool:
    if _background(text) or "| head" in text:
        return False
    if _first_word(text) == "datasette":
        return True
    found = _smsmon(text)
    if found is None:
        return False
    sub, words = found
    return (sub in ("", "serve", "web", "tail", "bench", *TUI) or (sub == "poll" and not {"--once", "--message"} & set(words))
            or (sub == "simulate" and "--forever" in words))


# ── the workspace ───────────────────────────────────────────────────────────────
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Session:
    """One shell: its folder, environment, and what runs in the background."""

    cwd: Path
    env: dict[str, str]
    ports: dict[str, str]
    background: list[subprocess.Popen] = field(default_factory=list)
    pg: pgserver.Server | None = None

    def postgres(self) -> str:
        """A database on a throwaway PostgreSQL server, started the first time an example needs one."""
        if self.pg is None:
            self.pg = pgserver.Server().start()
            self.pg.create_database("smsmon")
        return self.pg.tcp_url("smsmon")

    def prepare(self, text: str) -> str:
        for old, new in self.ports.items():
            text = text.replace(old, new)
        if "postgresql://" in text:  # the README's servers are this session's throwaway one (the replica too)
            text = re.sub(r"postgresql://[\w.@-]+/smsmon\b", self.postgres(), text)
        text = text.replace("https://host/", f"http://{self.env['SMSMON_LISTEN']}/")  # the README's placeholder listener
        text = text.replace("/opt/smsmon-0.1/bin/python", sys.executable)  # the other installation: this one, the only one here
        return text.replace("/var/lib/smsmon/", f"{self.cwd}/var/lib/smsmon/")

    def stop_background(self) -> None:
        for p in self.background:
            _stop(p)
        self.background.clear()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(p: subprocess.Popen) -> int:
    """Stop what a command started (it runs in a process group of its own): Ctrl+C to the group;
    what lingers 15 s later (a shell's background job ignores Ctrl+C) gets SIGTERM, then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(p.pid):
            break
        os.killpg(p.pid, sig)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (p.poll() is None or _group_alive(p.pid)):
            time.sleep(0.05)
    return p.wait(10)


def _rest(p: subprocess.Popen) -> str:
    """What is left in its output, without waiting for more."""
    os.set_blocking(p.stdout.fileno(), False)  # type: ignore[union-attr]
    return (p.stdout.read() or b"").decode("utf-8", "replace")  # type: ignore[union-attr]


def _data(home_db: Path, cwd: Path) -> None:
    """The messages the examples name, among generated traffic, and dead letters to replay."""
    fill(home_db, messages=400, seed=11, days=2)
    now = datetime.now(timezone.utc)
    callbacks = [callback("MESSAGE_SENT", uuid=ZECKTA_ID, event_id=EVENT_ID, dest=NUMBER, at=now - timedelta(minutes=9)),
                 callback("MESSAGE_FAILED", uuid=ZECKTA_ID, event_id="b2d9a1c4-0f7e-4c55-9a61-3e2f1d0c9b8a", dest=NUMBER,
                          at=now - timedelta(minutes=8))]
    rows = [report_row("FAILED", message_id=569399, error_code="8", reference="my-msg-reference")]
    (cwd / "callbacks.ndjson").write_text("".join(json.dumps(c) + "\n" for c in callbacks))
    (cwd / "reports.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from smsmon.providers import zeckta

    with Writer(home_db) as w:
        w.apply([zeckta.callback_from_object(c, received_at=now) for c in callbacks]
                + [eevent("FAILED", message_id=569399, error_code="8", reference="my-msg-reference")])
        for i in range(15):  # refused by an older smsmon, accepted by this one: `dead-letters replay` stores them
            body = json.dumps(callback(uuid=f"replayed-{i}", event_id=f"dl-{i}", dest=f"+23320555{i:04d}",
                                       at=now - timedelta(hours=1))).encode()
            w.dead_letter(received_at=(now - timedelta(minutes=30 - i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                          remote="203.0.113.9", path="/callbacks/zeckta", reason="invalid_payload: an older parser refused it",
                          body=body, headers=json.dumps({"Content-Type": "application/json"}))


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cwd = tmp_path_factory.mktemp("readme")
    home = cwd / "home"
    home_db = home / ".local/share/smsmon/smsmon.db"
    _data(home_db, cwd)
    for copy in ("smsmon.db", "yesterday.db", "live.db", "var/lib/smsmon/smsmon.db"):
        (cwd / copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(home_db, cwd / copy)
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(cwd / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(cwd / "cert.pem"))
    eazita, zeckta = FakeEazita("...", "..."), FakeZeckta("...")
    eazita.add(569399, [Step(0, "SUBMIT"), Step(0, "FAILED", "8")], reference="my-msg-reference")
    eazita.add(569400, [Step(0, "SUBMIT"), Step(0, "DELIVERED")])
    from smsmon.store.reader import Reader

    with Reader(home_db) as reader:  # the provider knows its own messages, as in the demo
        zeckta.statuses.update({mid: (raw or "sent").lower() for mid, raw in reader.open_statuses("zeckta").items()})
    zeckta.statuses[ZECKTA_ID] = "failed"
    servers = [InThread(eazita), InThread(zeckta)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSMON_", "XDG_"))}
    env.update(HOME=str(home), PATH=f"{BIN}:{env.get('PATH', '')}", SMSMON_LISTEN=f"127.0.0.1:{free_port()}",
               SMSMON_EAZITA_URL=servers[0].url, SMSMON_ZECKTA_URL=servers[1].url, COLUMNS="120", LINES="40")
    ports = {":9000": f":{free_port()}", ":8443": f":{free_port()}", ":8787": ":" + env["SMSMON_LISTEN"].split(":")[1],
             "0.0.0.0:8790": f"127.0.0.1:{free_port()}"}
    s = Session(cwd, env, ports)
    yield s
    s.stop_background()
    if s.pg is not None:
        s.pg.stop()
    for server in servers:
        server.close()


# ── running one ────────────────────────────────────────────────────────────────
def _ok(out: str) -> None:
    assert "Traceback" not in out and "internal error" not in out, out[-3000:]


def run_command(s: Session, c: Command) -> None:
    text = s.prepare(c.text)
    where = f"README line {c.line}: {c.text}"
    if _first_word(text) == "export":
        for word in shlex.split(text, comments=True)[1:]:
            name, _, value = word.partition("=")
            s.env[name] = value
        return
    if (_smsmon(text) or ("-", []))[0] in ("", *TUI):
        out = run_in_terminal(["bash", "-c", f"cd {shlex.quote(str(s.cwd))} && {text}"], {**s.env, "TERM": "xterm-256color"},
                              30, ready=r"LIVE|OFFLINE")
        assert "\x1b[?1049h" in out, f"{where}: the app did not draw:\n{out[-2000:]}"  # the alternate screen
        assert "error:" not in out, f"{where}:\n{out[-2000:]}"
        _ok(out)
        return
    popen = dict(cwd=s.cwd, env=s.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                 start_new_session=True)
    if _background(text):
        p = subprocess.Popen(["bash", "-c", _code(text).rstrip().rstrip("&")], **popen)
        s.background.append(p)
        _wait_for_line(p, r"listening on http", where)
        return
    if _forever(text) or re.search(LONG, text):
        p = subprocess.Popen(["bash", "-c", f"set -o pipefail; {text}"], **popen)
        out = _collect(p, FOREVER_S if _forever(text) else LONG_S)
        assert p.poll() is None or p.returncode == 0, f"{where}: ended {p.returncode}:\n{out[-3000:]}"
        code = _stop(p)
        out += _rest(p)
        _ok(out)
        assert "error:" not in out, f"{where}:\n{out[-3000:]}"
        if " serve" in text:
            assert "listening on http" in out and "give Zeckta this callback URL" in out, f"{where}:\n{out}"
            assert code == 0, f"{where}: Ctrl+C should stop it cleanly (exit {code}):\n{out[-2000:]}"
        if " tail" in text and "--lines 0" not in text:
            assert out.strip(), f"{where}: printed nothing"
        return
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {text}"], timeout=600, capture_output=True, text=True, cwd=s.cwd,
                       env=s.env, stdin=subprocess.DEVNULL)
    _ok(r.stdout + r.stderr)
    assert r.returncode == 0, f"{where}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"


def _collect(p: subprocess.Popen, seconds: float) -> str:
    """What it printed in its first `seconds` (it may go on printing)."""
    os.set_blocking(p.stdout.fileno(), False)  # type: ignore[union-attr]
    out, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline and p.poll() is None:
        out += p.stdout.read() or b""  # type: ignore[union-attr]
        time.sleep(0.05)
    out += p.stdout.read() or b""  # type: ignore[union-attr]  # what is there (something it started may hold the pipe)
    os.set_blocking(p.stdout.fileno(), True)  # type: ignore[union-attr]
    return out.decode("utf-8", "replace")


def _wait_for_line(p: subprocess.Popen, pattern: str, where: str, timeout: float = 30) -> None:
    out, deadline = "", time.monotonic() + timeout
    os.set_blocking(p.stdout.fileno(), False)  # type: ignore[union-attr]
    while time.monotonic() < deadline and p.poll() is None and not re.search(pattern, out):
        out += (p.stdout.read() or b"").decode("utf-8", "replace")  # type: ignore[union-attr]
        time.sleep(0.05)
    assert re.search(pattern, out), f"{where}: no {pattern!r} in:\n{out}"


def _params() -> list[Any]:
    out = []
    for b in BLOCKS:
        marks = [pytest.mark.slow] if b.slow else []
        name = f"line{b.line}-" + re.sub(r"\W+", "-", b.commands[0].text.split("#")[0].strip())[:40]
        out.append(pytest.param(b, marks=marks, id=name))
    return out


@pytest.mark.parametrize("block", _params())
def test_the_readme_example_runs(session: Session, block: Block) -> None:
    ran = []
    try:
        for c in block.commands:
            if why := _skip(c.text):
                ran.append(f"skipped line {c.line}: {why}")
                continue
            if "smsmon demo" in c.text and "pip install" in c.text:
                ran.append(f"line {c.line}: test_the_first_command_works_from_a_clean_clone runs it")
                continue
            run_command(session, c)
            ran.append(f"ran line {c.line}")
    finally:
        session.stop_background()
    assert any(r.startswith("ran") or "clean_clone" in r for r in ran) or all("skipped" in r for r in ran), ran


@pytest.mark.slow
def test_the_first_command_works_from_a_clean_clone(tmp_path: Path) -> None:
    """Issue 13, point 0: the README's first line, as written, in a fresh clone and a new
    virtual environment: it installs smsmon and the demo draws; `q` ends it."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    (line,) = [c.text for b in BLOCKS for c in b.commands if "smsmon demo" in c.text and "pip install" in c.text]
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(tmp_path / "smsmon")], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSMON_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(HOME=str(tmp_path), PATH=":".join(p for p in env["PATH"].split(":") if not p.startswith(str(BIN))),
               TERM="xterm-256color")
    out = run_in_terminal(["bash", "-c", f"cd {shlex.quote(str(tmp_path / 'smsmon'))} && {line}"], env, 300, ready="LIVE")
    assert "Successfully installed" in out and "\x1b[?1049h" in out, out[-3000:]
    assert "demo: deleted its temporary database" in out or "the demo's database is" in out, out[-3000:]
