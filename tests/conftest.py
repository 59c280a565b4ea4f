from __future__ import annotations

from pathlib import Path

import pytest

from smsmon.store.writer import Writer


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "smsmon.db"


@pytest.fixture
def writer(db_path: Path):
    w = Writer(db_path)
    yield w
    w.close()
