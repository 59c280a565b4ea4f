"""`smsmon bench attack`, run as CI runs it: the listener's attacks against a real `smsmon serve`
(fuzz, Expect, oversize, secrets, log flood, idle and slow connections). No rule may break."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def attack(*args: str, timeout: float) -> tuple[int, list[dict], str]:
    done = subprocess.run([sys.executable, "-m", "smsmon", "bench", "attack", "--area", "listener", "--json", *args],
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, json.loads(done.stdout or "[]"), done.stderr


def test_the_quick_listener_attacks_break_no_rule() -> None:
    code, results, err = attack("--quick", timeout=120)
    broken = [f"{r['attack']}: {r['outcome']}" for r in results if not r["ok"]]
    assert not broken, "\n".join(broken) + "\n" + err
    assert code == 0 and len(results) == 8, err
    by_attack = {r["attack"].split(":")[0].split(" ")[0]: r for r in results}
    fuzz = by_attack["fuzz"]["figures"]
    assert fuzz["requests"] == 1500 and fuzz["stored"] == fuzz["new_events"] > 0
    assert fuzz["parser_400"] == fuzz["dead_letters"] > 0 and not any(k.startswith("5") for k in fuzz["statuses"])
    held = results[-1]["figures"]
    assert held["real"]["ok"] == held["real"]["sent"] == held["real"]["stored"] > 0
    assert held["server"]["closed_to_make_room"] > 0  # the attack really filled the listener
    assert "8 attacks, 0 broke a rule" in err


@pytest.mark.slow
def test_the_full_listener_attacks_break_no_rule() -> None:
    code, results, err = attack(timeout=600)
    broken = [f"{r['attack']}: {r['outcome']}" for r in results if not r["ok"]]
    assert not broken and code == 0, "\n".join(broken) + "\n" + err
    assert results[0]["figures"]["requests"] == 20_000
