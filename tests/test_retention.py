"""Retention in the background (issue 14): `serve`'s prune runs on the writer thread between
commits of callbacks arriving meanwhile; nothing acknowledged is lost and every count stays exact."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smsmon import config
from smsmon.ingest.listener import ListenerConfig
from smsmon.ingest.runtime import Ingest
from smsmon.sim.generate import fill
from smsmon.timeutil import fmt
from tests.helpers import NOW, arg, callback, rows
from tests.test_prune import _check_stats, maintained, recount


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ret") / "g.db"
    fill(path, messages=3000, seed=9, days=6, now=NOW)
    return path


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_retention_prunes_while_callbacks_arrive_and_loses_none(generated, tmp_path, backend, request) -> None:
    db: Any = tmp_path / "r.db"
    shutil.copy(generated, db)
    if backend == "postgres":  # the same database, copied into PostgreSQL by `smsmon migrate`'s copy
        from tests.test_prune import in_postgresql

        db = in_postgresql(db, request.getfixturevalue("pg_server"))
    settings = config.load(env={"SMSMON_DB": arg(db), "SMSMON_RETENTION": "3d"})
    ing = Ingest(settings, listener=ListenerConfig(port=0), clock=lambda: NOW)
    await ing.start()
    try:
        assert ing.operations is not None and ing.operations.retention is not None
        ing.operations.retention.batch = 100  # many batches, so callbacks land between them
        url = ing.health.listening + "/callbacks/zeckta"

        async def traffic() -> list[int]:
            async with aiohttp.ClientSession() as s:
                async def one(i: int) -> int:
                    async with s.post(url, json=callback("MESSAGE_DELIVERED", uuid=f"live-{i}", event_id=f"ev-{i}",
                                                         at=NOW - timedelta(minutes=1))) as r:
                        return r.status
                return list(await asyncio.gather(*(one(i) for i in range(300))))

        statuses, result = await asyncio.gather(traffic(), ing.operations.retention.run_once())
        assert statuses == [200] * 300
        assert result.messages > 1000 and result.batches > 10
        async with aiohttp.ClientSession() as s, s.get(ing.health.listening + "/metrics") as r:
            text = await r.text()
        assert f'smsmon_pruned_total{{what="messages"}} {float(result.messages)}' in text
    finally:
        await ing.stop()
    assert rows(db, "SELECT count(*) FROM messages WHERE id LIKE 'zeckta:live-%'")[0][0] == 300
    cutoff = fmt(NOW - timedelta(days=3))
    assert rows(db, "SELECT count(*) FROM messages WHERE last_event_at < ?", cutoff)[0][0] <= 1  # the newest may stay
    assert maintained(db) == recount(db)
    if backend == "sqlite":
        _check_stats(db)
