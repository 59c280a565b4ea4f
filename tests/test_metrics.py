"""Prometheus metrics (issue 14): scrape the real listener of a real Ingest (callbacks over HTTP,
the real poller against the fake Eazita, a real SQLite file), parse the text format, and check
the figures against the database; the token rule; the Grafana dashboard names only what is
exported."""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from smsmon import config
from smsmon.ingest.listener import ListenerConfig
from smsmon.ingest.runtime import Ingest
from smsmon.sim.servers import FakeEazita, Step
from smsmon.timeutil import UTC
from tests.helpers import arg, callback, rows
from tests.test_forward import eventually, free_port

ROOT = Path(__file__).parent.parent
TOKEN = "metrics-token-0123456789"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


@asynccontextmanager
async def world(db: Any, env: dict[str, str] | None = None, **listener: Any) -> AsyncIterator[tuple[Ingest, str, FakeEazita]]:
    fake = FakeEazita("k-123456", "p-123456")
    await fake.start()
    settings = config.load(env={"SMSMON_DB": arg(db), "SMSMON_EAZITA_API_KEY": "k-123456", "SMSMON_EAZITA_PASSWORD": "p-123456",
                                "SMSMON_EAZITA_URL": fake.url, **(env or {})})
    ing = Ingest(settings, listener=ListenerConfig(port=0, **listener))
    await ing.start()
    try:
        yield ing, ing.health.listening, fake
    finally:
        await ing.stop()
        await fake.stop()


