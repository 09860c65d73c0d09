"""`sentinelle report`: one self-contained HTML compliance report with charts.

Why this shape:
- One file, no script, no network: it is mailed to a compliance officer or
  attached to an answer to the DGCCRF, opened years later, possibly offline.
  Charts are matplotlib figures saved as SVG and inlined; CSS is inline.
- SVG text is kept as text (`svg.fonttype = none`): titles, axis labels and
  legends stay searchable, selectable and testable in the DOM (the test
  renders the file in headless Chromium and reads them back).
- Aggregation happens in SQL (GROUP BY) or while streaming rows, never by
  loading a table: the report must work on millions of decisions.
- Everything is judged as the rules judge it: hours on the CALLEE's clock
  (R-20), attempts in rolling windows of 30 calendar days in the callee's
  zone (R-30), R-30 per professional.

Charts: calls per hour of the callee's local time against the legal windows
(R-20/R-21); blocks by rule over time; attempts per callee per 30 days with
the limit of 4 marked (R-30); outcomes and refusals per campaign (R-31); the
Bloctel snapshot age (R-10) and the legal basis of the calls placed (R-10,
R-11, contracts, press), with the consent coverage table.
"""

from __future__ import annotations

import html
import io
import re
import time
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sentinelle import __version__
from sentinelle.config import Config
from sentinelle.core import calendar
from sentinelle.core.model import PARIS, Outcome, Purpose
from sentinelle.core.numbers import Territory
from sentinelle.core.rules import ATTEMPT_WINDOW, MAX_ATTEMPTS, RULES
from sentinelle.store import Backend, ts

OUTCOMES = (*(o.value for o in Outcome), "")  # "": not known yet
OUTCOME_LABELS = {"": "not known yet", "erased": "erased (forget)"}
BASES = ("consent (R-11)", "contract (R-10/R-11 exception)", "Bloctel checked (R-10)",
         "press (R-10/R-11 exempt)", "not prospecting", "decision purged or erased")

# matplotlib is imported lazily: `sentinelle check` and the AGI never pay for it.


@dataclass
class Chart:
    id: str
    title: str
    caption: str
    svg: str


@dataclass
class ReportData:
    start: datetime
    end: datetime
    campaign: str | None
    generated_at: datetime
    placed_by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    outside_by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    blocked_by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    placed_outside: int = 0
    foreign_calls: int = 0
    blocks: dict[date, Counter[str]] = field(default_factory=dict)
    bucket: str = "day"
    window_max: Counter[int] = field(default_factory=Counter)
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)
    basis: dict[str, Counter[str]] = field(default_factory=dict)
    snapshot_ages: dict[str, dict[date, int]] = field(default_factory=dict)
    snapshots: list[tuple[Any, ...]] = field(default_factory=list)
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _bucket_of(span: timedelta) -> str:
    if span <= timedelta(days=62):
        return "day"
    return "week" if span <= timedelta(days=730) else "month"


def _bucket_start(day: date, bucket: str) -> date:
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def _utc_hour(text: str) -> datetime:
    return datetime.fromisoformat(text + ":00:00+00:00")


