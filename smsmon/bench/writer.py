"""The writer beside another installed smsmon, in one run, taking turns (`smsmon bench writer`).

Each side is a fresh Python process of its own installation (`python -c SNIPPET`), so that the
other version's code is what runs: it generates the events of a seed with its own generator
(the same events as long as the generator has not changed between the versions), writes them with its own `Writer` in batches of 500 into a fresh file in a temporary directory
(and, when given, into a large database of its own schema), and prints events/s and CPU per
event. Medians per side and the ratio come out at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import smsmon
from smsmon.errors import SmsmonError

# Runs inside either installation: the helpers moved between versions (smsmon/bench.py then,
# smsmon/bench/store.py now), the rest of what it uses did not.
SNIPPET = r'''
import json, resource, sys, tempfile
from pathlib import Path
import smsmon
try:
    from smsmon.bench.store import _take, _write_rate
except ImportError:
    from smsmon.bench import _take, _write_rate
from smsmon.sim.generate import generate_events
from smsmon.timeutil import now_utc
db, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
events = _take(generate_events(n, seed=seed, now=now_utc()), n)
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "fresh.db" if db == "-" else Path(db)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    rate = _write_rate(path, events)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"rate": rate, "cpu_us_per_event": cpu / len(events) * 1e6, "smsmon": str(Path(smsmon.__file__).parent)}))
'''


@dataclass
class Case:
    """One database case ("fresh", "large") and what each side measured in it."""

    name: str
    events: int
    dbs: dict[str, str]  # per side: the database written to ("-": a fresh one each run)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def median(self, side: str, what: str) -> float:
        return statistics.median(r[what] for r in self.runs[side])


def _run(python: str, db: str, events: int, seed: int, env: dict[str, str]) -> dict[str, Any]:
    try:
        # From the temporary directory: `python -c` puts the working directory first on its path,
        # and a checkout of smsmon there would stand in for the installation under test.
        done = subprocess.run([python, "-c", SNIPPET, db, str(events), str(seed)], capture_output=True, text=True,
                              cwd=tempfile.gettempdir(), env=env)
    except OSError as exc:
        raise SmsmonError(f"cannot run {python}: {exc.strerror}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        raise SmsmonError(f"{python} could not run the writer: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(against: str, *, rounds: int, fresh_events: int, large: tuple[Path, Path] | None, large_events: int,
            say: Callable[[str], None]) -> list[Case]:
    """`against`: the other installation's python. `large`: (this side's database, the other's),
    each of its own version's schema; events are added to both."""
    sides = {"other": against, "this": sys.executable}
    # This side runs this smsmon, wherever it was imported from (a checkout run with `python -m`
    # too); the other its own installation's, whatever PYTHONPATH says here.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    envs = {"other": env, "this": {**env, "PYTHONPATH": str(Path(smsmon.__file__).parent.parent)}}
    cases = [Case("fresh", fresh_events, {"other": "-", "this": "-"})]
    if large:
        cases.append(Case("large", large_events, {"other": str(large[1]), "this": str(large[0])}))
    for r in range(rounds):
        for case in cases:
            for side, python in sides.items():
                seed = 101 if case.name == "fresh" else 202 + r  # new events each round in a large file
                res = case.runs.setdefault(side, [])
                res.append(_run(python, case.dbs[side], case.events, seed, envs[side]))
                where = res[-1].pop("smsmon")
                if r == 0 and case is cases[0]:  # which code each side runs, said once
                    say(f"{side}: smsmon in {where}")
                say(f"round {r + 1} {case.name:<5} {side:<5} {res[-1]['rate']:>9,.0f} events/s"
                    f"  {res[-1]['cpu_us_per_event']:6.1f} us CPU/event")
    return cases
