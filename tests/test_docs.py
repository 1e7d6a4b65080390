from __future__ import annotations

from .readme_commands import current, render


def test_readme_command_reference_matches_the_cli() -> None:
    assert current() == render(), "README command reference is stale: run `.venv/bin/python -m tests.readme_commands`"


def test_readme_starts_with_the_two_setup_commands() -> None:
    from .readme_commands import README

    block = README.read_text().split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split()[0] for line in block] == ["scripts/up", "scripts/test"]