def collect(config: Config, store: Backend, start: datetime, end: datetime,
            campaign: str | None = None, now: datetime | None = None) -> ReportData:
    """Read everything the charts need, in a few streaming passes."""
    now = now or datetime.now(UTC)
    data = ReportData(start, end, campaign, now, bucket=_bucket_of(end - start))
    _hours(data, store)
    groups = store.evidence_groups(start, end, campaign)
    for hour, rules, n in groups["blocks"]:
        day = _bucket_start(_utc_hour(hour).astimezone(PARIS).date(), data.bucket)
        counter = data.blocks.setdefault(day, Counter())
        for rule in (rules or "?").split(","):
            counter[rule] += n
    professional = config.campaign(campaign).professional if campaign else None
    _windows(data, store, professional)
    for camp, outcome, n in groups["outcomes"]:
        data.outcomes.setdefault(camp or "(erased)", Counter())[outcome or ""] += n
    for camp, n in groups["refusals"]:
        data.refusals[camp or "(erased)"] += n
    for pro, day, snapshot_date, _none in groups["bloctel"]:
        if snapshot_date:
            age = (date.fromisoformat(day) - date.fromisoformat(snapshot_date)).days
            ages = data.snapshot_ages.setdefault(pro, {})
            ages[date.fromisoformat(day)] = max(age, ages.get(date.fromisoformat(day), age))
    for pro, camp, regime, contract, n in groups["basis"]:
        data.basis.setdefault(pro, Counter())[_basis(config, camp, regime, contract)] += n
    _coverage(data, config, store, now)
    verdicts = dict(groups["verdicts"])
    attempts, callees = groups["attempts"][0]
    data.summary = {
        "decisions": sum(verdicts.values()),
        "allowed": verdicts.get("allow", 0),
        "blocked": verdicts.get("block", 0),
        "attempts": attempts,
        "callees": callees,
        "refusals": sum(data.refusals.values()),
        "consents_given": sum(n for _, n in groups["consents_given"]),
        "slot_calls": groups["slots"][0][0],
        "max_window": max(data.window_max, default=0),
        "over_limit": sum(n for k, n in data.window_max.items() if k > MAX_ATTEMPTS),
    }
    return data


def _hours(data: ReportData, store: Backend) -> None:
    """Calls per hour of the callee's clock. Rows are first counted per
    (territory, UTC hour): offsets of French territories are whole hours, so
    one UTC hour is one local hour, and R-20/R-21 are judged once per group."""
    groups: Counter[tuple[Territory | None, str, bool, bool]] = Counter()
    for e164, hour, verdict, placed in store.iter_calls(data.start, data.end, data.campaign):
        groups[(calendar.territory_of(e164), hour, verdict == "block", bool(placed))] += 1
    for (territory, hour, blocked, placed), n in groups.items():
        if territory is None:
            data.foreign_calls += n
            continue
        instant = _utc_hour(hour) + timedelta(minutes=30)
        local_hour = calendar.local_time(territory, instant).hour
        if blocked:
            data.blocked_by_hour[local_hour] += n
        elif placed:
            # National days only: Alsace-Moselle days depend on the department.
            ok, _, _ = calendar.allowed_at(territory, instant, None, cautious_alsace=False)
            if ok:
                data.placed_by_hour[local_hour] += n
            else:
                data.outside_by_hour[local_hour] += n
                data.placed_outside += n


def _windows(data: ReportData, store: Backend, professional: str | None) -> None:
    """For each (professional, callee): the most attempts in any rolling
    30-day window ending in the period. Attempts up to 30 days before the
    period are read so the first windows are complete."""
    series = store.iter_attempt_series(data.start - ATTEMPT_WINDOW - timedelta(days=1),
                                       data.end, professional)
    start_text = ts(data.start)
    key, best, window = None, 0, deque()  # type: ignore[var-annotated]
    zone = PARIS
    for pro, e164, at in series:
        if (pro, e164) != key:
            if key is not None and best:
                data.window_max[best] += 1
            key, best, window = (pro, e164), 0, deque()
            territory = calendar.territory_of(e164)
            zone = calendar.TIMEZONES[territory] if territory else PARIS
        # Same wall-clock time 30 days later in the callee's zone.
        local = datetime.fromisoformat(at).astimezone(zone).replace(tzinfo=None)
        while window and window[0] + ATTEMPT_WINDOW <= local:
            window.popleft()
        window.append(local)
        if at >= start_text:
            best = max(best, len(window))
    if key is not None and best:
        data.window_max[best] += 1


def _basis(config: Config, campaign: str, regime: str | None, contract: Any) -> str:
    if regime is None:
        return BASES[5]
    camp = config.campaigns.get(campaign)
    if camp is not None and not camp.purpose.is_consumer_prospecting:
        return BASES[4]
    if contract:
        return BASES[1]
    if camp is not None and camp.purpose is Purpose.PRESS:
        return BASES[3]
    return BASES[0] if regime == "fr-2026" else BASES[2]