async def scrape_after_traffic(db: Any) -> tuple[Samples, str]:
    # forwarding to an application that is down: every new callback waits in the outbox (issue 13)
    env = {"SMSMON_ALERTS_DELIVERY_RATE_BELOW": "99%", "SMSMON_ALERTS_MIN_MESSAGES": "1",
           "SMSMON_FORWARD_URL": f"http://127.0.0.1:{free_port()}/hooks/sms"}
    async with world(db, env) as (ing, base, fake), aiohttp.ClientSession() as s:
        url = base + "/callbacks/zeckta"
        now = datetime.now(UTC) - timedelta(seconds=5)
        sent = callback("MESSAGE_SENT", uuid="m1", at=now - timedelta(seconds=5))
        for body in (sent, sent, callback("MESSAGE_DELIVERED", uuid="m1", at=now), callback("MESSAGE_FAILED", uuid="m2", at=now)):
            async with s.post(url, json=body) as r:
                assert r.status == 200
        async with s.post(url, data=b"{not json") as r:
            assert r.status == 400
        fake.add(7001, [Step(0, "SUBMIT"), Step(0, "NOT_DELIVERED", "101")], network="Jazz")
        await ing.poll_once()
        fake.fail("http", arg=502)
        await ing.poll_once()
        # the forwarder has tried them and counted its outbox: the three new callbacks wait
        await eventually(lambda: ing.health.forward is not None and ing.health.forward.waiting == 3
                         and ing.health.forward.last_error is not None, what=lambda: str(ing.health.forward))
        assert ing.alerts is not None
        await ing.alerts.evaluate()
        async with s.get(base + "/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    return parse(text), text


async def test_the_metrics_say_what_happened(db) -> None:
    m, _ = await scrape_after_traffic(db)
    cb = {dict(k[1])["result"]: v for k, v in m.items() if k[0] == "smsmon_callbacks_total"}
    assert (cb["new"], cb["duplicate"], cb["rejected"], cb["unavailable"]) == (3, 1, 1, 0)
    stored = {(dict(k[1])["provider"], dict(k[1])["status"], dict(k[1])["outcome"]): v
              for k, v in m.items() if k[0] == "smsmon_events_total"}
    in_db = {(p, st, outcome): n for p, st, outcome, n in rows(
        db, "SELECT m.provider, e.status, m.outcome, count(*) FROM events e JOIN messages m ON m.seq = e.message_seq"
                 " GROUP BY 1, 2, 3")}
    assert sum(stored.values()) == rows(db, "SELECT count(*) FROM events")[0][0] == 4
    assert stored[("zeckta", "FAILED", "NOT_DELIVERED")] == 1 and stored[("eazita", "UNDELIVERABLE", "NOT_DELIVERED")] == 1
    assert {k[:2] for k in stored} == {k[:2] for k in in_db}
    commits = m[("smsmon_commit_seconds_count", ())]
    assert commits == m[("smsmon_commit_batch_size_count", ())] > 0 and m[("smsmon_commit_seconds_sum", ())] > 0
    assert m[("smsmon_commit_batch_size_bucket", (("le", "+Inf"),))] == commits
    assert m[("smsmon_commit_batch_size_sum", ())] >= 4 + 1 + 2  # four callbacks, a dead letter, two poll runs (and poll events)
    assert m[("smsmon_poll_runs_total", (("provider", "eazita"), ("result", "ok")))] == 1
    assert m[("smsmon_poll_runs_total", (("provider", "eazita"), ("result", "poll_server_error")))] == 1
    assert m[("smsmon_dead_letters", ())] == 1 and m[("smsmon_stale_messages", ())] == 0
    assert m[("smsmon_window_finished_messages", ())] == 3 and m[("smsmon_delivery_rate", ())] == 1 / 3
    assert m[("smsmon_window_failures_by_code", (("error_code", "101"), ("provider", "eazita")))] == 1
    assert m[("smsmon_window_failures_by_network", (("network", "Jazz"),))] == 1
    assert m[("smsmon_alerts_firing", (("rule", "delivery_rate"), ("subject", "")))] == 1
    waiting = rows(db, "SELECT count(*) FROM forward_outbox")[0][0]
    assert m[("smsmon_forward_queue_depth", ())] == waiting == 3 and m[("smsmon_store_up", ())] == 1
    assert m[("smsmon_last_callback_timestamp_seconds", ())] > 1.7e9


async def test_without_a_forwarder_there_is_no_queue_gauge(db) -> None:
    async with world(db) as (_, base, _fake), aiohttp.ClientSession() as s:
        async with s.get(base + "/metrics") as r:
            m = parse(await r.text())
    assert ("smsmon_forward_queue_depth", ()) not in m and ("smsmon_store_up", ()) in m


async def test_the_token_rule_is_the_callbacks(db) -> None:
    async with world(db, token=TOKEN) as (_, base, _fake), aiohttp.ClientSession() as s:
        for path, headers, status in [
            ("/metrics", {}, 404), ("/metrics/wrong-token-0123456", {}, 404), (f"/metrics/{TOKEN}", {}, 200),
            ("/metrics", {"Authorization": f"Bearer {TOKEN}"}, 200), ("/metrics", {"Authorization": "Bearer nope"}, 404),
            ("/metrics", {"Authorization": f"Basic {TOKEN}"}, 404),
        ]:
            async with s.get(base + path, headers=headers) as r:
                assert r.status == status, (path, headers)
                if status == 200:
                    assert "smsmon_callbacks_total" in await r.text()
        async with s.post(f"{base}/metrics/{TOKEN}") as r:
            assert r.status == 405
    async with world(db) as (_, base, _fake), aiohttp.ClientSession() as s:
        async with s.get(f"{base}/metrics/{TOKEN}") as r:
            assert r.status == 404  # no token set: the path takes none


async def test_allow_from_applies_and_metrics_can_be_off(db) -> None:
    from smsmon.ingest.listener import parse_networks

    async with world(db, allow_from=parse_networks(["10.0.0.0/8"])) as (_, base, _fake), aiohttp.ClientSession() as s:
        async with s.get(base + "/metrics") as r:
            assert r.status == 403
    async with world(db, {"SMSMON_METRICS": "off"}) as (_, base, _fake), aiohttp.ClientSession() as s:
        async with s.get(base + "/metrics") as r:
            assert r.status == 404


async def test_the_grafana_dashboard_shows_only_what_is_exported(db) -> None:
    dashboard = json.loads((ROOT / "contrib" / "grafana" / "smsmon.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15 and all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    _, text = await scrape_after_traffic(db)
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    named = {n for e in exprs for n in re.findall(r"\bsmsmon_[a-z_]+", e)}
    assert named and named <= exported, named - exported
    # and the families the issue asks for are all on it
    for family in ("callbacks", "events", "commit_batch_size", "commit_seconds", "poll_runs", "dead_letters",
                   "forward_queue_depth", "stale_messages", "delivery_rate"):
        assert any(n.startswith(f"smsmon_{family}") for n in named), family
