"""`smsmon web` (issue 12): the real command serving the real app, driven over real HTTP, and a
real headless browser (Debian's chromium) loading the page and receiving the main screen."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smsmon.sim.generate import fill

TOKEN = "web-token-0123456789"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("web") / "web.db"
    fill(path, messages=200, seed=5, days=1)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`smsmon web` in a subprocess, stopped (SIGTERM) at the end; its stderr kept."""

    def __init__(self, db: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "smsmon", "web", "--db", str(db), "--listen",
                                      f"127.0.0.1:{self.port}", *args], stderr=self.stderr, stdout=subprocess.DEVNULL,
                                     env={**os.environ, "SMSMON_CONFIG": "", **(env or {})})
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.output()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                assert time.monotonic() < deadline, "smsmon web did not start listening"
                await asyncio.sleep(0.1)

    def output(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.output()


async def test_loopback_serves_the_page_and_refuses_other_hosts_and_foreign_pages(db) -> None:
    served = Served(db)
    try:
        await served.ready()
        async with aiohttp.ClientSession() as s:
            page = await s.get(served.url + "/")
            body = await page.text()
            assert page.status == 200 and f"ws://127.0.0.1:{served.port}/ws" in body
            assert "fonts.googleapis.com" not in body  # the page asks nothing of third parties
            rebound = await s.get(served.url + "/", headers={"Host": f"attacker.example:{served.port}"})
            assert rebound.status == 421  # DNS rebinding: a loopback server answers to loopback names only
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(served.url + "/ws", headers={"Origin": "https://attacker.example"})
            assert refused.value.status == 403  # another site open in the browser cannot drive the app
    finally:
        served.stop()


async def test_a_token_is_asked_once_kept_in_a_cookie_and_never_logged(db) -> None:
    served = Served(db, env={"SMSMON_WEB_TOKEN": TOKEN})
    try:
        await served.ready()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:  # unsafe: cookies of an IP address
            assert (await s.get(served.url + "/")).status == 403
            assert (await s.get(served.url + "/?token=web-token-0123456788")).status == 403  # one character off
            assert (await s.get(served.url + "/static/js/textual.js")).status == 403
            first = await s.get(served.url + f"/?token={TOKEN}", allow_redirects=False)
            assert first.status == 302 and first.headers["Location"] == "/"  # the token leaves the address bar
            cookie = first.cookies["smsmon_web"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            again = await s.get(served.url + "/")  # the session's cookie jar now carries it
            assert again.status == 200
    finally:
        output = served.stop()
    assert TOKEN not in output and "/?token=<20 characters>" in output  # the address is printed with the token masked


def test_another_address_needs_a_token_or_insecure(db) -> None:
    r = subprocess.run([sys.executable, "-m", "smsmon", "web", "--db", str(db), "--listen", "0.0.0.0:0"],
                       capture_output=True, text=True, env={**os.environ, "SMSMON_CONFIG": "", "SMSMON_WEB_TOKEN": ""},
                       timeout=30)
    assert r.returncode == 2 and "without a token" in r.stderr and "--insecure" in r.stderr
    r = subprocess.run([sys.executable, "-m", "smsmon", "web", "--db", str(db.parent / "missing.db")],
                       capture_output=True, text=True, env={**os.environ, "SMSMON_CONFIG": ""}, timeout=30)
    assert r.returncode == 1 and "no database at" in r.stderr and "Traceback" not in r.stderr


def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and possible; else a skip that says why."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "`apt-get install -y chromium chromium-driver`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
    done = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, env=env, timeout=900)
    if done.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(f"chromium could not be installed: {done.stderr.decode(errors='replace')[-300:]}")
    return shutil.which("chromium")  # type: ignore[return-value]


class DevTools:
    """Just enough of the Chrome DevTools Protocol, over aiohttp's websocket client."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.n = 0
        self.frames: list[bytes] = []  # what the page's websockets received

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("method") == "Network.webSocketFrameReceived":
                frame = msg["params"]["response"]
                data = frame["payloadData"]
                self.frames.append(base64.b64decode(data) if frame["opcode"] == 2 else data.encode())
            elif msg.get("id") == self.n:
                return msg.get("result", {})

    def received(self) -> str:
        return b"".join(self.frames).decode(errors="replace")


@pytest.mark.browser
async def test_a_headless_browser_loads_the_app_and_shows_the_main_screen(db, tmp_path) -> None:
    browser = chromium()
    served = Served(db)
    profile = tmp_path / "profile"
    proc = subprocess.Popen([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "--window-size=1280,800", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await served.ready()
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as s:
            page = next(t for t in await (await s.get(f"http://127.0.0.1:{port}/json")).json() if t["type"] == "page")
            async with s.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tools = DevTools(ws)
                await tools.call("Network.enable")
                await tools.call("Page.navigate", url=served.url + "/")
                deadline = time.monotonic() + 40
                while not ("delivery rate" in tools.received() and "OFFLINE" in tools.received()):
                    assert time.monotonic() < deadline, f"the page never showed the summary: {tools.received()[-500:]!r}"
                    await tools.call("Runtime.evaluate", expression="1")  # lets frames arrive
                    await asyncio.sleep(0.2)
                painted = await tools.call("Runtime.evaluate", returnByValue=True, expression=(
                    "document.body.classList.contains('-first-byte') && !!document.querySelector('.xterm-screen')"))
                assert painted["result"]["value"] is True  # the terminal in the page drew what arrived
                shot = await tools.call("Page.captureScreenshot", format="png")
                (tmp_path / "web.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        proc.terminate()
        proc.wait(10)
        served.stop()
    assert "messages" in tools.received() and "Insights" in tools.received()