def _coverage(data: ReportData, config: Config, store: Backend, now: datetime) -> None:
    cov = store.coverage(now, timedelta(days=config.policy.consent_max_age_days))
    data.snapshots = cov["snapshots"]
    pros = set(config.professionals) | {row[0] for row in cov["snapshots"]}
    table: dict[str, dict[str, int]] = {p: Counter() for p in sorted(pros)}
    for pro, valid, expiring, revoked, total in cov["consents"]:
        table.setdefault(pro, Counter()).update(
            {"valid": valid or 0, "expiring": expiring or 0, "revoked": revoked or 0,
             "consents": total})
    for pro, n in cov["contracts"]:
        table.setdefault(pro, Counter())["contracts"] = n
    for pro, n in cov["optouts"]:
        table.setdefault(pro, Counter())["optouts"] = n
    data.coverage = table


# -- charts ---------------------------------------------------------------------

def _svg(fig: Any, chart_id: str, title: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    svg = text[text.index("<svg"):]
    # The RDF metadata block only names matplotlib; its URLs would be the
    # file's only outside references.
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    head_end = svg.index(">") + 1
    # role/title: screen readers and the DOM test read the chart's name.
    return (svg[:head_end - 1] + f' role="img" aria-label="{html.escape(title)}">'
            + f"<title>{html.escape(title)}</title>" + svg[head_end:])


def _figure(width: float = 9.0, height: float = 4.2, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols)


def _counts(axis: Any) -> None:
    """Counts of calls: integer ticks only."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _empty(ax: Any, text: str, scales: str = "xy") -> None:
    """Say where the bars would be that there are none, and draw no made-up
    scale on the axes named in `scales`: an empty 0-1 axis reads as measured
    zeros, or worse, as a fraction of something."""
    ax.text(0.5, 0.5, "No data: " + text, ha="center", va="center", transform=ax.transAxes,
            color="#4a5568", fontsize=11)
    if "x" in scales:
        ax.set_xticks([])
    if "y" in scales:
        ax.set_yticks([])
        ax.set_ylabel("")


def _legend_below(fig: Any, handles: list[Any], loc: str = "outside lower center",
                  ncols: int = 2) -> None:
    """Legends go under the plots, never over them: inside an axes a legend
    sooner or later hides the tallest bar or its count."""
    fig.legend(handles=handles, loc=loc, ncols=ncols, fontsize=8, frameon=False)


TITLES = {
    "chart-hours": "Calls per hour of the callee's local time",
    "chart-blocks": "Blocked calls by rule over time",
    "chart-attempts": "Attempts per callee per rolling 30 days",
    "chart-campaigns": "Call outcomes and refusals per campaign",
    "chart-coverage": "Bloctel snapshot age and legal basis of the calls placed",
}


TICK_FONT = 8.5
# Label every k-th bar, k taken from these (a week of days, a quarter of months...).
LABEL_STEPS = {"day": (1, 2, 7, 14, 28), "week": (1, 2, 4, 8, 13, 26, 52),
               "month": (1, 2, 3, 6, 12, 24, 60, 120)}


# -- the time axis: the requested period, one bar per day, week or month

@dataclass(frozen=True, slots=True)
class Slot:
    """A bar of a chart over time: a bucket cut to the requested period, so
    the axis is exactly the period and a week or month that starts before it
    (or ends after it) is drawn only over the days it really counts."""

    key: date    # the bucket as ReportData keys it: the day, its Monday, its 1st
    first: date  # its first day inside the period (Europe/Paris)
    stop: date   # the day after its last day inside the period

    @property
    def days(self) -> int:
        return (self.stop - self.first).days


def period_days(d: ReportData) -> tuple[date, date]:
    """First Paris day of the period and the day after its last: `end` is
    excluded, so a period ending at midnight does not show the next day."""
    first = d.start.astimezone(PARIS).date()
    stop = (d.end - timedelta(microseconds=1)).astimezone(PARIS).date() + timedelta(days=1)
    return first, stop


def _next_bucket(key: date, bucket: str) -> date:
    if bucket == "day":
        return key + timedelta(days=1)
    if bucket == "week":
        return key + timedelta(days=7)
    return (key.replace(day=28) + timedelta(days=4)).replace(day=1)


def slots(d: ReportData) -> list[Slot]:
    """Every bucket of the period, with data or not: an empty day is a gap an
    auditor must see, not a day that silently disappears from the axis."""
    first, stop = period_days(d)
    out, key = [], _bucket_start(first, d.bucket)
    while key < stop:
        after = _next_bucket(key, d.bucket)
        out.append(Slot(key, max(key, first), min(after, stop)))
        key = after
    return out


def _x(day: date) -> float:
    """matplotlib's day number of a Paris day's start: the axes count in days,
    so a bar of width 1 is one calendar day."""
    from matplotlib.dates import date2num

    return float(date2num(datetime(day.year, day.month, day.day)))  # type: ignore[no-untyped-call]


def _middle(slot: Slot) -> float:
    return _x(slot.first) + slot.days / 2


def _slot_label(slot: Slot, bucket: str) -> str:
    return f"{slot.first:%Y-%m}" if bucket == "month" else slot.first.isoformat()


def _time_axis(ax: Any, d: ReportData, period: list[Slot]) -> None:
    """x = the requested period, in whole days. Each bar is centred on the
    middle of its slot (noon for a day) with a tick there; the label under a
    bar is that bar's own day, first day of its week, or month. Labels go on
    every k-th bar, k the smallest step that fits them side by side, unrotated,
    in the width the axes get once laid out: call this last."""
    fig = ax.get_figure()
    fig.get_layout_engine().execute(fig)
    room = ax.get_position().width * fig.get_figwidth()
    labels = [_slot_label(s, d.bucket) for s in period]
    middles = [_middle(s) for s in period]
    # DejaVu digits are 0.64 em wide; keep a gap of one em and a half.
    per_label = (max(map(len, labels)) * 0.64 + 1.5) * TICK_FONT / 72
    fits = max(1, int(room / per_label))
    steps = LABEL_STEPS[d.bucket]
    step = next((k for k in steps if -(-len(period) // k) <= fits), -(-len(period) // fits))
    ax.set_xlim(_x(period[0].first), _x(period[-1].stop))
    ax.set_xticks(middles, minor=True)
    ax.set_xticks(middles[::step], labels[::step], fontsize=TICK_FONT)
    ax.set_xlabel({"day": "Day (Europe/Paris)",
                   "week": "Week from Monday (Europe/Paris), labelled with its first day",
                   "month": "Month (Europe/Paris)"}[d.bucket])


def figure_hours(d: ReportData) -> Any:
    title = TITLES["chart-hours"]
    fig, ax = _figure()
    hours = list(range(24))
    for i, (lo, hi) in enumerate(calendar.WINDOWS):
        ax.axvspan(lo.hour - 0.5, hi.hour - 0.5, color="#d9f2d9", zorder=0,
                   label="legal hours, Mon-Fri (R-20)" if i == 0 else None)
    w = 0.4
    ax.bar([h - w / 2 for h in hours], d.placed_by_hour, w, color="#2b6cb0",
           label="placed in legal hours")
    ax.bar([h - w / 2 for h in hours], d.outside_by_hour, w, bottom=d.placed_by_hour,
           color="#c53030", label="placed outside legal hours/days (R-22 slot or breach)")
    ax.bar([h + w / 2 for h in hours], d.blocked_by_hour, w, color="#a0aec0", label="blocked")
    ax.set_xticks(hours)
    ax.set_xlim(-0.7, 23.7)
    ax.set_title(title)
    ax.set_xlabel("Hour of day on the callee's clock (0-23)")
    ax.set_ylabel("Calls")
    _counts(ax.yaxis)
    if any(d.placed_by_hour) or any(d.outside_by_hour) or any(d.blocked_by_hour):
        _legend_below(fig, ax.get_legend_handles_labels()[0])
    else:
        _empty(ax, "no call to a French number in this period" if d.foreign_calls
               else "no call in this period", "y")
    return fig


def chart_hours(d: ReportData) -> Chart:
    title = TITLES["chart-hours"]
    caption = ("Each call is placed at the hour it rang on the callee's clock (Réunion is "
               "UTC+4, Guadeloupe UTC-4...). Green bands are the legal windows of R-20 "
               "(10:00-13:00, 14:00-20:00, weekdays). Red: calls placed outside legal hours "
               "or on a weekend/national holiday; lawful only inside an R-22 consent slot.")
    return Chart("chart-hours", title, caption, _svg(figure_hours(d), "chart-hours", title))


def _rule_order(rule: str) -> tuple[int, str]:
    keys = list(RULES)
    return (keys.index(rule), rule) if rule in RULES else (len(keys), rule)


def figure_blocks(d: ReportData) -> Any:
    import matplotlib

    title = TITLES["chart-blocks"]
    fig, ax = _figure()
    rules = sorted({r for c in d.blocks.values() for r in c}, key=_rule_order)
    period = slots(d)
    middles = [_middle(s) for s in period]
    widths = [s.days * 0.8 for s in period]
    cmap = matplotlib.colormaps["tab20"]
    bottom = [0] * len(period)
    for rule in rules:
        values = [d.blocks.get(s.key, Counter())[rule] for s in period]
        color = cmap(_rule_order(rule)[0] % 20)
        ax.bar(middles, values, widths, bottom=bottom, color=color, label=rule)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title(title)
    if rules:
        ax.set_ylabel("Blocked calls (one per rule that blocked)")
        _counts(ax.yaxis)
        # Beside the plot, top rule first as in the stack: it never hides a bar.
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1),
                  fontsize=8, title="Rule", title_fontsize=8, frameon=False)
    else:
        _empty(ax, "no blocked call in this period", "y")
    _time_axis(ax, d, period)
    return fig


def chart_blocks(d: ReportData) -> Chart:
    title = TITLES["chart-blocks"]
    caption = ("Calls sentinelle refused, per " + d.bucket + ", stacked by the rule that "
               "blocked them; a call blocked by two rules counts once for each. The axis is "
               "the whole period, each bar over its own " + d.bucket
               + (" (the first and last cut to the period)" if d.bucket != "day" else "")
               + ". Rule ids are those of docs/rules.md (`sentinelle rules`); SYS-* are "
               "sentinelle's own faults.")
    return Chart("chart-blocks", title, caption, _svg(figure_blocks(d), "chart-blocks", title))


def figure_attempts(d: ReportData) -> Any:
    title = TITLES["chart-attempts"]
    fig, ax = _figure()
    top = max([MAX_ATTEMPTS + 1, *d.window_max])
    xs = list(range(1, top + 1))
    values = [d.window_max.get(x, 0) for x in xs]
    colors = ["#2b6cb0" if x <= MAX_ATTEMPTS else "#c53030" for x in xs]
    ax.bar(xs, values, 0.7, color=colors)
    for x, v in zip(xs, values, strict=True):
        if v:
            ax.annotate(str(v), (x, v), ha="center", va="bottom", fontsize=8)
    limit = ax.axvline(MAX_ATTEMPTS + 0.5, color="#c53030", linestyle="--",
                       label=f"limit: {MAX_ATTEMPTS} attempts per 30 days (R-30)")
    ax.set_xticks(xs)
    ax.set_title(title)
    ax.set_xlabel("Most attempts in any rolling 30-day window (per professional and callee)")
    ax.set_ylabel("Callees")
    _counts(ax.yaxis)
    if any(values):
        ax.set_ylim(0, max(values) * 1.15)  # room for the count over the tallest bar
    else:
        _empty(ax, "no call placed in this period", "y")
    _legend_below(fig, [limit], ncols=1)
    return fig


def chart_windows(d: ReportData) -> Chart:
    title = TITLES["chart-attempts"]
    caption = ("For each callee (and professional: R-30 counts per professional), the highest "
               "number of attempts found in any window of 30 calendar days ending in the "
               "period, answered or not. Nothing may stand right of the dashed line.")
    return Chart("chart-attempts", title, caption, _svg(figure_attempts(d), "chart-attempts", title))


def figure_campaigns(d: ReportData) -> Any:
    title = TITLES["chart-campaigns"]
    fig, (ax, ax2) = _figure(10.0, 4.2, 2)
    camps = sorted(set(d.outcomes) | set(d.refusals))
    colors = {"answered": "#2f855a", "busy": "#dd6b20", "no-answer": "#d69e2e",
              "failed": "#c53030", "unknown": "#718096", "erased": "#cbd5e0", "": "#e2e8f0"}
    left = [0] * len(camps)
    for outcome in OUTCOMES:
        values = [d.outcomes.get(c, Counter())[outcome] for c in camps]
        if any(values):
            ax.barh(camps, values, 0.5, left=left, color=colors[outcome],
                    label=OUTCOME_LABELS.get(outcome, outcome))
            left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_title("Outcomes of the calls placed")
    ax2.set_title("Refusals (R-31)")
    fig.suptitle(title)
    if not camps:
        _empty(ax, "no call placed in this period")
        _empty(ax2, "no refusal in this period")
        return fig
    for a in (ax, ax2):
        a.set_ylim(-0.75, max(len(camps), 2) - 0.25)  # thin bars even for one campaign
    ax.set_xlabel("Calls placed (attempts)")
    ax.set_ylabel("Campaign")
    _counts(ax.xaxis)
    _legend_below(fig, ax.get_legend_handles_labels()[0], "outside lower left", ncols=3)
    refusals = [d.refusals[c] for c in camps]
    if not any(refusals):
        # Zero is a count, not a missing one: say it instead of a -0.05..0.05 scale.
        ax2.barh(camps, refusals, 0.5)
        ax2.text(0.5, 0.5, "no refusal recorded in this period", ha="center", va="center",
                 transform=ax2.transAxes, color="#4a5568", fontsize=11)
        ax2.set_xticks([])
        return fig
    ax2.barh(camps, refusals, 0.5, color="#805ad5")
    for c, n in zip(camps, refusals, strict=True):
        answered = d.outcomes.get(c, Counter())["answered"]
        rate = f" ({100 * n / answered:.0f}% of answered)" if answered else ""
        if n:
            ax2.annotate(f"{n}{rate}", (n, c), xytext=(3, 0), textcoords="offset points",
                         va="center", fontsize=8)
    ax2.set_xlim(0, max(refusals) / 0.55)  # room right of the longest bar for its count
    ax2.set_xlabel("Refusals recorded")
    _counts(ax2.xaxis)
    return fig


def chart_campaigns(d: ReportData) -> Chart:
    title = TITLES["chart-campaigns"]
    caption = ("Left: what became of the calls placed (ARI listener: answered, busy, no "
               "answer, failed; unknown when the listener lost the call). Right: refusals "
               "recorded per campaign (DTMF, agent disposition or CLI); each starts 60 days "
               "of silence for that professional (R-31).")
    return Chart("chart-campaigns", title, caption, _svg(figure_campaigns(d), "chart-campaigns", title))


def _ages_per_slot(ages: dict[date, int], period: list[Slot]) -> list[float]:
    """The oldest age per slot, NaN where no fr-2023 check was made (the line
    breaks there instead of joining two days across a gap). Ages are keyed by
    the decision's UTC day, which can be the eve of the period's first Paris
    day: such a point is the first slot's, as its decision is in the period."""
    firsts = [s.first for s in period]
    out = [float("nan")] * len(period)
    for day, age in ages.items():
        i = max(0, bisect_right(firsts, day) - 1)
        if not out[i] >= age:  # NaN or younger
            out[i] = age
    return out


def figure_coverage(d: ReportData, config: Config) -> Any:
    title = TITLES["chart-coverage"]
    fig, (ax, ax2) = _figure(10.0, 4.6, 2)
    fig.suptitle(title)
    limit = config.policy.bloctel_max_age_days
    period = slots(d)
    middles = [_middle(s) for s in period]
    for pro, ages in sorted(d.snapshot_ages.items()):
        ax.plot(middles, _ages_per_slot(ages, period), marker="o", markersize=3,
                label=f"snapshot used by {pro}")
    stale = ax.axhline(limit, color="#c53030", linestyle="--",
                       label=f"stale after {limit} days (R-10)")
    oldest = max((v for ages in d.snapshot_ages.values() for v in ages.values()), default=0)
    ax.set_ylim(0, max(limit, oldest) * 1.15 + 1)
    ax.set_title("Age of the Bloctel snapshot the checks used"
                 + ("" if d.bucket == "day" else f" (oldest per {d.bucket})"), fontsize=11)
    ax.set_ylabel("Snapshot age (days)")
    _counts(ax.yaxis)
    if not d.snapshot_ages:
        _empty(ax, "no fr-2023 decision\nwith a Bloctel snapshot in this period", "")
    _legend_below(fig, [*ax.get_lines()[:-1], stale], "outside lower left", ncols=1)
    pros = sorted(d.basis)
    left = [0] * len(pros)
    colors = ["#2f855a", "#3182ce", "#d69e2e", "#805ad5", "#a0aec0", "#e2e8f0"]
    for basis, color in zip(BASES, colors, strict=True):
        values = [d.basis[p][basis] for p in pros]
        if any(values):
            ax2.barh(pros, values, 0.5, left=left, color=color, label=basis)
            left = [a + b for a, b in zip(left, values, strict=True)]
    ax2.set_title("Legal basis of the calls placed", fontsize=11)
    if pros:
        _legend_below(fig, ax2.get_legend_handles_labels()[0], "outside lower right", ncols=2)
        ax2.set_ylim(-0.75, max(len(pros), 2) - 0.25)
        ax2.set_xlabel("Calls placed (attempts)")
        ax2.set_ylabel("Professional")
        _counts(ax2.xaxis)
    else:
        _empty(ax2, "no call placed in this period")
    _time_axis(ax, d, period)
    return fig


def chart_coverage(d: ReportData, config: Config) -> Chart:
    title = TITLES["chart-coverage"]
    limit = config.policy.bloctel_max_age_days
    each = "day" if d.bucket == "day" else f"{d.bucket} (the oldest of its days)"
    caption = ("Left: under fr-2023 every prospecting call needs a Bloctel snapshot at most "
               f"{limit} days old (R-10); the line is the age of the oldest snapshot the "
               f"fr-2023 checks of each {each} relied on, read from the decision log (no "
               "point: no fr-2023 check then). Right: why each call placed was lawful: a "
               "valid consent (fr-2026, R-11), a contract in progress, a clean Bloctel check "
               "(fr-2023), a press campaign, or a non-prospecting purpose.")
    return Chart("chart-coverage", title, caption, _svg(figure_coverage(d, config), "chart-coverage", title))


# -- HTML -----------------------------------------------------------------------

_CSS = """
body{font-family:'DejaVu Sans',Arial,sans-serif;margin:2em auto;max-width:1000px;color:#1a202c}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin:.2em 0}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #cbd5e0;padding:.25em .6em;
text-align:left}th{background:#edf2f7}td.n{text-align:right}
figure{margin:1.5em 0;padding:1em;border:1px solid #e2e8f0;border-radius:6px}
figure svg{width:100%;height:auto}figcaption p{color:#4a5568;font-size:.9em;margin:.3em 0 .8em}
.ok{color:#2f855a}.info{color:#975a16}.bad{color:#c53030;font-weight:bold}.meta{color:#4a5568;font-size:.9em}
"""


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{v}</td>' if isinstance(v, int) else f"<td>{html.escape(str(v))}</td>"
            for v in row) + "</tr>"
        for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _findings(d: ReportData, limit: int) -> list[tuple[str, str]]:
    """(css class, sentence): ok / bad (a possible breach) / info."""
    s = d.summary
    out = []
    out.append(("ok" if d.placed_outside == 0 else "bad",
                "No call placed outside the legal hours and days (R-20/R-21)."
                if d.placed_outside == 0 else
                f"{d.placed_outside} call(s) placed outside the legal hours or days; "
                f"{s['slot_calls']} decision(s) in the period used an R-22 consent slot. "
                "Check each with `sentinelle explain NUMBER --at ISO`."))
    out.append(("ok" if s["over_limit"] == 0 else "bad",
                f"No callee got more than {MAX_ATTEMPTS} attempts in 30 days (R-30)."
                if s["over_limit"] == 0 else
                f"{s['over_limit']} callee(s) got more than {MAX_ATTEMPTS} attempts in a "
                "30-day window (R-30)."))
    stale = sorted(p for p, ages in d.snapshot_ages.items() if max(ages.values()) > limit)
    if stale:
        out.append(("info", "A stale Bloctel snapshot was in use on some days for "
                    + ", ".join(stale) + ": the prospecting calls it covered were blocked (R-10)."))
    return out


