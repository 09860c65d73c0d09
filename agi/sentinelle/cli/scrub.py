"""`sentinelle scrub`: a lead list checked before the dialer loads it."""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import datetime

import click

from sentinelle.cli.common import EXIT_BLOCK, INSTANT, Ctx, atomic_output, fail
from sentinelle.config import ConfigError
from sentinelle.core.clock import system_clock
from sentinelle.store import StoreError, open_store


@click.command("scrub")
@click.argument("leads", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--campaign", required=True, metavar="NAME", help="Campaign the list is dialled for.")
@click.option("--at", "at", type=INSTANT, help="Instant to judge at (default now).")
@click.option("--out", default="-", metavar="FILE", show_default=True,
              help="Output file ('-' for stdout).")
@click.option("--format", "fmt", type=click.Choice(["csv", "ndjson"]), default="csv",
              show_default=True)
@click.option("--callable-only", is_flag=True, help="Keep only the leads callable at --at.")
@click.option("--callable-within", metavar="DURATION",
              help="Keep the leads callable by --at + DURATION (30m, 24h, 7d, 2w).")
@click.option("--sort", "sort_retry", is_flag=True,
              help="Callable now first, then by retry_at, then those needing a new fact.")
@click.option("--caller-id", metavar="NUM", help="Caller ID the dialer presents (R-40..R-43).")
@click.option("--column", metavar="NAME", help="Column holding the number (default: guessed).")
@click.option("--jobs", type=click.IntRange(1, 64), default=min(os.cpu_count() or 1, 4),
              show_default=True, help="Worker processes deciding leads.")
@click.pass_obj
def scrub_cmd(ctx: Ctx, leads: str, campaign: str, at: datetime | None, out: str, fmt: str,
              callable_only: bool, callable_within: str | None, sort_retry: bool,
              caller_id: str | None, column: str | None, jobs: int) -> None:
    """Each lead's verdict at --at, its blocking rules, and when time alone
    makes it callable (retry_at) or which new fact it needs (needs).
    Nothing is recorded. Exit 0 done, 1 store error, 2 usage error."""
    from sentinelle.scrub import LeadsError, Options, Scrubber, open_leads, parse_within, scrub, serial
    from sentinelle.scrub.pool import ScrubPool
    from sentinelle.scrub.run import Pipeline

    config = ctx.config
    try:
        config.campaign(campaign)
    except ConfigError as exc:
        fail(str(exc))
    when = at or system_clock()
    try:
        within = parse_within(callable_within, "--callable-within") if callable_within else None
        options = Options(at=when, callable_only=callable_only, callable_within=within,
                          sort=sort_retry, fmt=fmt, column=column)
        with contextlib.ExitStack() as stack:
            source = sys.stdin if leads == "-" else stack.enter_context(
                open(leads, encoding="utf-8-sig", newline=""))
            lead_list = open_leads(source, options)
            sc = config.store
            store = open_store(sc, pool_size=1)
            stack.callback(store.close)
            pipeline: Pipeline
            if jobs > 1:
                pipeline = stack.enter_context(ScrubPool(config, campaign, when, jobs=jobs,
                                                         caller_id=caller_id))
            else:
                pipeline = serial(Scrubber(config, store, campaign, when, caller_id).verdicts)
            fh = stack.enter_context(atomic_output(out))
            summary = scrub(lead_list, pipeline, options, fh.write)
    except LeadsError as exc:
        option = {"column": "--column", "format": "--format"}.get(exc.field, exc.field)
        fail(f"{option}: {exc.message}" if option.startswith("--") else exc.message)
    except OSError as exc:
        fail(f"{exc.filename or leads}: {exc.strerror}")
    except StoreError as exc:
        fail(str(exc), EXIT_BLOCK)
    s = summary.to_dict()
    click.echo(f"scrubbed {s['leads']} leads: {s['callable_now']} callable now, "
               f"{s['callable_later']} later (retry_at), {s['needs_fact']} need a new fact; "
               f"{s['written']} written", err=True)
