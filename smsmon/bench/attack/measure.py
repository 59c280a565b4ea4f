"""`smsmon` run in a subprocess with its wall time and peak RSS measured, for the attack areas.

The peak is the process's own VmHWM, written at exit by a small wrapper around `python -m
smsmon`: the rusage of a child would also count its parent's pages from before exec.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUBPROCESS_TIMEOUT_S = 120.0

@dataclass
class Run:
    """One `smsmon` subprocess: what it printed, how long it took, its peak RSS."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float
    killed: bool = False

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        try:
            found = json.loads(self.stdout)
        except ValueError:
            return []
        return found if isinstance(found, list) else []


# Runs `smsmon` as `python -m smsmon` does, and at exit writes the process's peak RSS (VmHWM,
# which starts afresh at exec) in KiB to the file named by the first argument.
MEASURED = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as f:
        kb = next((line.split()[1] for line in f if line.startswith("VmHWM:")), "0")
    with open(out, "w") as f:
        f.write(kb)
atexit.register(peak)
sys.argv[0] = "smsmon"
runpy.run_module("smsmon", run_name="__main__", alter_sys=True)
"""


def command(args: list[str], peak_file: Path) -> list[str]:
    return [sys.executable, "-c", MEASURED, str(peak_file), *args]


def peak_mb(peak_file: Path) -> float:
    try:
        return int(peak_file.read_text() or 0) / 1024
    except (OSError, ValueError):
        return 0.0  # killed before it could say: no figure


def spawn(args: list[str], env: dict[str, str], timeout: float = SUBPROCESS_TIMEOUT_S) -> Run:
    """Run `smsmon ARGS` to the end, measuring its wall time and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        peak_file = Path(tmp) / "peak"
        started = time.perf_counter()
        proc = subprocess.Popen(command(args, peak_file), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                   seconds, peak_mb(peak_file), killed=proc.returncode == -signal.SIGKILL)
