"""`check` and `rules`: the decision as an admin sees it, with the same
exit codes and JSON shape as the contract other tools rely on.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click

from sentinelle.cli.common import (
    EXIT_ALLOW,
    EXIT_BLOCK,
    INSTANT,
    Ctx,
    campaign_option,
    fail,
)
from sentinelle.config import ConfigError
from sentinelle.core.clock import system_clock
from sentinelle.core.model import Decision
from sentinelle.core.rules import RULES
from sentinelle.guard import Request, check
from sentinelle.store import StoreError


@click.command("check")
@click.argument("number")
@campaign_option(required=False)
@click.option("--caller-id", metavar="NUM", help="Presented caller ID (R-40..R-43).")
@click.option("--masked", is_flag=True, help="The caller ID is masked (R-40).")
@click.option("--at", "at", type=INSTANT, help="Instant to decide for (naive = Europe/Paris).")
@click.option("--record", is_flag=True, help="Count an allowed call as an attempt, like the AGI.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_obj
def check_cmd(ctx: Ctx, number: str, campaign: str | None, caller_id: str | None, masked: bool,
              at: datetime | None, record: bool, as_json: bool) -> None:
    """Decide for one call. Exit 0 allow, 1 block, 2 usage error.

    Without --record it is a dry run: nothing is written."""
    if caller_id and masked:
        fail("--caller-id and --masked are exclusive")
    config = ctx.config
    try:
        config.campaign(campaign)
    except ConfigError as exc:
        fail(str(exc))
    store, error = None, None
    try:
        store = ctx.store(create=False)
    except StoreError as exc:
        error = str(exc)
    req = Request(dialled=number, at=at or system_clock(), campaign=campaign, caller_id=caller_id,
                  masked=masked, record=record, source="cli")
    decision = check(config, store, req, store_error=error)
    if store:
        store.close()
    if as_json:
        click.echo(json.dumps(decision.to_dict(), ensure_ascii=False))
    else:
        click.echo(render(decision))
    sys.exit(EXIT_ALLOW if decision.allowed else EXIT_BLOCK)


def render(d: Decision) -> str:
    where = ""
    if d.callee is not None:
        where = f" {d.callee.e164}"
        if d.callee.territory and d.local_time:
            local = d.local_time.isoformat(sep=" ", timespec="minutes")
            where += f" ({d.callee.territory.value}, local {d.local_time:%a} {local})"
    lines = [f"{d.verdict.value.upper()}{where} [{d.regime}, campaign {d.campaign}]"]
    lines += [f"  {r}" for r in d.reasons]
    lines += [f"  note: {n}" for n in d.notes]
    if d.retry_at:
        lines.append(f"  retry at: {d.retry_at.isoformat()}")
    elif not d.allowed:
        lines.append("  retry at: never without a new fact (consent, list, config)")
    if d.attempt_id:
        lines.append(f"  recorded attempt #{d.attempt_id}")
    return "\n".join(lines)



@click.command("rules")
def rules_cmd() -> None:
    """List the rule ids with one-line explanations (see docs/rules.md)."""
    for rule, text in RULES.items():
        click.echo(f"{rule:<11} {text}")
