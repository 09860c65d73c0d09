"""The `sentinelle` command line.

Exit codes are a contract other tools rely on: `check` exits 0 on allow, 1
on block, 2 on a usage or config error. Every command names the rule ids it
applies, so what an admin sees is what the decision log says.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__, logs
from .clock import parse_instant, refuse_future, system_clock
from .guard import Request, check
from .imports import ImportRejected, import_bloctel, import_csv
from .numbers import Kind, NumberError, parse
from .policy import Config, ConfigError, load_config
from .rules import RULES, Decision
from .store import ConsentProof, Store, StoreError

EXIT_ALLOW, EXIT_BLOCK, EXIT_USAGE = 0, 1, 2


class Ctx:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                fail(str(exc))
        return self._config

    def store(self, create: bool = True) -> Store:
        c = self.config.store
        return Store(c.path, create=create, busy_timeout_ms=c.busy_timeout_ms,
                     synchronous=c.synchronous)

    def professional(self, campaign: str | None) -> str:
        try:
            return self.config.campaign(campaign).professional
        except ConfigError as exc:
            fail(str(exc))


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def store_errors() -> Iterator[None]:
    try:
        yield
    except StoreError as exc:
        fail(str(exc), EXIT_BLOCK)


class Instant(click.ParamType):
    name = "ISO8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 instant (e.g. 2026-12-01T10:30:00+01:00)",
                      param, ctx)


class Day(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        try:
            return value if isinstance(value, date) else date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD)", param, ctx)


INSTANT = Instant()
DAY = Day()


def e164_of(raw: str, ctx: Ctx) -> str:
    """Numbers typed by admins go through the same parser as dialled ones."""
    try:
        number = parse(raw, ctx.config.policy.outside_prefix)
    except NumberError as exc:
        fail(str(exc))
    if number.kind is Kind.SHORT:
        fail(f"{raw!r} is an emergency/short number (R-00): nothing to record")
    return number.e164


def campaign_option(required: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--campaign", required=required, metavar="NAME",
                        help="Campaign; resolves to its professional.")


def allow_future_option(enabled: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if not enabled:
        return lambda command: command
    return click.option("--allow-future", is_flag=True,
                        help="Accept instants more than 5 minutes ahead of this host's clock.")


def past_instant(at: datetime | None, allow_future: bool, what: str = "--at") -> datetime:
    """`at`, or now; a future `at` is refused (exit 2) unless `allow_future`."""
    now = system_clock()
    if at is not None and not allow_future:
        try:
            refuse_future(at, now, what)
        except ValueError as exc:
            fail(str(exc))
    return at or now


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", envvar="SENTINELLE_CONFIG",
              help="TOML config (else $SENTINELLE_CONFIG, ./sentinelle.toml, built-in defaults).")
@click.option("--log-level", default="WARNING", show_default=True, help="Log level (JSON logs on stderr).")
@click.version_option(__version__)
@click.pass_context
def main(click_ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """sentinelle: may this professional call this number now, with this caller ID?"""
    logs.setup(log_level)
    click_ctx.obj = Ctx(config_path)


# -- check --------------------------------------------------------------------

@main.command("check")
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
            where += f" ({d.callee.territory.value}, local {d.local_time:%a %Y-%m-%d %H:%M})"
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


# -- facts --------------------------------------------------------------------

@main.group()
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
    e164, pro = e164_of(number, ctx), ctx.professional(campaign)
    at = past_instant(at, allow_future)
    with store_errors(), ctx.store() as store:
        new = store.add_refusal(pro, campaign, e164, at, "cli", attempt)
    click.echo(f"refusal {'recorded' if new else 'already recorded'}: {e164} ({pro})")


@main.group()
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
    if (slot_from is None) != (slot_until is None):
        fail("--slot-from and --slot-until go together")
    if slot_from and slot_until and slot_until <= slot_from:
        fail("--slot-until must be after --slot-from")
    e164, pro = e164_of(number, ctx), ctx.professional(campaign)
    proof = ConsentProof(source=source, given_at=past_instant(at, allow_future), channel=channel,
                         wording=wording, evidence_ref=evidence, slot_from=slot_from,
                         slot_until=slot_until)
    with store_errors(), ctx.store() as store:
        cid = store.add_consent(pro, e164, proof)
    click.echo(f"consent #{cid} recorded: {e164} ({pro})")


@consent.command("revoke")
@click.argument("number")
@campaign_option()
@click.option("--at", type=INSTANT, help="When it was revoked (default now).")
@allow_future_option()
@click.pass_obj
def consent_revoke(ctx: Ctx, number: str, campaign: str, at: datetime | None,
                   allow_future: bool) -> None:
    """Revoke every consent of this callee for this professional."""
    e164, pro = e164_of(number, ctx), ctx.professional(campaign)
    at = past_instant(at, allow_future)
    with store_errors(), ctx.store() as store:
        n = store.revoke_consent(pro, e164, at)
    click.echo(f"{n} consent(s) revoked: {e164} ({pro})")


@main.group()
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


@main.group()
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


# -- imports ------------------------------------------------------------------

@main.group("import")
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


def _report(result_count: int, skipped: list[Any], what: str) -> None:
    click.echo(f"imported {result_count} {what}")
    if skipped:
        click.echo(f"skipped {len(skipped)} invalid line(s):", err=True)
        for err in skipped[:20]:
            click.echo(f"  {err}", err=True)


@import_group.command("bloctel")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@campaign_option()
@click.option("--date", "snapshot_date", type=DAY, required=True, help="Date of the Bloctel answer.")
@click.option("--kind", type=click.Choice(["opposed", "cleaned"]), default="opposed",
              show_default=True, help="opposed: numbers to block; cleaned: numbers callable.")
@click.option("--skip-invalid", is_flag=True, help="Skip and report invalid lines instead of aborting.")
@click.option("--allow-shrink", is_flag=True,
              help="Accept a snapshot under half the size of the current one (same kind).")
@click.pass_obj
def import_bloctel_cmd(ctx: Ctx, file: Path, campaign: str, snapshot_date: date, kind: str,
                       skip_invalid: bool, allow_shrink: bool) -> None:
    """Replace the professional's Bloctel snapshot atomically (R-10). An empty,
    binary or markup file, or a snapshot under half the current one, is refused."""
    from .clock import PARIS

    today = system_clock().astimezone(PARIS).date()
    if snapshot_date > today:
        fail(f"--date {snapshot_date} is in the future (today is {today}): a typo here would "
             "keep the list 'fresh' for the wrong days (R-10)")
    pro = ctx.professional(campaign)
    with store_errors(), ctx.store() as store, _progress_bar(file.stat().st_size, "bloctel") as bar:
        task = bar.add_task("import", total=file.stat().st_size)
        try:
            result = import_bloctel(store, pro, file, snapshot_date, kind,
                                    skip_invalid=skip_invalid, allow_shrink=allow_shrink,
                                    progress=lambda n: bar.advance(task, n))
        except ImportRejected as exc:
            fail(str(exc), EXIT_BLOCK)
    _report(result.count, result.skipped, f"numbers into the {kind} snapshot of {pro} "
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
        _report(result.count, result.skipped, what)


_csv_command("consents", "Import consents with proof: number, campaign|professional, given_at, "
             "source, [channel, wording, evidence_ref, slot_from, slot_until] (R-11, R-22).")
_csv_command("contracts", "Import contracts in progress: number, campaign|professional, [product].")
_csv_command("departments", "Import callee departments: number, department (refines R-21).")


# -- reading ------------------------------------------------------------------

@main.command("history")
@click.argument("number")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_obj
def history_cmd(ctx: Ctx, number: str, as_json: bool) -> None:
    """Attempts, refusals, consents and decisions recorded for one callee."""
    e164 = e164_of(number, ctx)
    with store_errors(), ctx.store(create=False) as store:
        timeline = store.timeline(e164)
    if as_json:
        click.echo(json.dumps({"e164": e164, **timeline}, ensure_ascii=False))
        return
    click.echo(f"history of {e164}")
    for name, rows in timeline.items():
        click.echo(f"{name}: {len(rows)}")
        for row in rows:
            keep = {k: v for k, v in row.items() if v not in (None, "") and k != "inputs"}
            click.echo("  " + ", ".join(f"{k}={v}" for k, v in keep.items()))


@main.command("rules")
def rules_cmd() -> None:
    """List the rule ids with one-line explanations (see RULES.md)."""
    for rule, text in RULES.items():
        click.echo(f"{rule:<11} {text}")


@main.command("init")
@click.pass_obj
def init_cmd(ctx: Ctx) -> None:
    """Create the store (schema) if it does not exist yet."""
    with store_errors(), ctx.store(create=True) as store:
        click.echo(f"store ready: {store.path}")


# -- service ------------------------------------------------------------------

@main.command("serve")
@click.option("--listen", metavar="HOST:PORT", help="Override server.listen.")
@click.option("--at", "at", type=INSTANT,
              help="Freeze the clock at this instant (demos and end-to-end tests only).")
@click.option("--check-config", is_flag=True, help="Validate the config and exit.")
@click.pass_obj
def serve_cmd(ctx: Ctx, listen: str | None, at: datetime | None, check_config: bool) -> None:
    """Run the FastAGI service (route `check`) for Asterisk."""
    import asyncio
    import dataclasses

    from .service import run, validate_for_serving

    config = ctx.config
    if listen:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, listen=listen))
    try:
        validate_for_serving(config)
    except ConfigError as exc:
        fail(str(exc))
    if check_config:
        click.echo(f"config ok: {config.source} ({len(config.campaigns)} campaign(s), "
                   f"store {config.store.path}, listen {config.server.listen})")
        return
    logging_level = logging.getLogger("sentinelle").level
    if logging_level > logging.INFO:
        logs.setup("INFO")
    try:
        asyncio.run(run(config, at))
    except (StoreError, OSError) as exc:
        fail(str(exc), EXIT_BLOCK)


@main.command("agi", context_settings={"ignore_unknown_options": True})
@click.option("--at", "at", type=INSTANT, help="Freeze the clock (tests and demos only).")
@click.argument("agi_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def agi_cmd(ctx: Ctx, at: datetime | None, agi_args: tuple[str, ...]) -> None:
    """Classic per-call AGI on stdin/stdout, run by `sentinelle-agi`:
    `AGI(/path/to/sentinelle-agi,NUMBER,CAMPAIGN)`.

    Asterisk passes the arguments twice, on argv and as agi_arg_1/agi_arg_2
    headers; the headers are what counts, argv is ignored. Same check as the
    FastAGI route; prefer `serve` (no process per call)."""
    del agi_args
    import asyncio

    from .clock import frozen
    from .fastagi import serve_stdio

    asyncio.run(serve_stdio(ctx.config, frozen(at) if at else system_clock))


@main.command("listen")
@click.option("--at", "at", type=INSTANT,
              help="Shift recorded instants to start at this one (demos and end-to-end tests only).")
@click.option("--check-config", is_flag=True, help="Validate the [ari] config and exit.")
@click.pass_obj
def listen_cmd(ctx: Ctx, at: datetime | None, check_config: bool) -> None:
    """Run the ARI listener alone (outcomes and refusals); `serve` runs it too."""
    import asyncio
    import contextlib
    import signal

    from .clock import frozen
    from .listener import run, validate

    config = ctx.config
    try:
        validate(config)
    except ConfigError as exc:
        fail(str(exc))
    if check_config:
        click.echo(f"config ok: {config.source} (ARI app {config.ari.app}, "
                   f"refusal code {config.ari.refusal_dtmf}, store {config.store.path})")
        return
    if logging.getLogger("sentinelle").level > logging.INFO:
        logs.setup("INFO")
    from .service import warn_permissions

    warn_permissions(config)

    async def listen() -> None:
        sc = config.store
        Store(sc.path, create=True, busy_timeout_ms=sc.busy_timeout_ms).close()  # schema ready
        task = asyncio.create_task(run(config, frozen(at) if at else None))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(listen())
    except StoreError as exc:
        fail(str(exc), EXIT_BLOCK)


# -- evidence: export, explain, report, purge, forget (evidence_cli.py) --------
from .evidence_cli import register as register_evidence  # noqa: E402 - needs `main`

register_evidence(main)

def agi_main() -> None:
    """Console script `sentinelle-agi`: the config comes from $SENTINELLE_CONFIG
    (set it in Asterisk's environment), since Asterisk's argv is the call's."""
    main(["agi", "--", *sys.argv[1:]])


if __name__ == "__main__":  # pragma: no cover
    main()
