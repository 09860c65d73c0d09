"""`import`: all-or-nothing loads of Bloctel snapshots and CSV files.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from sentinelle.cli.common import (
    DAY,
    EXIT_BLOCK,
    Ctx,
    allow_future_option,
    campaign_option,
    fail,
    store_errors,
)
from sentinelle.config import ConfigError
from sentinelle.core.clock import system_clock
from sentinelle.core.model import BloctelKind
from sentinelle.imports import ImportRejected, ImportResult, import_bloctel, import_csv


@click.group("import")
def import_group() -> None:
    """All-or-nothing imports (a bad line aborts with its number)."""


def _progress_bar(total: int, label: str) -> Any:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(f"[bold]{label}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), disable=not sys.stderr.isatty(),
                        console=None, transient=False)
    return progress


def _report(result: ImportResult, what: str) -> None:
    click.echo(f"imported {result.count} {what}")
    if result.invalid:
        click.echo(f"skipped {result.invalid} invalid line(s):", err=True)
        for err in result.skipped:
            click.echo(f"  {err}", err=True)
        if result.invalid > len(result.skipped):
            click.echo(f"  ... and {result.invalid - len(result.skipped)} more", err=True)


@import_group.command("bloctel")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@campaign_option()
@click.option("--date", "snapshot_date", type=DAY, required=True, help="Date of the Bloctel answer.")
@click.option("--kind", type=click.Choice([k.value for k in BloctelKind]),
              default=BloctelKind.OPPOSED.value,
              show_default=True, help="opposed: numbers to block; cleaned: numbers callable.")
@click.option("--skip-invalid", is_flag=True, help="Skip and report invalid lines instead of aborting.")
@click.option("--allow-shrink", is_flag=True,
              help="Accept a snapshot under half the size of the current one (same kind).")
@click.pass_obj
def import_bloctel_cmd(ctx: Ctx, file: Path, campaign: str, snapshot_date: date, kind: str,
                       skip_invalid: bool, allow_shrink: bool) -> None:
    """Replace the professional's Bloctel snapshot atomically (R-10). An empty,
    binary or markup file, or a snapshot under half the current one, is refused."""
    from sentinelle.core.model import PARIS

    today = system_clock().astimezone(PARIS).date()
    if snapshot_date > today:
        fail(f"--date {snapshot_date} is in the future (today is {today}): a typo here would "
             "keep the list 'fresh' for the wrong days (R-10)")
    pro = ctx.professional(campaign)
    rejected: ImportRejected | None = None
    with store_errors(), ctx.store() as store, _progress_bar(file.stat().st_size, "bloctel") as bar:
        task = bar.add_task("import", total=file.stat().st_size)
        try:
            result = import_bloctel(store, pro, file, snapshot_date, kind,
                                    skip_invalid=skip_invalid, allow_shrink=allow_shrink,
                                    progress=lambda n: bar.advance(task, n))
        except ImportRejected as exc:
            rejected = exc
    if rejected is not None:  # once the progress bar has ended its line, never inside it
        fail(str(rejected), EXIT_BLOCK)
    _report(result, f"numbers into the {kind} snapshot of {pro} "
            f"dated {snapshot_date}")


def _csv_command(what: str, doc: str) -> None:
    @import_group.command(what, help=doc)
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @campaign_option(required=False)
    @click.option("--skip-invalid", is_flag=True, help="Skip and report invalid lines.")
    @allow_future_option(enabled=what == "consents")  # the only CSV with instants to bound
    @click.pass_obj
    def command(ctx: Ctx, file: Path, campaign: str | None, skip_invalid: bool,
                allow_future: bool = False) -> None:
        with store_errors(), ctx.store() as store:
            try:
                result = import_csv(store, ctx.config, what, file, campaign=campaign,
                                    skip_invalid=skip_invalid, allow_future=allow_future)
            except (ImportRejected, ConfigError) as exc:
                fail(str(exc), EXIT_BLOCK)
        _report(result, what)


_csv_command("consents", "Import consents with proof: number, campaign|professional, given_at, "
             "source, [channel, wording, evidence_ref, slot_from, slot_until] (R-11, R-22).")
_csv_command("contracts", "Import contracts in progress: number, campaign|professional, [product].")
_csv_command("departments", "Import callee departments: number, department (refines R-21).")
