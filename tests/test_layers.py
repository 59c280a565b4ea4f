"""SPEC §2 and §11: the layers. The core never imports the UI; the pure domain imports no I/O
framework and nothing of store, ingest, sim, ui or cli; only smsmon.store runs SQL; no module
reaches a private name of another package; no module grows past 500 lines.

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
CORE = [n for n in [*SPEC_CORE, "filters", "timeutil", "errors", "normalize", "alerts"] if (ROOT / n).is_dir() or (ROOT / f"{n}.py").exists()]
PURE = ["lifecycle", "catalogue", "providers", "filters", "timeutil", "errors", "normalize", "alerts"]
OUTER = ("smsmon.store", "smsmon.ingest", "smsmon.sim", "smsmon.ui", "smsmon.cli", "smsmon.bench")
MAX_LINES = 500
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


def _all_modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def _package(path: Path) -> str:
    """smsmon/store/queries.py -> smsmon.store; smsmon/config.py -> smsmon.config."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:2])


@pytest.mark.parametrize("package", PURE)
def test_the_pure_domain_imports_nothing_of_the_outer_layers(package: str) -> None:
    for path in _files(package):
        assert not _offending(_imports(path), OUTER), path


def test_only_the_store_runs_sql() -> None:
    """No `.execute(`, `.executemany(` or `.executescript(` outside smsmon/store."""
    found = []
    for path in _all_modules():
        if _package(path) == "smsmon.store":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany", "executescript"):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert not found


def test_no_module_reaches_a_private_name_of_another_package() -> None:
    """Neither `from smsmon.x import _y`, `import smsmon.x._y` from outside x, nor `module._y`
    on a module imported from another package."""
    found = []
    for path in _all_modules():
        mine = _package(path)
        tree = ast.parse(path.read_text())
        foreign_modules: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smsmon") and node.level == 0:
                theirs = ".".join(node.module.split(".")[:2])
                for alias in node.names:
                    private = any(n.startswith("_") and not n.startswith("__") for n in (alias.name, *node.module.split(".")))
                    if theirs != mine and private:
                        found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.module}.{alias.name}")
                    if theirs != mine:
                        foreign_modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("smsmon") and ".".join(alias.name.split(".")[:2]) != mine:
                        foreign_modules.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in foreign_modules
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found


def test_only_the_ui_imports_textual_and_only_the_cli_imports_click() -> None:
    for path in _all_modules():
        names = _imports(path)
        if _package(path) != "smsmon.ui" and not path.is_relative_to(ROOT / "bench"):
            assert not _offending(names, ("textual",)), path
        if _package(path) != "smsmon.cli":
            assert not _offending(names, ("click",)), path


def test_the_ui_and_the_store_do_not_know_the_command_line() -> None:
    """The CLI renders and calls; what it renders with is not the app's or the store's to borrow."""
    for package in ("ui", "store", "ingest"):
        for path in _files(package):
            assert not _offending(_imports(path), ("smsmon.cli",)), path


def test_every_exception_class_lives_in_errors_py() -> None:
    """Outside the command line (whose errors are click's): one place for every kind of failure."""
    found = []
    for path in _all_modules():
        if path.name == "errors.py" or _package(path) == "smsmon.cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    (b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "").endswith(("Error", "Exception"))
                    for b in node.bases):
                found.append(f"{path.relative_to(ROOT.parent)}: {node.name}")
    assert not found


def test_the_ingest_does_not_know_the_simulator() -> None:
    """The demo's wiring lives in smsmon.sim; the ingest runs whatever it is given."""
    for path in _files("ingest"):
        assert not _offending(_imports(path), ("smsmon.sim",)), path


def test_no_module_is_over_500_lines() -> None:
    long = {str(p.relative_to(ROOT.parent)): n for p in _all_modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long
