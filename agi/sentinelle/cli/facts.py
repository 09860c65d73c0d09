"""Facts an admin records by hand (refusals, consents, contracts, the internal
opposition list) and reads back (`history`, `init`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click

from sentinelle import facts
from sentinelle.cli.common import (
    INSTANT,
    Ctx,
    allow_future_option,
    campaign_option,
    e164_of,
    fail,
    in_zone,
    store_errors,
    zone_option,
)
from sentinelle.core.clock import system_clock

# The API's field names, as the options that carry them here.
OPTIONS = {"number": "NUMBER", "campaign": "--campaign", "at": "--at", "given_at": "--at",
           "attempt_id": "--attempt", "source": "--source", "channel": "--channel",
           "wording": "--wording", "evidence_ref": "--evidence", "slot_from": "--slot-from",
           "slot_until": "--slot-until"}


def clock_for(at: datetime | None, allow_future: bool) -> datetime:
    """The "now" a fact's instant is bounded by: the clock, or `at` itself
    when the admin says a future instant is meant (--allow-future)."""
    now = system_clock()
    return max(now, at) if allow_future and at is not None else now


@contextmanager
def fact_errors() -> Iterator[None]:
    """Bad input is a usage error (exit 2) naming the option, as click's own."""
    try:
        yield
    except facts.FactError as exc:
        hint = "; add --allow-future if it is meant" if "in the future" in exc.message else ""
        fail(f"{OPTIONS.get(exc.field, exc.field)}: {exc.message}{hint}")


@click.group()
def refusal() -> None:
    """Refusals expressed during a call (R-31)."""


@refusal.command("add")
@click.argument("number")
@campaign_option()
@click.option("--at", type=INSTANT, help="When the callee refused (default now).")
@click.option("--attempt", type=int, help="Attempt id, makes the refusal idempotent per call.")
@allow_future_option()
@click.pass_obj
def refusal_add(ctx: Ctx, number: str, campaign: str, at: datetime | None,
                attempt: int | None, allow_future: bool) -> None:
    """Record a refusal: 60 days of silence (R-31); under fr-2026 it revokes consent."""
    with store_errors(), fact_errors(), ctx.store() as store:
        result = facts.record_refusal(store, ctx.config, at=at, source="cli", attempt_id=attempt,
                                      number=number, campaign=campaign,
                                      now=clock_for(at, allow_future))
    click.echo(f"refusal {'recorded' if result.new else 'already recorded'}: {result.e164} "
               f"({result.professional})")


@click.group()
def consent() -> None:
    """Prior consent with its proof (R-11) and outside-hours slots (R-22)."""


@consent.command("add")
@click.argument("number")
@campaign_option()
@click.option("--source", required=True, help="Where the consent comes from (form, call...).")
@click.option("--at", type=INSTANT, help="When it was given (default now).")
@click.option("--channel", default="", help="web, paper, phone, email...")
@click.option("--wording", default="", help="Wording or its version.")
@click.option("--evidence", default="", help="Reference of the stored evidence.")
@click.option("--slot-from", type=INSTANT, help="R-22: may be called from (outside hours).")
@click.option("--slot-until", type=INSTANT, help="R-22: ... until (exclusive).")
@allow_future_option()
@click.pass_obj
def consent_add(ctx: Ctx, number: str, campaign: str, source: str, at: datetime | None,
                channel: str, wording: str, evidence: str, slot_from: datetime | None,
                slot_until: datetime | None, allow_future: bool) -> None:
    """Record a consent and its proof."""
    now = clock_for(at, allow_future)
    with store_errors(), fact_errors(), ctx.store() as store:
        result = facts.record_consent(
            store, ctx.config, number=number, campaign=campaign, given_at=at or now,
            source=source, channel=channel, wording=wording, evidence_ref=evidence,
            slot_from=slot_from, slot_until=slot_until, now=now)
    click.echo(f"consent #{result.consent_id} recorded: {result.e164} ({result.professional})")


@consent.command("revoke")
@click.argument("number")
@campaign_option()
@click.option("--at", type=INSTANT, help="When it was revoked (default now).")
@allow_future_option()
@click.pass_obj
def consent_revoke(ctx: Ctx, number: str, campaign: str, at: datetime | None,
                   allow_future: bool) -> None:
    """Revoke every consent of this callee for this professional."""
    with store_errors(), fact_errors(), ctx.store() as store:
        result = facts.revoke_consents(store, ctx.config, number=number, campaign=campaign, at=at,
                                       now=clock_for(at, allow_future))
    click.echo(f"{result.revoked} consent(s) revoked: {result.e164} ({result.professional})")


@click.group()
def contract() -> None:
    """Contracts in progress (exception to R-10/R-11)."""


@contract.command("add")
@click.argument("number")
@campaign_option()
@click.option("--product", default="", help="The product under contract.")
@click.pass_obj
def contract_add(ctx: Ctx, number: str, campaign: str, product: str) -> None:
    """Record a contract in progress with this callee."""
    e164, pro = e164_of(number, ctx), ctx.professional(campaign)
    with store_errors(), ctx.store() as store:
        store.add_contract(pro, e164, product)
    click.echo(f"contract recorded: {e164} ({pro})")


@click.group()
def optout() -> None:
    """The professional's internal opposition list (R-12)."""


@optout.command("add")
@click.argument("number")
@campaign_option()
@click.pass_obj
def optout_add(ctx: Ctx, number: str, campaign: str) -> None:
    """Never call this number again for this professional (R-12)."""
    e164, pro = e164_of(number, ctx), ctx.professional(campaign)
    with store_errors(), ctx.store() as store:
        new = store.set_optout(pro, e164, True)
    click.echo(f"{e164} {'added to' if new else 'already on'} the opposition list of {pro}")


@optout.command("remove")
@click.argument("number")
@campaign_option()
@click.pass_obj
def optout_remove(ctx: Ctx, number: str, campaign: str) -> None:
    """Remove a number from the internal opposition list (admin decision)."""
    e164, pro = e164_of(number, ctx), ctx.professional(campaign)
    with store_errors(), ctx.store() as store:
        gone = store.set_optout(pro, e164, False)
    click.echo(f"{e164} {'removed from' if gone else 'was not on'} the opposition list of {pro}")


@click.command("history")
@click.argument("number")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--tz", "zone_name", default="Europe/Paris", show_default=True,
              help="Time zone the instants are shown in.")
@click.pass_obj
def history_cmd(ctx: Ctx, number: str, as_json: bool, zone_name: str) -> None:
    """Attempts, refusals, consents and decisions recorded for one callee,
    times in Paris time with their offset (or --tz)."""
    e164 = e164_of(number, ctx)
    zone = zone_option(zone_name)
    with store_errors(), ctx.store(create=False) as store:
        timeline = {name: [in_zone(row, zone) for row in rows]
                    for name, rows in store.timeline(e164).items()}
    if as_json:
        click.echo(json.dumps({"e164": e164, **timeline}, ensure_ascii=False))
        return
    click.echo(f"history of {e164}")
    for name, rows in timeline.items():
        click.echo(f"{name}: {len(rows)}")
        for row in rows:
            keep = {k: v for k, v in row.items() if v not in (None, "") and k != "inputs"}
            click.echo("  " + ", ".join(f"{k}={v}" for k, v in keep.items()))

@click.command("init")
@click.pass_obj
def init_cmd(ctx: Ctx) -> None:
    """Create the store (schema) if it does not exist yet."""
    with store_errors(), ctx.store(create=True) as store:
        click.echo(f"store ready: {store.path}")
