"""`smsmon web`: the app in a browser, served by textual-serve. Each browser tab gets its own
`smsmon browse` process (the same app, offline: it follows the rows `smsmon serve` or `watch`
add to the database), driven over a websocket.

Security follows the callback listener's rule: loopback by default; another address needs a
token (or --insecure, when something in front checks). The token is given once in the URL
(`/?token=...`), then kept in an HttpOnly, SameSite=Strict cookie and dropped from the address;
it is compared in constant time and never logged (the access log is off: it would print the
URL). Whatever the address, the websocket that drives the app is refused unless it comes from a
page of this server (its Origin), so that another site open in the same browser cannot drive it,
and on loopback a request naming another host (DNS rebinding) is refused."""

from __future__ import annotations

import hmac
import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from smsmon.config import Address, Secret

COOKIE = "smsmon_web"
TOKEN_MIN = 8
Handler = Callable[[Any], Awaitable[Any]]
log = logging.getLogger("smsmon.web")


def browse_command(db: Path | None, config_file: Path | None) -> str:
    """The command each browser tab runs: this Python, this smsmon, the same database (None: the
    one SMSMON_DB names in the environment the tabs inherit, which keeps a URL's password out of `ps`)."""
    words = [sys.executable, "-m", "smsmon", "browse", *(["--db", str(db)] if db is not None else [])]
    if config_file is not None:
        words += ["--config", str(config_file)]
    return " ".join(shlex.quote(w) for w in words)


def check(address: Address, token: Secret | None, insecure: bool) -> None:
    """Refuse what is unsafe by default, saying the way out. Raises ValueError."""
    if not address.loopback and token is None and not insecure:
        raise ValueError(f"refusing to serve the app on {address.host} without a token: anyone who can reach it could read"
                         " your database. Set SMSMON_WEB_TOKEN (or --token), or pass --insecure if something else protects it")
    if token is not None and (len(token) < TOKEN_MIN or not token.reveal().isprintable()):
        raise ValueError(f"the web token must be at least {TOKEN_MIN} printable characters")


def same(a: str | None, b: str) -> bool:
    """Constant-time comparison (a wrong guess takes as long as a near miss)."""
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def make_server(command: str, address: Address, *, token: Secret | None, title: str = "smsmon") -> Any:
    """A textual-serve Server for `command` with smsmon's guard in front."""
    import aiohttp_jinja2
    import jinja2
    from aiohttp import web
    from textual_serve.server import Server

    loopback_hosts = {f"{h}:{address.port}" for h in ("127.0.0.1", "localhost", "[::1]")}

    class WebServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(guard)
            index = (Path(self.templates_path) / "app_index.html").read_text()
            # The stock page fetches a font from a third-party site: not from here.
            index = "\n".join(line for line in index.splitlines() if "fonts.googleapis.com" not in line)
            aiohttp_jinja2.setup(app, loader=jinja2.DictLoader({"app_index.html": index}))
            return app

        @aiohttp_jinja2.template("app_index.html")
        async def handle_index(self, request: web.Request) -> dict[str, Any]:
            """The page, with the websocket at the address the browser used (so it works
            behind any name or address the server is reached by)."""
            scheme = "wss" if request.secure else "ws"
            return {"font_size": 16, "app_websocket_url": f"{scheme}://{request.host}/ws",
                    "config": {"static": {"url": "/static/"}}, "application": {"name": self.title}}

        async def on_startup(self, app: web.Application) -> None:
            shown = f"/?token={token.masked()}" if token else "/"
            print(f"smsmon web: serving the app on http://{address.host}:{address.port}{shown}", file=sys.stderr)
            print("each browser tab runs its own `smsmon browse`; Ctrl+C stops", file=sys.stderr)

        def initialize_logging(self) -> None:
            logging.getLogger("textual-serve").setLevel(logging.WARNING)

        def serve(self, debug: bool = False) -> None:
            import asyncio
            import signal

            from aiohttp.web_runner import GracefulExit

            self.initialize_logging()

            def stop() -> None:
                raise GracefulExit()

            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop)
            # access_log=None: the log line would hold the URL, and with it a token.
            web.run_app(self._make_app(), host=address.host, port=address.port, handle_signals=False, loop=loop,
                        access_log=None, print=lambda *args: None)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if address.loopback and request.host not in loopback_hosts:
            return web.Response(status=421, text="this server answers only to its own loopback address\n")
        if request.path == "/ws":
            origin = request.headers.get("Origin", "")
            if urlsplit(origin).netloc != request.host:
                return web.Response(status=403, text="the app's websocket only serves this server's own page\n")
        if token is None:
            return await handler(request)
        secret = token.reveal()
        if same(request.cookies.get(COOKIE), secret):
            return await handler(request)
        if request.path == "/" and same(request.query.get("token"), secret):
            response = web.Response(status=302, headers={"Location": "/"})  # the token leaves the address bar and history
            response.set_cookie(COOKIE, secret, httponly=True, samesite="Strict", secure=request.secure)
            return response
        return web.Response(status=403, text="a token is needed: open the address `smsmon web` printed, with ?token=\n")

    return WebServer(command, host=address.host, port=address.port, title=title)
