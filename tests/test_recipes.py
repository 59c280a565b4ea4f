"""The README's recipes for putting `smsmon serve` behind HTTPS (issue 13), tried for real on
loopback, from the blocks in the README itself (so the recipes cannot drift): Caddy and nginx
when they are installed (Debian: `apt-get install caddy nginx`), in front of a real `serve`; the
systemd unit checked by `systemd-analyze verify` and its ExecStart run with its environment file.

Loopback stands in for the internet: 127.0.0.1 is the proxy, 127.0.0.2 a caller Zeckta would be,
127.0.0.3 one outside --allow-from. Caddy uses its own certificate authority for `localhost`
instead of Let's Encrypt, nginx a certificate made here. Tunnels (cloudflared, ngrok) need the
internet; their side, the headers, is tests/test_proxy.py's."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import callback, rows
from tests.test_serve import Serve

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
README = (ROOT / "README.md").read_text()
TOKEN = "recipe-" + secrets.token_hex(12)


def fenced(language: str) -> str:
    (block,) = re.findall(rf"^```{language}\n(.*?)^```", README, re.S | re.M)
    return block


def serve_line_after(language: str) -> list[str]:
    """The README's `smsmon serve` command that follows a recipe's block, as words (without the token)."""
    rest = README[README.index(f"```{language}\n"):]
    line = next(ln for ln in rest.splitlines() if "smsmon serve" in ln and ln.startswith("    "))
    words = shlex.split(line, comments=True)
    return words[words.index("smsmon"):]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A proxy process with its output in a file; stopped by its id."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wait_for_port(port: int, proc: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(f"it ended: {proc.log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}: {proc.log.read_text()[-2000:]}")


async def through(url: str, ca: ssl.SSLContext, source: str, *, headers: dict[str, str] | None = None,
                  body: bytes | None = None) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), ssl=ca)
    async with aiohttp.ClientSession(connector=connector) as s:
        data = body if body is not None else json.dumps(callback(uuid=f"via-{source}", event_id=f"e-{source}")).encode()
        async with s.post(url, data=data, headers={"Content-Type": "application/json", **(headers or {})}) as r:
            await r.read()
            return r.status


def start_serve(tmp: Path, listen: int, public: str) -> tuple[Serve, Path]:
    tmp.mkdir(exist_ok=True)
    db = tmp / "smsmon.db"
    words = serve_line_after("caddyfile")
    assert words[:2] == ["smsmon", "serve"] and "--trust-proxy" in words and "--public-url" in words
    args = [public if w == "https://sms.example.com" else w for w in words[2:]]
    serve = Serve(db, *args, "--listen", f"127.0.0.1:{listen}", "--allow-from", "127.0.0.2",
                  env={"SMSMON_CALLBACK_TOKEN": TOKEN, "SMSMON_CONFIG": ""})
    serve.url()
    return serve, db


async def ready(url: str, ca: ssl.SSLContext, timeout: float = 30) -> None:
    """Wait until the proxy answers /healthz over HTTPS (a proxy may listen before its certificate is ready)."""
    deadline = time.monotonic() + timeout
    # From the address --allow-from lets in: from any other, smsmon answers 403 through the proxy.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ca, local_addr=("127.0.0.2", 0))) as s:
        while True:
            status: int | str
            try:
                async with s.get(f"{url}/healthz") as r:
                    status = r.status
            except aiohttp.ClientError as exc:
                status = repr(exc)
            if status == 200:
                return
            assert time.monotonic() < deadline, f"{url}/healthz: {status} for {timeout:.0f} s"
            await asyncio.sleep(0.1)


async def check_the_proxy(url: str, ca: ssl.SSLContext, serve: Serve, db: Path, public: str) -> None:
    await ready(url, ca)
    forged = {"X-Forwarded-For": "203.0.113.66"}  # a caller claiming another address
    assert await through(f"{url}/callbacks/zeckta/{TOKEN}", ca, "127.0.0.2", headers=forged) == 200
    assert await through(f"{url}/callbacks/zeckta/{TOKEN}", ca, "127.0.0.3", headers={"X-Forwarded-For": "127.0.0.2"}) == 403
    assert await through(f"{url}/callbacks/zeckta/wrong-token", ca, "127.0.0.2") == 404
    serve.wait_for(r"200 new\s+zeckta:via-127\.0\.0\.2 DELIVERED from 127\.0\.0\.2 \(https, via 127\.0\.0\.1\)")
    serve.wait_for(r"forbidden_address: 127\.0\.0\.3 \(https, via 127\.0\.0\.1\) is outside --allow-from")
    assert serve.wait_for(r"give Zeckta this callback URL: (\S+ characters>)").group(1) == f"{public}/callbacks/zeckta/<{len(TOKEN)} characters>"
    assert rows(db, "SELECT message_id FROM forward_outbox") == [] and rows(db, "SELECT count(*) FROM events") == [(1,)]
    assert not any("203.0.113.66" in line for line in serve.lines)


def no_token_in(*paths: Path) -> None:
    for p in paths:
        for f in ([p] if p.is_file() else [q for q in p.rglob("*") if q.is_file()]):
            assert TOKEN.encode() not in f.read_bytes(), f


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed (Debian: apt-get install caddy)")
async def test_caddy_with_automatic_https(tmp_path: Path) -> None:
    for attempt in range(3):  # a free port may be taken by another program before caddy binds it
        port, listen = free_port(), free_port()
        public = f"https://localhost:{port}"
        site = fenced("caddyfile").replace("sms.example.com", f"localhost:{port}").replace("127.0.0.1:8787", f"127.0.0.1:{listen}")
        # Here only: no admin endpoint, no change to this machine's trust store, certificates kept in tmp.
        (tmp_path / "Caddyfile").write_text(f"{{\n\tadmin off\n\tskip_install_trust\n\tstorage file_system {tmp_path}/caddy\n}}\n\n{site}")
        env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
        serve, db = start_serve(tmp_path / f"try-{attempt}", listen, public)
        caddy = Process(["caddy", "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"], tmp_path / "caddy.log", env)
        try:
            try:
                wait_for_port(port, caddy)
            except AssertionError:
                if "address already in use" in caddy.log.read_text() and attempt < 2:
                    continue
                raise
            deadline = time.monotonic() + 30
            while not (root := next(tmp_path.glob("caddy/pki/authorities/local/root.crt"), None)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert root is not None, caddy.log.read_text()
            await check_the_proxy(public, ssl.create_default_context(cafile=str(root)), serve, db, public)
            break
        finally:
            caddy.stop()
            serve.proc.send_signal(signal.SIGTERM)
            assert serve.finish() == 0
    no_token_in(tmp_path / "caddy.log")
    assert TOKEN not in "\n".join(serve.lines)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (Debian: apt-get install nginx)")
async def test_nginx(tmp_path: Path) -> None:
    import trustme

    port, listen = free_port(), free_port()
    public = f"https://localhost:{port}"
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    server = (fenced("nginx").replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
              .replace("/etc/letsencrypt/live/sms.example.com/fullchain.pem", str(tmp_path / "cert.pem"))
              .replace("/etc/letsencrypt/live/sms.example.com/privkey.pem", str(tmp_path / "key.pem"))
              .replace("/var/log/nginx/", f"{tmp_path}/").replace("127.0.0.1:8787", f"127.0.0.1:{listen}"))
    assert "crit;" in server and "access_log off;" in server
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/main.error.log;\nevents {{}}\n"
                                         f"http {{\naccess_log {tmp_path}/main.access.log;\n{server}}}\n")
    serve, db = start_serve(tmp_path, listen, public)
    nginx = Process(["nginx", "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"], tmp_path / "nginx.out")
    try:
        wait_for_port(port, nginx)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        await check_the_proxy(public, context, serve, db, public)
        big = await through(f"{public}/callbacks/zeckta/{TOKEN}", context, "127.0.0.2", body=b"x" * 70_000)
        assert big == 413  # nginx's own limit, before smsmon's; its error line (with the request) is below crit
    finally:
        nginx.stop()
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.finish() == 0
    no_token_in(*[p for p in tmp_path.glob("*.log")], tmp_path / "nginx.out")


def test_the_systemd_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit; its ExecStart, run with its environment file as
    the README makes it, serves with the token and stops cleanly on SIGTERM, as systemd stops it."""
    unit = fenced("ini")
    env_file = tmp_path / "env"
    env_file.write_text(f"SMSMON_CALLBACK_TOKEN={secrets.token_hex(16)}\n")  # what the README's `echo ... > /etc/smsmon/env` writes
    here = unit.replace("/opt/smsmon/.venv/bin/smsmon", str(BIN / "smsmon")).replace("/etc/smsmon/env", str(env_file))
    if shutil.which("systemd-analyze"):
        (tmp_path / "smsmon.service").write_text(here)
        check = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "smsmon.service")], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    exec_start = shlex.split(re.search(r"^ExecStart=(.*)$", here, re.M).group(1))  # type: ignore[union-attr]
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    port = free_port()
    args = [f"127.0.0.1:{port}" if a == "127.0.0.1:8787" else str(tmp_path / "smsmon.db") if a == "/var/lib/smsmon/smsmon.db"
            else a for a in exec_start[2:]]
    assert exec_start[1] == "serve"
    serve = Serve(tmp_path / "unused.db", *args, env={**env, "SMSMON_CONFIG": ""})
    try:
        url = serve.url()
        assert serve.wait_for(r"give Zeckta this callback URL: (\S+ characters>)").group(1) == "https://sms.example.com/callbacks/zeckta/<32 characters>"
        body = json.dumps(callback(event_id="unit-1")).encode()
        assert post(f"{url}/callbacks/zeckta/{env['SMSMON_CALLBACK_TOKEN']}", body) == 200
        assert post(f"{url}/callbacks/zeckta", body) == 404
    finally:
        serve.proc.send_signal(signal.SIGTERM)
        code = serve.finish()
    assert code == 0 and any("stopped:" in line for line in serve.lines)
    assert rows(tmp_path / "smsmon.db", "SELECT event_key FROM events") == [("unit-1",)]


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
