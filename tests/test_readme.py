"""The README is the contract (SPEC §1): its commands are the ones CI and users run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent
TEST_COMMAND = "pip install '.[test]' && pytest"


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in readme
    assert any(line.strip() == TEST_COMMAND for line in ci.splitlines())


def test_the_readme_documents_every_table_and_column() -> None:
    from smsmon.store.schema import EVENT_COLUMNS, MESSAGE_COLUMNS

    readme = (ROOT / "README.md").read_text()
    for column in [*MESSAGE_COLUMNS, *EVENT_COLUMNS]:
        assert f"`{column}`" in readme, column
    for table in ("messages", "events", "dead_letters", "poll_runs", "facet_counts"):
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
    assert "pip install . && smsmon demo" in readme
    for svg in sorted((ROOT / "screenshots").glob("*.svg")):
        assert f"screenshots/{svg.name}" in readme, svg.name
