"""A throwaway PostgreSQL server for the tests: initdb into a temporary directory, started on a
random port (TCP on 127.0.0.1 and a Unix socket in that directory), stopped and deleted at the end.

initdb refuses to run as root, so as root the server runs as the `postgres` user (Debian's
package creates it) in a directory that user owns. `python -m tests.pgserver` starts one and
prints its URL, for trying things by hand; Ctrl+C stops it and deletes it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "postgres"
PASSWORD_ROLE, PASSWORD = "smsmon_pw", "pw-0123456789-secret"  # a role that logs in with a password over TCP
START_TIMEOUT_S = 30


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: $SMSMON_PG_BIN, Debian's newest, or the PATH's."""
    if env := os.environ.get("SMSMON_PG_BIN"):
        return Path(env) if (Path(env) / "initdb").exists() else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def why_not() -> str | None:
    """Why no server can be started here, or None."""
    if binaries() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl): install postgresql, or set SMSMON_PG_BIN"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as (initdb refuses root)"
        if shutil.which("runuser") is None:
            return "running as root without `runuser` to start the server as `postgres`"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *, fast: bool = True) -> None:
        """`fast`: no fsync (a test server's data need not survive a power cut)."""
        self.bin = binaries()
        assert self.bin is not None, why_not()
        self.dir = Path(tempfile.mkdtemp(prefix="smsmon-pg-"))
        self.data = self.dir / "data"
        self.port = 0
        self.fast = fast
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", SUPERUSER, "--"]
        os.chmod(self.dir, 0o755)

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> "Server":
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as:
            os.chown(pwfile, pwd.getpwnam(SUPERUSER).pw_uid, -1)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8", "--locale=C.UTF-8",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync")
        for attempt in range(5):
            self.port = _free_port()
            try:
                self.resume()
                break
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log()[-2000:]}") from None
        self.sql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        return self

    def resume(self) -> None:
        """Start the server (again, after `halt`), on the same port."""
        options = [f"-p {self.port}", f"-k {self.dir}", "-c listen_addresses=127.0.0.1", "-c max_connections=200",
                   "-c shared_buffers=64MB"]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                  "-t", str(START_TIMEOUT_S), "-o", " ".join(options), "start")

    def replica(self) -> "Server":
        """A streaming replica of this server (pg_basebackup -R: a hot standby), started on a port
        of its own. Stop it (`.stop()`) before this one."""
        other = Server(fast=self.fast)
        other._run(str(self.bin / "pg_basebackup"), "-D", str(other.data), "-h", str(self.dir), "-p", str(self.port),
                   "-U", SUPERUSER, "-R", "-X", "stream", "--no-sync", "--checkpoint=fast")
        for attempt in range(5):
            other.port = _free_port()
            try:
                other.resume()
                return other
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise RuntimeError(f"the replica did not start: {other.log()[-2000:]}") from None
        return other

    def halt(self) -> None:
        """Stop the server, as an administrator would for a restart (connections are cut)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def log(self) -> str:
        try:
            return (self.dir / "log").read_text()
        except OSError:
            return ""

    def url(self, dbname: str = "postgres") -> str:
        """A URL over the Unix socket, as the superuser (trusted: no password)."""
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.dir}&port={self.port}"

    def tcp_url(self, dbname: str = "postgres", *, password: str = PASSWORD) -> str:
        """A URL over TCP with a password in it, as a user would write one."""
        return f"postgresql://{PASSWORD_ROLE}:{password}@127.0.0.1:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass  # not running (it never started, or it was stopped): the folder goes anyway
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    import signal

    # Ctrl+C and SIGTERM both stop and delete the server, also when started in the background
    # (where a shell hands it SIGINT ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    with Server(fast=False) as server:
        print(server.url(), "\n" + server.tcp_url(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
