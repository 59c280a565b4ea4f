"""The README is the contract (SPEC §1): its commands are the ones CI and users run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent
VENV = "python3 -m venv .venv && . .venv/bin/activate && "
DEMO_COMMAND = VENV + "pip install . && smsmon demo"
TEST_COMMAND = VENV + "pip install '.[test]' && pytest"


def _readme_command(ending: str) -> str:
    """The README's line that ends (before its comment) with `ending`, without the comment."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "README.md").read_text().splitlines()]
    found = [line for line in lines if line.endswith(ending)]
    assert len(found) == 1, found
    return found[0]


def test_the_first_two_commands_work_on_a_fresh_machine_as_written() -> None:
    """Issue 13, point 0: each makes its virtual environment (a system Python may refuse pip)."""
    assert _readme_command("&& smsmon demo") == DEMO_COMMAND
    assert _readme_command("&& pytest") == TEST_COMMAND


def test_ci_runs_the_readmes_test_command_from_a_clean_clone() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(line.strip() == _readme_command("&& pytest") for line in ci.splitlines())
    assert "git clone" in ci


def test_the_readme_documents_every_table_and_column() -> None:
    from smsmon.store.schema import EVENT_COLUMNS, MESSAGE_COLUMNS

    readme = (ROOT / "README.md").read_text()
    for column in [*MESSAGE_COLUMNS, *EVENT_COLUMNS]:
        assert f"`{column}`" in readme, column
    for table in ("messages", "events", "dead_letters", "poll_runs", "facet_counts", "forward_outbox", "meta"):
        assert f"**`{table}`**" in readme, table


def test_the_readme_documents_every_setting_and_flag() -> None:
    from smsmon.config import SPECS
    from smsmon.lifecycle import Flag

    readme = (ROOT / "README.md").read_text()
    for s in SPECS.values():
        assert f"`{s.key}`" in readme or s.key in readme, s.key
        if s.env:
            assert s.env in readme, s.env
    for flag in Flag:
        assert f"`{flag.value}`" in readme, flag


def test_the_readme_leads_with_the_demo_and_shows_every_screenshot() -> None:
    readme = (ROOT / "README.md").read_text()
    assert DEMO_COMMAND in readme
    for svg in sorted((ROOT / "screenshots").glob("*.svg")):
        assert f"screenshots/{svg.name}" in readme, svg.name
