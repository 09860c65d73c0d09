"""The report's charts at every span an admin asks for (1 day, 7 days, 90 days,
3 years, and an empty period), checked on the matplotlib figures before SVG
export and, whole, in headless Chromium.

What an auditor reads off a chart must be true: each bar stands over its own
day (week, month), the time axis is the requested period, no label or legend
hides another or hides data, an empty chart says there is no data instead of
drawing a 0-1 scale, and the heights are the store's counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import date2num, num2date

from sentinelle.config import Config, load_config
from sentinelle.evidence import report
from sentinelle.store import Store, open_store
from tests.helpers.evidence_helpers import PARIS, invoker, populate_span
from tests.helpers.testconfig import CONFIG
from tests.test_report import CHARTS, Figures, run_chromium


@dataclass
class Span:
    name: str
    first: date
    days: int
    config: Config
    config_path: Path
    store: Store

    @property
    def stop(self) -> date:
        return self.first + timedelta(days=self.days)

    def data(self) -> report.ReportData:
        lo = datetime.combine(self.first, time(0), PARIS)
        hi = datetime.combine(self.stop, time(0), PARIS)
        return report.collect(self.config, self.store, lo, hi)


# (first day, days, calls per day): 90 days from a Wednesday (weeks cut at both
# ends), 3 years from the 15th (months cut at both ends), a few calls a week.
SPANS = {"1 day": (date(2026, 9, 2), 1, 30.0), "7 days": (date(2026, 9, 1), 7, 25.0),
         "90 days": (date(2026, 6, 3), 90, 8.0), "3 years": (date(2023, 9, 15), 1096, 0.6)}


@pytest.fixture(scope="module")
def spans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Span]]:
    out = {}
    for name, (first, days, per_day) in SPANS.items():
        root = tmp_path_factory.mktemp(name.replace(" ", ""))
        path = root / "sentinelle.toml"
        path.write_text(CONFIG.replace('"sentinelle.db"', f'"{root / "sentinelle.db"}"'))
        config = load_config(str(path))
        store = open_store(config.store, create=True)
        populate_span(config, store, first, days, per_day)
        out[name] = Span(name, first, days, config, path, store)
    yield out
    for span in out.values():
        span.store.close()


def figures(d: report.ReportData, config: Config) -> dict[str, Any]:
    figs = {"chart-hours": report.figure_hours(d), "chart-blocks": report.figure_blocks(d),
            "chart-attempts": report.figure_attempts(d),
            "chart-campaigns": report.figure_campaigns(d),
            "chart-coverage": report.figure_coverage(d, config)}
    for fig in figs.values():
        FigureCanvasAgg(fig).draw()  # lays out; tick labels and extents become real
    return figs


def tick_labels(axis: Any) -> list[Any]:
    return [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]


def texts(fig: Any) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def store_blocks(span: Span) -> Counter[tuple[date, str]]:
    """(Paris day, rule) -> blocks, straight from the decision log."""
    rows = span.store.run(lambda c: c.execute(
        "SELECT at, rules FROM decisions WHERE verdict = 'block'").fetchall())
    out: Counter[tuple[date, str]] = Counter()
    for at, rules in rows:
        day = datetime.fromisoformat(at).astimezone(PARIS).date()
        if span.first <= day < span.stop:
            for rule in (rules or "?").split(","):
                out[(day, rule)] += 1
    return out


def bucket_of(day: date, bucket: str, span: Span) -> tuple[date, date, str]:
    """The part of the period a bar of this day stands for, and its label."""
    if bucket == "day":
        lo, hi, label = day, day + timedelta(days=1), day.isoformat()
    elif bucket == "week":
        lo = day - timedelta(days=day.weekday())
        hi = lo + timedelta(days=7)
        lo = max(lo, span.first)
        label = lo.isoformat()
    else:
        lo = day.replace(day=1)
        hi = (lo + timedelta(days=32)).replace(day=1)
        label = f"{lo:%Y-%m}"
    return max(lo, span.first), min(hi, span.stop), label


@pytest.mark.parametrize("name", list(SPANS))
def test_blocks_stand_on_their_own_day_across_the_requested_period(spans, name):
    span = spans[name]
    d = span.data()
    expected_bucket = {"1 day": "day", "7 days": "day", "90 days": "week", "3 years": "month"}
    assert d.bucket == expected_bucket[name]
    ax = report.figure_blocks(d).axes[0]
    FigureCanvasAgg(ax.figure).draw()
    # The x axis is the requested period, to the day.
    assert ax.get_xlim() == pytest.approx((date2num(span.first), date2num(span.stop)))
    labels = {round(t.get_position()[0], 6): t.get_text() for t in tick_labels(ax.xaxis)}
    assert labels, "no date under the bars"
    shown: Counter[tuple[date, str]] = Counter()
    for container in ax.containers:
        for rect in container:
            lo, hi = rect.get_x(), rect.get_x() + rect.get_width()
            day = num2date(lo).date()
            first, stop, label = bucket_of(day, d.bucket, span)
            # Inside its own bucket (cut to the period), most of its width.
            assert date2num(first) <= lo < hi <= date2num(stop), (name, day, lo, hi)
            assert hi - lo >= 0.5 * (stop - first).days
            centre = round(lo + (hi - lo) / 2, 6)
            # A labelled tick under a bar is that bar's day (week, month).
            if centre in labels:
                assert labels[centre] == label
            if rect.get_height():
                shown[(first, container.get_label())] += int(rect.get_height())
    # Every labelled tick sits under the middle of a bar's slot.
    for x, text in labels.items():
        first, stop, label = bucket_of(num2date(x).date(), d.bucket, span)
        assert x == pytest.approx(date2num(first) + (stop - first).days / 2) and text == label
    # The heights are the store's counts, per bucket and rule.
    expected: Counter[tuple[date, str]] = Counter()
    for (day, rule), n in store_blocks(span).items():
        expected[(bucket_of(day, d.bucket, span)[0], rule)] += n
    assert shown == expected and sum(expected.values()) > 0


def test_an_empty_period_says_no_data_in_every_chart(spans):
    span = spans["7 days"]
    lo = datetime(2025, 1, 1, tzinfo=PARIS)
    d = report.collect(span.config, span.store, lo, lo + timedelta(days=31))
    figs = figures(d, span.config)
    for chart_id, fig in figs.items():
        words = " ".join(texts(fig)).lower()
        assert "no data" in words, f"{chart_id} does not say that there is no data"
        for ax in fig.axes:
            for label in tick_labels(ax.xaxis) + tick_labels(ax.yaxis):
                # a made-up 0-1 (or -0.05..0.05) scale: fractions never count calls
                assert not re.fullmatch(r"[−-]?\d+\.\d+", label.get_text()), \
                    f"{chart_id}: tick {label.get_text()!r} on an empty chart"
    blocks = figs["chart-blocks"].axes[0]
    assert blocks.get_xlim() == pytest.approx((date2num(date(2025, 1, 1)),
                                                date2num(date(2025, 2, 1))))
    svg = report.chart_blocks(d).svg
    assert "No data" in svg and "no blocked call in this period" in svg


def overlaps(a: Any, b: Any, pad: float = 1.0) -> bool:
    return a.x0 < b.x1 - pad and b.x0 < a.x1 - pad and a.y0 < b.y1 - pad and b.y0 < a.y1 - pad


@pytest.mark.parametrize("name", list(SPANS))
def test_no_label_or_legend_hides_another_or_the_data(spans, name):
    span = spans[name]
    for chart_id, fig in figures(span.data(), span.config).items():
        renderer = fig.canvas.get_renderer()
        labels = []
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                boxes = [t.get_window_extent(renderer) for t in tick_labels(axis)]
                for a, b in combinations(boxes, 2):
                    assert not overlaps(a, b), f"{name}, {chart_id}: tick labels overlap"
                labels += boxes
            labels += [t.get_window_extent(renderer) for t in
                       (ax.xaxis.label, ax.yaxis.label, ax.title) if t.get_text()]
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                # Outside every plot area: it can cover no bar, point or count.
                assert not overlaps(box, ax.bbox), f"{name}, {chart_id}: legend over a plot"
            assert not any(overlaps(box, other) for other in labels), \
                f"{name}, {chart_id}: legend over a label"
        for ax in fig.axes:
            # Counts written over bars stay inside the plot, clear of each other.
            notes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
            for note in notes:
                assert ax.bbox.x0 <= note.x0 and note.x1 <= ax.bbox.x1 + 1
                assert ax.bbox.y0 <= note.y0 and note.y1 <= ax.bbox.y1 + 1, \
                    f"{name}, {chart_id}: a count is drawn out of its plot"


def test_the_reports_of_each_span_render_in_chromium(spans, tmp_path):
    """The whole report at each span, through the CLI and a real browser."""
    for name, span in spans.items():
        out = tmp_path / f"{name.replace(' ', '')}.html"
        last = span.stop - timedelta(days=1)
        r = invoker(span.config_path)("report", "--from", span.first.isoformat(),
                                      "--to", last.isoformat(), "--out", str(out))
        assert r.exit_code == 0, r.output
        dom = run_chromium(tmp_path, "--dump-dom", out.as_uri()).stdout
        parser = Figures()
        parser.feed(dom)
        assert set(parser.figures) == set(CHARTS), name
        for chart_id, (title, _) in CHARTS.items():
            assert parser.svgs.get(chart_id) == 1, f"{name}: {chart_id} has no chart"
            assert parser.figures[chart_id].count(title) >= 2, f"{name}: {chart_id} untitled"
        blocks = parser.figures["chart-blocks"]
        first = f"{span.first:%Y-%m}" if span.days > 730 else span.first.isoformat()
        assert first in blocks, f"{name}: the first bar is not labelled with its own day"
