"""The project's own rules document is what the README, the CLI and the code
point at (a user who clones the repository has nothing else)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES_DOC = ROOT / "docs" / "rules.md"


def test_the_readme_points_at_the_projects_own_rules_document():
    assert "docs/rules.md" in (ROOT / "README.md").read_text()
    assert RULES_DOC.exists()


def test_nothing_points_outside_the_repository():
    for path in [ROOT / "README.md", *ROOT.joinpath("agi").rglob("*.py")]:
        assert "shared/RULES.md" not in path.read_text(), path


def test_every_rule_id_the_code_knows_is_documented():
    from sentinelle.core.rules import RULES

    doc = RULES_DOC.read_text()
    for rule in RULES:
        assert re.search(rf"^(#+ |\| `?){re.escape(rule)}\b", doc, re.M), f"{rule} is not documented"


def test_one_truth_on_refusals_revoking_consent():
    """`sentinelle rules`, the README and docs/rules.md say the same: a refusal
    revokes earlier consents in both regimes (the code applies it in both)."""
    from sentinelle.core.rules import RULES

    assert "both regimes" in RULES["R-31"] and "fr-2026:" not in RULES["R-31"]
    readme = next(line for line in (ROOT / "README.md").read_text().splitlines()
                  if line.startswith("| R-31 |"))
    assert "both regimes" in readme
    assert "both regimes" in RULES_DOC.read_text()


def test_every_benchmark_has_its_section_in_the_bench_readme():
    """A figure in the README is only worth what its script's description
    says it measures: every bench/bench_*.py has a section of its own."""
    readme = (ROOT / "bench" / "README.md").read_text()
    scripts = sorted(p.name for p in (ROOT / "bench").glob("bench_*.py"))
    assert scripts
    missing = [s for s in scripts if not re.search(rf"^## {re.escape(s)}\b", readme, re.M)]
    assert missing == []
