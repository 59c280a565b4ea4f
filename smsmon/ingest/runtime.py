"""Builds the configured pollers from settings, for `serve`, `poll` and the app."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

import httpx

from smsmon import __version__
from smsmon.ingest.committer import Committer
from smsmon.ingest.poller import EazitaPoller, Poller, Reader, ZecktaStatusPoller
from smsmon.redact import Redactor

USER_AGENT = f"smsmon/{__version__}"


@dataclass
class Scheduled:
    poller: Poller
    interval: float


async def build_pollers(settings, committer: Committer, stack: AsyncExitStack,  # type: ignore[no-untyped-def]
                        only: str | None = None) -> list[Scheduled]:
    """The pollers whose credentials are configured (or just `only`). Their HTTP clients close
    with `stack`."""
    redact = Redactor(settings.secrets)
    reader = Reader(committer.db_path)
    window = settings.window
    out: list[Scheduled] = []
    if settings.eazita_configured and only in (None, "eazita"):
        client = await stack.enter_async_context(httpx.AsyncClient(
            base_url=settings.eazita_url, timeout=httpx.Timeout(settings.seconds("eazita_timeout"), connect=10.0),
            headers={"User-Agent": USER_AGENT}))
        out.append(Scheduled(EazitaPoller(client, committer, reader, redact, window, api_key=settings.eazita_api_key,
                                          password=settings.eazita_password, tz=settings.tz),
                             settings.seconds("eazita_interval")))
    if settings.zeckta_configured and only in (None, "zeckta"):
        client = await stack.enter_async_context(httpx.AsyncClient(
            base_url=settings.zeckta_url, timeout=httpx.Timeout(settings.seconds("zeckta_timeout"), connect=10.0),
            headers={"User-Agent": USER_AGENT}))
        out.append(Scheduled(ZecktaStatusPoller(client, committer, reader, redact, window, api_key=settings.zeckta_api_key,
                                                status_after=timedelta(seconds=settings.seconds("zeckta_status_after"))),
                             settings.seconds("zeckta_interval")))
    return out


NOT_CONFIGURED = ("no poller is configured: set SMSMON_EAZITA_API_KEY and SMSMON_EAZITA_PASSWORD for Eazita, "
                  "SMSMON_ZECKTA_API_KEY for Zeckta's Status API (or the [eazita] / [zeckta] sections of the config file)")
