"""The database attacks of `smsmon bench attack` (issue 9), in their short form: CI runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_the_database_attacks_break_no_rule() -> None:
    r = subprocess.run([sys.executable, "-m", "smsmon", "bench", "attack", "--quick", "--area", "database", "--json"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "SMSMON_CONFIG": ""})
    results = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr
    assert {x["attack"].split(" while")[0] for x in results} >= {"database file removed", "database file replaced",
                                                                 "database file truncated"}
    assert all(x["ok"] for x in results), [x for x in results if not x["ok"]]
    lost = [x for x in results if x["figures"].get("lost")]
    assert not lost