def render_html(d: ReportData, config: Config, charts: list[Chart], store_path: str) -> str:
    s = d.summary
    scope = f"campaign {d.campaign}" if d.campaign else "all campaigns"
    period = (f"{d.start.astimezone(PARIS).isoformat(sep=' ', timespec='minutes')} to "
              f"{d.end.astimezone(PARIS).isoformat(sep=' ', timespec='minutes')} (end excluded)")
    summary_rows = [
        ("Decisions", s["decisions"]), ("allowed", s["allowed"]), ("blocked", s["blocked"]),
        ("Calls placed (attempts, R-30)", s["attempts"]),
        ("Distinct callees called (per professional)", s["callees"]),
        ("Refusals recorded (R-31)", s["refusals"]),
        ("Consents given in the period (R-11)", s["consents_given"]),
        ("Decisions that used an R-22 consent slot", s["slot_calls"]),
        ("Most attempts on one callee in 30 days (R-30, max 4)", s["max_window"]),
        ("Calls to foreign numbers (not in the hour chart)", d.foreign_calls),
    ]
    findings = "".join(
        f'<li class="{cls}">{html.escape(text)}</li>'
        for cls, text in _findings(d, config.policy.bloctel_max_age_days))
    snaps = [(p, sd, kind, count, state, imported[:19].replace("T", " ") + " UTC")
             for p, sd, kind, count, state, imported in d.snapshots]
    cov = [(p, c.get("valid", 0), c.get("expiring", 0), c.get("revoked", 0), c.get("consents", 0),
            c.get("contracts", 0), c.get("optouts", 0)) for p, c in d.coverage.items()]
    figures = "".join(
        f'<figure id="{c.id}" aria-labelledby="{c.id}-title"><figcaption>'
        f'<h2 id="{c.id}-title">{html.escape(c.title)}</h2><p>{html.escape(c.caption)}</p>'
        f"</figcaption>{c.svg}</figure>"
        for c in charts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="sentinelle {__version__}">
<title>sentinelle compliance report, {html.escape(scope)}</title>
<style>{_CSS}</style></head>
<body>
<h1>sentinelle compliance report</h1>
<p class="meta">Period: {html.escape(period)}; scope: {html.escape(scope)}.<br>
Generated {d.generated_at.astimezone(PARIS).isoformat(sep=' ', timespec='seconds')} by sentinelle
{__version__} from store <code>{html.escape(store_path)}</code>, config
<code>{html.escape(config.source)}</code>. Rule ids (R-xx) are those of docs/rules.md.</p>
<section id="findings"><h2>Findings</h2><ul>{findings}</ul></section>
<section id="summary"><h2>Summary</h2>{_table(("", "count"), summary_rows, "summary")}</section>
{figures}
<section id="coverage"><h2>Consent coverage and opposition lists</h2>
<p class="meta">As of the report's generation. Valid: given, not revoked, younger than
{config.policy.consent_max_age_days} days (R-11); expiring: valid now, too old within 30 days.</p>
{_table(("professional", "valid consents", "expiring in 30 days", "revoked", "consents on record",
         "contracts", "opposition list (R-12)"), cov, "coverage")}
<h2>Bloctel snapshots (R-10)</h2>
{_table(("professional", "snapshot date", "kind", "numbers", "state", "imported"), snaps,
        "snapshots") if snaps else "<p>No Bloctel snapshot imported.</p>"}
</section>
</body></html>
"""


@dataclass(frozen=True, slots=True)
class ReportStats:
    path: Path
    bytes: int
    seconds: float
    decisions: int


def write_report(config: Config, store: Backend, start: datetime, end: datetime, out: Path,
                 campaign: str | None = None, now: datetime | None = None) -> ReportStats:
    t0 = time.perf_counter()
    data = collect(config, store, start, end, campaign, now)
    charts = [chart_hours(data), chart_blocks(data), chart_windows(data), chart_campaigns(data),
              chart_coverage(data, config)]
    text = render_html(data, config, charts, store.path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a report
    return ReportStats(out, len(text.encode()), time.perf_counter() - t0,
                       data.summary["decisions"])
