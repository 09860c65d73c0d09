"""CLI commands for evidence: export, explain, report, audit, purge, forget.

Kept apart from the facts and decision commands: these read the store to
show an auditor what happened, and they are the heaviest (matplotlib for
the report), so their modules are imported only when a command runs.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from sentinelle.cli.common import EXIT_BLOCK, INSTANT, Ctx, atomic_output, e164_of, fail, store_errors
from sentinelle.config import ConfigError
from sentinelle.core.clock import parse_instant, system_clock
from sentinelle.core.model import PARIS
from sentinelle.core.numbers import parse
from sentinelle.evidence.retention import DEFAULT_BATCH


class Bound(click.ParamType):  # type: ignore[type-arg]
    """A day (YYYY-MM-DD, a whole Europe/Paris day) or an ISO 8601 instant."""

    name = "DATE|ISO8601"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> date | datetime:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value) if len(value.strip()) == 10 else parse_instant(value)
        except ValueError:
            self.fail(f"{value!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 instant",
                      param, ctx)


BOUND = Bound()


def _instant(value: date | datetime, next_day: bool) -> datetime:
    if isinstance(value, datetime):
        return value
    day = value + timedelta(days=1) if next_day else value
    return datetime.combine(day, time(0), PARIS)


def period(start: date | datetime, end: date | datetime) -> tuple[datetime, datetime]:
    """[start, end) in instants: a `--to` day is included whole (up to the next
    Paris midnight); an instant is an exclusive bound."""
    lo, hi = _instant(start, False), _instant(end, True)
    if hi <= lo:
        fail("--to must be after --from")
    return lo, hi


def open_period(start: date | datetime | None, end: date | datetime | None
                ) -> tuple[datetime | None, datetime | None]:
    """`period` where a missing bound leaves that side open."""
    lo = None if start is None else _instant(start, False)
    hi = None if end is None else _instant(end, True)
    if lo is not None and hi is not None and hi <= lo:
        fail("--to must be after --from")
    return lo, hi


def _range_options(fn: Any) -> Any:
    fn = click.option("--to", "end", type=BOUND, required=True,
                      help="Last day (included) or an instant (excluded).")(fn)
    return click.option("--from", "start", type=BOUND, required=True,
                        help="First day (Europe/Paris) or an ISO 8601 instant.")(fn)


# -- export -------------------------------------------------------------------

@click.command("export")
@click.argument("table", type=click.Choice(["decisions", "attempts", "refusals", "consents"]))
@_range_options
@click.option("--campaign", metavar="NAME",
              help="Only this campaign (consents: the campaign's professional).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True)
@click.option("--out", default="-", metavar="FILE", show_default=True,
              help="Output file ('-' for stdout).")
@click.option("--tz", "zone_name", default="Europe/Paris", show_default=True,
              help="Time zone of the exported times (e.g. UTC).")
@click.pass_obj
def export_cmd(ctx: Ctx, table: str, start: date | datetime, end: date | datetime,
               campaign: str | None, fmt: str, out: str, zone_name: str) -> None:
    """Stream decisions, attempts, refusals or consents of a period as CSV or
    JSONL (stable columns, ISO 8601 times with offset; see README.md, "Evidence")."""
    from sentinelle.evidence.export import export

    lo, hi = period(start, end)
    zone = _zone(zone_name)
    professional = None
    if campaign is not None:
        professional = ctx.professional(campaign)
        if table == "consents":
            campaign = None
    with store_errors(), ctx.store(create=False) as store, \
            store.evidence_rows(table, lo, hi, campaign=campaign,
                                professional=professional) as (columns, rows), \
            atomic_output(out) as fh:
        count = export(columns, rows, table, fmt, fh, zone)
    if out != "-":
        click.echo(f"exported {count} {table} to {out}", err=True)


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"unknown time zone {name!r} (e.g. Europe/Paris, UTC)")


# -- explain ------------------------------------------------------------------

@click.command("explain")
@click.argument("number")
@click.option("--at", "at", type=INSTANT, help="Instant to explain (default now).")
@click.option("--campaign", metavar="NAME", help="Only this campaign (default: every campaign).")
@click.option("--caller-id", metavar="NUM", help="Caller ID to judge (R-40..R-43).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_obj
def explain_cmd(ctx: Ctx, number: str, at: datetime | None, campaign: str | None,
                caller_id: str | None, as_json: bool) -> None:
    """Timeline of one callee and the decision that would be taken now, in words."""
    from sentinelle.evidence.explain import explain, render

    config = ctx.config
    e164 = e164_of(number, ctx)
    callee = parse(e164)
    names = [campaign] if campaign else sorted(config.campaigns)
    try:
        for name in names:
            config.campaign(name)
    except ConfigError as exc:
        fail(str(exc))
    with store_errors(), ctx.store(create=False) as store:
        result = explain(config, store, callee, at or system_clock(), names, caller_id)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        click.echo(render(result))


# -- report -------------------------------------------------------------------

@click.command("report")
@_range_options
@click.option("--campaign", metavar="NAME", help="Only this campaign.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (self-contained).")
@click.pass_obj
def report_cmd(ctx: Ctx, start: date | datetime, end: date | datetime, campaign: str | None,
               out: Path) -> None:
    """Write a self-contained HTML compliance report with charts."""
    from sentinelle.evidence.report import write_report

    lo, hi = period(start, end)
    if campaign is not None:
        ctx.professional(campaign)  # exit 2 on an unknown campaign
    with store_errors(), ctx.store(create=False) as store:
        stats = write_report(ctx.config, store, lo, hi, out, campaign)
    click.echo(f"report written: {stats.path} ({stats.bytes // 1024} KiB, "
               f"{stats.decisions} decisions, {stats.seconds:.1f} s)")


# -- audit --------------------------------------------------------------------

@click.command("audit")
@click.option("--from", "start", type=BOUND,
              help="First day (Europe/Paris) or an ISO 8601 instant; default: from the first "
                   "attempt.")
@click.option("--to", "end", type=BOUND,
              help="Last day (included) or an instant (excluded); default: to the last attempt.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_obj
def audit_cmd(ctx: Ctx, start: date | datetime | None, end: date | datetime | None,
              as_json: bool) -> None:
    """Re-check every recorded attempt against R-10/R-11/R-12/R-20/R-21/R-30/R-31,
    independently of the decision code, and the store file's integrity.
    Exit 0 clean, 1 on any breach or integrity problem, 2 usage error."""
    from sentinelle.evidence.audit import audit, render

    lo, hi = open_period(start, end)
    with store_errors(), ctx.store(create=False) as store:
        report = audit(store, ctx.config, lo, hi, integrity=True)
    click.echo(json.dumps(report.to_dict(), ensure_ascii=False) if as_json else render(report))
    sys.exit(0 if report.clean else EXIT_BLOCK)


# -- purge --------------------------------------------------------------------

@click.command("purge")
@click.option("--older-than", "older_than", metavar="DURATION",
              help="Retention, e.g. 1095d, 156w, 3y (default: policy.retention_days).")
@click.option("--batch", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH, show_default=True,
              help="Rows deleted per transaction.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted, delete nothing.")
@click.pass_obj
def purge_cmd(ctx: Ctx, older_than: str | None, batch: int, dry_run: bool) -> None:
    """Delete records past retention, in small batches, while the service runs."""
    from sentinelle.evidence.retention import parse_duration, purge, purge_bounds

    policy = ctx.config.policy
    try:
        keep = parse_duration(older_than) if older_than else timedelta(days=policy.retention_days)
        bounds = purge_bounds(system_clock(), keep, policy.consent_max_age_days)
    except ValueError as exc:
        fail(str(exc))
    with store_errors(), ctx.store(create=False) as store:
        result = purge(store, bounds, batch=batch, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"retention {keep.days} days: records before "
               f"{bounds['cutoff'].astimezone(PARIS):%Y-%m-%d %H:%M} (Paris)")
    for table, n in result.deleted.items():
        click.echo(f"  {table}: {verb} {n}")
    if not dry_run:
        click.echo(f"  {result.batches} batch(es), longest held the lock "
                   f"{result.longest_batch_s * 1000:.0f} ms, {result.seconds:.1f} s in all")


# -- forget -------------------------------------------------------------------

@click.command("forget")
@click.argument("number")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_obj
def forget_cmd(ctx: Ctx, number: str, yes: bool, as_json: bool) -> None:
    """Erasure request: delete this number's personal data, keeping only the
    minimal records that honour an opposition (R-12) or refusal (R-31) and
    the R-30 count (see README.md, "Evidence")."""
    from sentinelle.evidence.retention import forget

    e164 = e164_of(number, ctx)
    if not yes and not click.confirm(f"Erase the personal data held on {e164}?"):
        fail("nothing erased", EXIT_BLOCK)
    with store_errors(), ctx.store(create=False) as store:
        result = forget(store, e164, system_clock(), ctx.config.policy.outside_prefix)
    if as_json:
        click.echo(json.dumps({"e164": e164, "tables": result.tables,
                               "wal_checkpointed": result.checkpointed}))
        return
    click.echo(f"erased {e164}:")
    for table, n in result.tables.items():
        kept = f", kept {n['kept']} minimal" if n["kept"] else ""
        click.echo(f"  {table}: deleted {n['deleted']}{kept}")
    if not result.checkpointed:
        click.echo("  note: readers kept the WAL checkpoint from finishing; the erased rows "
                   "leave the -wal file at the next checkpoint", err=True)



