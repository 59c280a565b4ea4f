"""Headless commands: `smsmon serve` (listener and pollers) and `smsmon poll`. Logs go to
stderr with every secret masked; SIGINT/SIGTERM stop cleanly."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from contextlib import AsyncExitStack
from typing import Any

from smsmon.ingest.committer import Committer
from smsmon.ingest.listener import Listener, ListenerConfig
from smsmon.ingest.poller import PollOutcome, run_poller
from smsmon.ingest.runtime import NOT_CONFIGURED, build_pollers
from smsmon.redact import RedactingFilter, Redactor

log = logging.getLogger("smsmon.serve")


def _setup_logging(redact: Redactor) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter(redact))
    root = logging.getLogger("smsmon")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_serve(settings: Any, config: ListenerConfig, *, busy_timeout: float = 5.0, pollers: bool = True) -> None:
    _setup_logging(Redactor([*settings.secrets, config.token]))
    committer = Committer(settings.db_path, busy_timeout=busy_timeout)
    committer.start()
    try:
        asyncio.run(_serve(settings, committer, config, pollers))
    finally:
        committer.stop()
        log.info("stopped: %s new events and %s duplicates stored this run; database %s",
                 f"{committer.events_stored:,}", f"{committer.duplicates:,}", settings.db_path)


async def _serve(settings: Any, committer: Committer, config: ListenerConfig, with_pollers: bool) -> None:
    listener = Listener(committer, config)
    stop = _stop_event()
    async with AsyncExitStack() as stack:
        scheduled = await build_pollers(settings, committer, stack) if with_pollers else []
        url = await listener.start()
        gc.freeze()  # what start-up made lives as long as the process: keep the collector off it
        log.info("smsmon serve: database %s (%s events)", committer.db_path, f"{committer.last_event_id:,}")
        log.info("listening on %s", url)
        log.info("give Zeckta this callback URL: %s%s", listener.callback_url,
                 "  (the token is masked here: use yours)" if config.token else "")
        if config.allow_from:
            log.info("accepting only from %s", ", ".join(str(n) for n in config.allow_from))
        for s in scheduled:
            base = settings.eazita_url if s.poller.provider == "eazita" else settings.zeckta_url
            log.info("polling %s every %g s at %s", s.poller.provider, s.interval, base)
        if with_pollers and not scheduled:
            log.info("not polling (%s)", NOT_CONFIGURED.split(": ", 1)[1].split(" (or")[0])
        log.info("health: %s/healthz   stop: Ctrl+C", url)
        tasks = [asyncio.create_task(run_poller(s.poller, committer, s.interval, stop)) for s in scheduled]
        await stop.wait()
        log.info("stopping: no new connections; committing callbacks in flight")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.stop()


def run_poll(settings: Any, *, once: bool, only: str | None, message: str | None = None) -> list[PollOutcome]:
    """`smsmon poll`: one cycle of each configured poller (`once`), ask about one `message`
    (`provider:id`, resolved by the caller), or poll until stopped."""
    if message is not None:
        only = message.split(":", 1)[0]
        once = True
    configured = {"eazita": settings.eazita_configured, "zeckta": settings.zeckta_configured}
    if not (configured[only] if only else any(configured.values())):
        from smsmon.errors import SmsmonError

        raise SmsmonError(NOT_CONFIGURED if only is None else f"{only} is not configured: {NOT_CONFIGURED.split(': ', 1)[1]}")
    _setup_logging(Redactor(settings.secrets))
    committer = Committer(settings.db_path)
    committer.start()
    try:
        return asyncio.run(_poll(settings, committer, once, only, message))
    finally:
        committer.stop()


async def _poll(settings: Any, committer: Committer, once: bool, only: str | None,
                message: str | None) -> list[PollOutcome]:
    async with AsyncExitStack() as stack:
        scheduled = await build_pollers(settings, committer, stack, only)
        if message is not None:
            outcome = await scheduled[0].poller.refresh(message.split(":", 1)[1])
            await committer.poll_run(outcome.run_row())
            return [outcome]
        if once:
            outcomes = list(await asyncio.gather(*(s.poller.poll_once() for s in scheduled)))
            for o in outcomes:
                await committer.poll_run(o.run_row())
            return outcomes
        stop = _stop_event()
        for s in scheduled:
            log.info("polling %s every %g s; stop: Ctrl+C", s.poller.provider, s.interval)
        await asyncio.gather(*(run_poller(s.poller, committer, s.interval, stop) for s in scheduled))
        return []

