"""The demo's table shows every blocking rule with its whole reason."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("sentinelle_demo", DEMO)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_rule_with_its_whole_reason():
    demo = load_demo()
    reasons = ["R-30: 4 attempts in the last 30 days (max 4); next possible 2026-12-31 10:30+01:00",
               "R-31: refusal on 2026-12-07 10:31+01:00: silent until 2027-02-05 10:31+01:00"]
    lines = demo.demo_lines({"reasons": reasons, "rules": ["R-30", "R-31"], "notes": []}, "  ")
    assert lines == [reasons[0], "  " + reasons[1]]


def test_an_allowed_call_shows_its_first_note():
    demo = load_demo()
    lines = demo.demo_lines({"reasons": [], "rules": [], "notes": ["R-00 emergency"]}, "")
    assert lines == ["R-00 emergency"]
