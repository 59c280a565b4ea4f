"""`smsmon serve`: the listener headless, with logs on stderr and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path

from smsmon.ingest.committer import Committer
from smsmon.ingest.listener import Listener, ListenerConfig

log = logging.getLogger("smsmon.serve")


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("smsmon")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def run_serve(db_path: Path, config: ListenerConfig, *, busy_timeout: float = 5.0) -> None:
    _setup_logging()
    committer = Committer(db_path, busy_timeout=busy_timeout)
    committer.start()
    try:
        asyncio.run(_serve(committer, config))
    finally:
        committer.stop()
        log.info("stopped: %s new events and %s duplicates stored this run; database %s",
                 f"{committer.events_stored:,}", f"{committer.duplicates:,}", db_path)


async def _serve(committer: Committer, config: ListenerConfig) -> None:
    listener = Listener(committer, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await listener.start()
    gc.freeze()  # what start-up made lives as long as the process: keep the collector off it
    log.info("smsmon serve: database %s (%s events)", committer.db_path, f"{committer.last_event_id:,}")
    log.info("listening on %s", url)
    log.info("give Zeckta this callback URL: %s%s", listener.callback_url,
             "  (the token is masked here: use yours)" if config.token else "")
    if config.allow_from:
        log.info("accepting only from %s", ", ".join(str(n) for n in config.allow_from))
    log.info("health: %s/healthz   stop: Ctrl+C", url)
    await stop.wait()
    log.info("stopping: no new connections; committing callbacks in flight")
    await listener.stop()
