"""SPEC §2: the core never imports the UI; the pure domain imports no I/O framework.

Checked two ways: statically, every import statement in the source (including ones inside
functions), and dynamically, what importing each package really pulls into sys.modules."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent / "smsmon"
SPEC_CORE = ["lifecycle", "catalogue", "providers", "store", "ingest", "sim"]
# Every core package that exists (ingest arrives with the listener), plus the pure helpers.
CORE = [n for n in [*SPEC_CORE, "filters", "timeutil", "errors"] if (ROOT / n).is_dir() or (ROOT / f"{n}.py").exists()]
PURE = ["lifecycle", "catalogue", "providers", "filters", "timeutil", "errors"]
UI = ("textual", "smsmon.ui")
IO = ("textual", "smsmon.ui", "aiohttp", "httpx", "sqlite3", "sqlite_utils", "smsmon.store", "smsmon.ingest")


def test_the_foundation_is_there() -> None:
    assert {"lifecycle", "catalogue", "providers", "store", "sim"} <= set(CORE)


def _files(name: str) -> list[Path]:
    path = ROOT / name
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offending(names: set[str], banned: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == b or n.startswith(b + ".") for b in banned)}


@pytest.mark.parametrize("package", CORE)
def test_core_source_never_imports_the_ui(package: str) -> None:
    for path in _files(package):
        assert not _offending(_imports(path), UI), path


@pytest.mark.parametrize("package", PURE)
def test_pure_domain_source_imports_no_io(package: str) -> None:
    for path in _files(package):
        assert not _offending(_imports(path), IO), path


def test_importing_the_core_loads_no_ui_and_the_pure_domain_no_io() -> None:
    code = (
        "import importlib, json, sys\n"
        f"out = {{}}\n"
        f"for name in {CORE!r}:\n"
        "    importlib.import_module('smsmon.' + name)\n"
        "    out[name] = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'aiohttp', 'httpx', 'sqlite3', 'sqlite_utils') or m.startswith('smsmon.ui'))\n"
        "print(json.dumps(out))\n"
    )
    # One fresh interpreter per package, so one package's imports do not hide another's.
    for name in CORE:
        single = code.replace(repr(CORE), repr([name]))
        loaded = json.loads(subprocess.run([sys.executable, "-c", single], capture_output=True, text=True, check=True).stdout)[name]
        assert not [m for m in loaded if m.startswith(("textual", "smsmon.ui"))], (name, loaded)
        if name in PURE:
            assert not loaded, (name, loaded)
