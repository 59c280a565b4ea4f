"""`smsmon bench attack`: what an attacker, a broken provider or a careless operator would do
to a running smsmon, each tried for real against `smsmon serve` (or the pollers) in bounded
time, and what happened. The rules every attack checks: nothing answered 500; nothing that was
acknowledged is lost; no secret in any log or file; memory stays bounded.

Each area is a module here with `run(ctx) -> list[Result]`:

    listener.py   bytes, encodings, slow and idle connections, huge senders at the listener
    provider.py   a provider that answers garbage, slowly, hugely, with impossible dates
    database.py   the database file removed, replaced, truncated, corrupt, read-only
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

AREAS = ("listener", "provider", "database")


@dataclass
class Result:
    area: str
    attack: str  # what was tried, in a line
    outcome: str  # what happened, in a line
    ok: bool  # every rule held
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, "attack": self.attack, "outcome": self.outcome, "ok": self.ok, "figures": self.figures}


@dataclass
class Context:
    tmp: Path  # a scratch folder of this run
    quick: bool  # the short version (CI): fewer and smaller attacks, same rules
    say: Callable[[str], None]  # progress, to stderr


def attack_bench(*, tmp: Path, quick: bool, areas: tuple[str, ...], say: Callable[[str], None]) -> list[Result]:
    """Every attack of these areas, one area after another; an area whose attacks could not run
    at all (its target did not start, say) is one broken result, and the others still run."""
    results: list[Result] = []
    for area in areas:
        try:
            module = importlib.import_module(f"smsmon.bench.attack.{area}")
        except ModuleNotFoundError as exc:
            if exc.name != f"smsmon.bench.attack.{area}":
                raise
            say(f"── {area}: no attacks written yet ──")
            continue
        started = time.perf_counter()
        say(f"── {area} ──")
        area_dir = tmp / area
        area_dir.mkdir(parents=True, exist_ok=True)
        try:
            found = module.run(Context(area_dir, quick, say))
        except Exception as exc:  # the bench's own failure: reported as a broken rule, never hidden
            found = [Result(area, f"the {area} attacks", f"could not run: {type(exc).__name__}: {exc}", False)]
        for r in found:
            say(f"  {'ok  ' if r.ok else 'FAIL'} {r.attack}\n       {r.outcome}")
        say(f"  ({time.perf_counter() - started:.1f} s)")
        results.extend(found)
    return results
