"""Issue 9: with the common open-file limit of 1,024, 1,100 idle sockets made real callbacks time
out and `accept` errors flooded the log. `smsmon serve` raises its soft limit to the hard one
and holds fewer connections than the limit allows."""

from __future__ import annotations

import json
import resource
import urllib.request
from pathlib import Path

from smsmon.bench.ingest import smsmon_server
from smsmon.ingest.connections import FD_RESERVE, MAX_CONNECTIONS


def serve_with_limit(tmp_path: Path, soft: int, hard: int):  # type: ignore[no-untyped-def]
    return smsmon_server(tmp_path / "s.db", "--no-poll", "--config", str(tmp_path / "none.toml"),
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
        return json.load(r)


def test_serve_raises_its_open_file_limit_to_the_hard_one(tmp_path) -> None:
    (tmp_path / "none.toml").write_text("")
    server = serve_with_limit(tmp_path, 256, 4096)
    try:
        assert health(server.url)["connections"]["cap"] == min(MAX_CONNECTIONS, 4096 - FD_RESERVE)
    finally:
        assert server.stop() == 0
    assert "open-file limit" not in "".join(server.lines)


def test_with_a_low_hard_limit_serve_says_so_and_holds_fewer_connections(tmp_path) -> None:
    (tmp_path / "none.toml").write_text("")
    server = serve_with_limit(tmp_path, 300, 300)
    try:
        assert health(server.url)["connections"]["cap"] == 150  # half of a limit too small to keep FD_RESERVE aside
    finally:
        assert server.stop() == 0
    assert "the open-file limit (300) allows 150 connections at once; raise it (`ulimit -n`) for more" in "".join(server.lines)
