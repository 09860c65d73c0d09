"""The compliance report, checked as a person sees it: rendered by headless
Chromium, charts found and labelled in the DOM, screenshot not blank.

Chromium is a Debian package (`chromium`); the test installs it when missing
and fails (never skips) if it cannot: an untested report is a broken one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy
import pytest
from PIL import Image, ImageStat

from tests.helpers.evidence_helpers import invoker, populate

DOCS_PNG = Path(__file__).parent.parent / "docs" / "report-example.png"
CHARTS = {
    "chart-hours": ("Calls per hour of the callee's local time",
                    ["Hour of day on the callee's clock (0-23)", "Calls",
                     "legal hours, Mon-Fri (R-20)"]),
    "chart-blocks": ("Blocked calls by rule over time",
                     ["Day (Europe/Paris)", "Blocked calls (one per rule that blocked)", "R-20",
                      "R-30", "R-11", "R-10"]),
    "chart-attempts": ("Attempts per callee per rolling 30 days",
                       ["Most attempts in any rolling 30-day window (per professional and callee)",
                        "Callees", "limit: 4 attempts per 30 days (R-30)"]),
    "chart-campaigns": ("Call outcomes and refusals per campaign",
                        ["Calls placed (attempts)", "Refusals (R-31)", "Campaign", "answered",
                         "promo"]),
    "chart-coverage": ("Bloctel snapshot age and legal basis of the calls placed",
                       ["Snapshot age (days)", "stale after 30 days (R-10)",
                        "Legal basis of the calls placed", "consent (R-11)",
                        "Bloctel checked (R-10)", "Professional"]),
}


def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env,
                           capture_output=True, text=True, timeout=1200)
        exe = shutil.which("chromium")
        if exe is None:
            pytest.fail("headless Chromium is needed to test the report and could not be "
                        f"installed (`apt-get install -y chromium`): {r.stderr[-2000:]}")
    return exe


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--hide-scrollbars", "--force-color-profile=srgb",
           f"--user-data-dir={tmp_path / 'chromium'}",
           *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


class Figures(HTMLParser):
    """Collects, per <figure id=...>, the text of its caption and of its SVG."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[str]] = {}
        self.svgs: dict[str, int] = {}
        self.scripts = 0
        self._current: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if tag == "figure":
            self._current = dict(attrs).get("id")
            self.figures[self._current or ""] = []
            self._depth = 1
        elif tag == "svg" and self._current:
            self.svgs[self._current] = self.svgs.get(self._current, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current and data.strip():
            self.figures[self._current].append(data.strip())


@pytest.fixture
def report_file(tmp_path, config, store, config_path):
    populate(config, store)
    out = tmp_path / "report.html"
    r = invoker(config_path)("report", "--from", "2026-07-27", "--to", "2026-08-21",
                             "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "report written" in r.output
    return out


def test_report_is_self_contained(report_file):
    text = report_file.read_text()
    assert "<script" not in text.lower()
    # The only URLs are XML namespaces inside the SVGs: nothing is fetched.
    urls = set(re.findall(r"https?://[^\s\"')]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    assert not re.search(r"""(src|href)=["']https?:""", text)


def test_report_in_chromium_dom_has_every_chart_labelled(report_file, tmp_path):
    dom = run_chromium(tmp_path, "--dump-dom", report_file.as_uri()).stdout
    parser = Figures()
    parser.feed(dom)
    assert set(parser.figures) == set(CHARTS)
    for chart_id, (title, labels) in CHARTS.items():
        texts = parser.figures[chart_id]
        assert parser.svgs.get(chart_id) == 1, f"{chart_id}: no inline SVG"
        assert texts.count(title) >= 2, f"{chart_id}: caption and SVG title expected"
        missing = [label for label in labels if label not in texts]
        assert not missing, f"{chart_id}: labels missing from the rendered chart: {missing}"
    assert parser.scripts == 0
    assert "No callee got more than 4 attempts in 30 days (R-30)." in dom
    assert "Decisions" in dom and "Consent coverage" in dom


def test_report_screenshot_is_not_blank(report_file, tmp_path):
    png = tmp_path / "report.png"
    run_chromium(tmp_path, f"--screenshot={png}", "--window-size=1100,4400",
                 report_file.as_uri())
    image = Image.open(png).convert("RGB")
    assert image.size == (1100, 4400)
    stat = ImageStat.Stat(image)
    assert max(stat.stddev) > 20, "screenshot is (nearly) uniform"
    pixels = numpy.asarray(image)
    non_white = float((pixels.sum(axis=2) < 720).mean())
    assert non_white > 0.05, f"only {non_white:.1%} of the page is drawn"
    colors = image.getcolors(maxcolors=1 << 20) or []
    # The chart colours, as drawn: placed calls (blue), legal windows (green).
    drawn = {c for _, c in colors}
    assert (0x2B, 0x6C, 0xB0) in drawn and (0xD9, 0xF2, 0xD9) in drawn
    if os.environ.get("SENTINELLE_UPDATE_DOCS"):
        small = image.resize((image.width * 3 // 4, image.height * 3 // 4))
        small.quantize(colors=64).save(DOCS_PNG, optimize=True)


def test_docs_example_png_is_kept_small():
    data = DOCS_PNG.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < 300 * 1024


def test_report_on_an_empty_period_and_one_campaign(tmp_path, config, store, config_path):
    populate(config, store, days=3)
    invoke = invoker(config_path)
    out = tmp_path / "empty.html"
    r = invoke("report", "--from", "2025-01-01", "--to", "2025-01-31", "--out", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.count("<figure") == 5 and "no blocked call in this period" in text
    out2 = tmp_path / "promo.html"
    r = invoke("report", "--from", "2026-07-27", "--to", "2026-07-29", "--campaign", "press",
               "--out", str(out2))
    assert r.exit_code == 0 and "scope: campaign press" in out2.read_text()
    assert invoke("report", "--from", "2026-07-27", "--to", "2026-07-29", "--campaign", "nope",
                  "--out", str(out2)).exit_code == 2
    assert invoke("report", "--from", "2026-07-29", "--to", "2026-07-27",
                  "--out", str(out2)).exit_code == 2


def test_report_figures_match_the_store(tmp_path, config, store):
    """The charts' numbers are the store's: hours on the callee's clock, windows per
    professional, outcomes per campaign."""
    from datetime import datetime

    from sentinelle.core.rules import ATTEMPT_WINDOW
    from sentinelle.evidence.report import collect

    counts = populate(config, store)
    start = datetime.fromisoformat("2026-07-27T00:00:00+02:00")
    end = datetime.fromisoformat("2026-08-22T00:00:00+02:00")
    data = collect(config, store, start, end)
    assert sum(data.placed_by_hour) + sum(data.outside_by_hour) == counts["allowed"]
    assert data.placed_outside == 0
    assert sum(data.placed_by_hour[h] for h in (*range(0, 10), 13, *range(20, 24))) == 0
    # Réunion callees are called at Paris 10:xx = 12:xx or 13:xx local: blocked at 13.
    assert data.blocked_by_hour[13] > 0
    assert data.summary["allowed"] + data.summary["blocked"] == counts["calls"]
    assert data.summary["attempts"] == counts["allowed"]
    assert 1 <= data.summary["max_window"] <= 4 and data.summary["over_limit"] == 0
    # Window counts cross-checked by brute force on the attempts themselves.
    rows = store.run(lambda c: c.execute(
        "SELECT professional, e164, at FROM attempts ORDER BY 1, 2, 3").fetchall())
    best: dict[tuple[str, str], int] = {}
    for pro, e164, at in rows:
        t = datetime.fromisoformat(at)
        n = sum(1 for p, e, a in rows if (p, e) == (pro, e164)
                and t - ATTEMPT_WINDOW < datetime.fromisoformat(a) <= t)
        best[(pro, e164)] = max(best.get((pro, e164), 0), n)
    assert sum(data.window_max.values()) == len(best)
    assert max(best.values()) == data.summary["max_window"]
    total_outcomes = sum(sum(c.values()) for c in data.outcomes.values())
    assert total_outcomes == counts["allowed"]
    assert set(data.outcomes) <= {"promo", "promo2", "press"}  # service calls are not attempts
    bases = {b for c in data.basis.values() for b in c}
    assert {"consent (R-11)", "Bloctel checked (R-10)"} <= bases
    assert data.snapshot_ages["acme"]  # fr-2023 days saw the 2026-07-10 snapshot
    assert min(data.snapshot_ages["acme"].values()) >= 17


def test_report_counts_r22_slot_uses_from_the_decision_log(config, store):
    """The summary's R-22 slot uses come from `decisions.slot_used`, written
    when a consent slot let a call through outside the legal hours."""
    from datetime import datetime, timedelta

    from sentinelle.evidence.report import collect
    from sentinelle.store import ConsentProof
    from tests.helpers.evidence_helpers import call

    sunday = datetime.fromisoformat("2026-12-06T15:00:00+01:00")  # closed day
    store.add_consent("acme", "+33612345678", ConsentProof(
        source="web", given_at=sunday - timedelta(days=20),
        slot_from=sunday - timedelta(hours=1), slot_until=sunday + timedelta(hours=1)))
    assert call(config, store, "0612345678", sunday).allowed
    assert call(config, store, "0612345678", datetime.fromisoformat(
        "2026-12-08T10:30:00+01:00")).allowed  # a Tuesday: no slot needed
    data = collect(config, store, datetime.fromisoformat("2026-12-01T00:00:00+01:00"),
                   datetime.fromisoformat("2027-01-01T00:00:00+01:00"))
    assert data.summary["attempts"] == 2 and data.summary["slot_calls"] == 1
