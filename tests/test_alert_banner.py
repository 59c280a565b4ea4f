"""The app's alert banner (issue 14): `watch`'s ingest judges the alert rules in the background,
and the main screen shows what fires in a banner, and hides it once the alert clears. Real
listener on loopback, real SQLite file, the app driven with Pilot."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx

from smsmon import config
from smsmon.alerts import CLEAR_AFTER
from smsmon.ingest.listener import ListenerConfig
from smsmon.ingest.runtime import Ingest
from smsmon.ui.app import SmsmonApp
from smsmon.ui.widgets.alert_banner import AlertBanner
from tests.helpers import NOW, callback
from tests.test_app import SIZE, text, until


async def test_a_silence_alert_shows_in_a_banner_and_goes_when_a_callback_arrives(tmp_path) -> None:
    settings = config.load(env={"SMSMON_CONFIG": "", "SMSMON_ALERTS_SILENCE_AFTER": "10m"}, flags={"db": tmp_path / "w.db"})
    clock = [NOW]
    ingest = Ingest(settings, listener=ListenerConfig(port=0), clock=lambda: clock[0])  # as `smsmon watch` builds it
    app = SmsmonApp(settings.db, ingest=ingest)
    async with app.run_test(size=SIZE) as pilot:
        banner = app.main.query_one("#alerts", AlertBanner)
        # the runtime's evaluator ran on its own at start: listening for 0 s, nothing fires
        await until(pilot, lambda: ingest.alerts is not None and ingest.alerts.figures is not None)
        assert ingest.alerts.firing() == [] and not banner.display

        clock[0] = NOW + timedelta(minutes=11)  # eleven minutes without a callback
        await ingest.alerts.evaluate()
        await until(pilot, lambda: banner.display and banner.region.height >= 1)  # drawn, not only told to
        shown = text(banner)
        assert "1 alert firing" in shown and "no callback for 11m" in shown, shown
        assert banner.region.y < app.main.query_one("#health").region.y  # above the health line

        async with httpx.AsyncClient() as client:
            r = await client.post(f"{ingest.health.listening}/callbacks/zeckta", content=json.dumps(callback()))
        assert r.status_code == 200
        for _ in range(CLEAR_AFTER):  # an alert clears after this many quiet evaluations in a row (no flapping)
            await ingest.alerts.evaluate()
        await until(pilot, lambda: not banner.display)
        assert ingest.alerts.firing() == [] and banner.line is None
        await pilot.press("q")
