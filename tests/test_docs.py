"""Every command an admin can type is documented in the README, under its own
`### sentinelle ...` heading (as sqlite-utils checks its own CLI)."""

from __future__ import annotations

from pathlib import Path

import click

from sentinelle.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def command_paths(group: click.Group, prefix: str = "sentinelle") -> list[str]:
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += command_paths(command, f"{prefix} {name}")
        else:
            out.append(f"{prefix} {name}")
    return out


def test_every_cli_command_is_documented():
    doc = README.read_text()
    paths = command_paths(main)
    assert len(paths) >= 20
    missing = [p for p in paths if f"### {p}\n" not in doc]
    assert not missing, f"undocumented commands: {missing}"


def test_the_readme_points_at_the_projects_own_rules_document():
    doc = README.read_text()
    assert "docs/rules.md" in doc
    assert (README.parent / "docs" / "rules.md").exists()
