from __future__ import annotations

import json
import uuid as uuidlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smsmon.lifecycle import Event
from smsmon.providers import eazita, zeckta
from smsmon.store.writer import Writer
from smsmon.timeutil import UTC, zone

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
KARACHI = zone("Asia/Karachi")


def callback(event_type: str = "MESSAGE_DELIVERED", *, uuid: str = "m-1", event_id: str | None = None,
             at: datetime | str = NOW - timedelta(minutes=5), **message: Any) -> dict[str, Any]:
    """A Zeckta callback as the provider documents it."""
    ts = at if isinstance(at, str) else at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "482Z"
    return {
        "eventId": event_id or str(uuidlib.uuid4()),
        "eventType": event_type,
        "timestamp": ts,
        "message": {"uuid": uuid, "src": "ACME", "dest": "+233241234567", "status": event_type.removeprefix("MESSAGE_"),
                    "segments": 1, "units": 1, "attempts": 1, **message},
    }


def zevent(event_type: str = "MESSAGE_DELIVERED", **kw: Any) -> Event:
    return zeckta.parse_callback(json.dumps(callback(event_type, **kw)).encode(), received_at=NOW)


def report_row(status: str = "DELIVERED", *, message_id: int = 569399, sent: str = "2026/11/23 16:50:00",
               done: str | None = "2026/11/23 16:51:00", error_code: str = "0", **extra: Any) -> dict[str, Any]:
    """An Eazita delivery-report row, numbers as strings as in Eazita's own sample."""
    return {"message_id": message_id, "status": status, "price": "0.003", "network": "Zong", "country_code": "92",
            "done_date": done, "sent_date": sent, "error_code": error_code, "reference": None, **extra}


def eevent(status: str = "DELIVERED", **kw: Any) -> Event:
    return eazita.row_event(report_row(status, **kw), tz=KARACHI, received_at=NOW)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "smsmon.db"


@pytest.fixture
def writer(db_path: Path):
    w = Writer(db_path)
    yield w
    w.close()
