"""`smsmon bench attack --quick --area provider`, as CI runs it: the pollers against providers that
misbehave (issue 9), every rule holding, with the figures that show it."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_provider_attacks_break_no_rule(tmp_path) -> None:
    p = subprocess.run([sys.executable, "-m", "smsmon", "bench", "attack", "--quick", "--area", "provider", "--json"],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path)
    results = json.loads(p.stdout)
    broken = [f"{r['attack']}: {r['outcome']}" for r in results if not r["ok"]]
    assert p.returncode == 0 and not broken, "\n".join(broken) or p.stderr[-2000:]
    by_attack = {r["attack"]: r for r in results}
    assert len(results) >= 12 and {r["area"] for r in results} == {"provider"}
    bomb = next(r for a, r in by_attack.items() if a.startswith("a gzip bomb"))
    assert bomb["figures"]["error_code"] == "poll_too_large" and 0 < bomb["figures"]["peak_rss_mb"] < 150
    drip = next(r for a, r in by_attack.items() if a.startswith("one byte a second"))
    assert drip["figures"]["error_code"] == "poll_timeout" and drip["figures"]["seconds"] < 7
    live = next(r for a, r in by_attack.items() if a.startswith("`smsmon serve` with a live poller"))
    assert live["figures"]["next_try_s"] == 300 and live["figures"]["failures"] >= 5
    secrets = by_attack["every credential, in every encoding, looked for in stdout, stderr, poll_runs and the database files"]
    assert secrets["figures"]["files"] > 0 and not secrets["figures"]["leaked_in_files"]
    assert "provider" in p.stderr and "attacks, 0 broke a rule" in p.stderr
