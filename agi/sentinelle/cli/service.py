"""`serve`, `agi` and `listen`: thin wrappers that validate the config and
hand over to the service layer, where the loops live.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path

import click

from sentinelle import logs
from sentinelle.cli.common import (
    EXIT_BLOCK,
    INSTANT,
    Ctx,
    fail,
)
from sentinelle.config import Config, ConfigError, validate_for_listening, validate_for_serving
from sentinelle.core.clock import system_clock
from sentinelle.pbx.asterisk_conf import check_asterisk_dir
from sentinelle.store import StoreError


@click.command("serve")
@click.option("--listen", metavar="HOST:PORT", help="Override server.listen.")
@click.option("--at", "at", type=INSTANT,
              help="Freeze the clock at this instant (demos and end-to-end tests only).")
@click.option("--check-config", is_flag=True, help="Validate the config and exit.")
@click.option("--files-only", is_flag=True,
              help="With --check-config: do not ask the live Asterisk (ARI credentials, "
                   "contexts, feature codes, channelvars).")
@click.pass_obj
def serve_cmd(ctx: Ctx, listen: str | None, at: datetime | None, check_config: bool,
              files_only: bool) -> None:
    """Run the FastAGI service (route `check`) for Asterisk."""
    import asyncio
    import dataclasses

    from sentinelle.service.serve import run

    config = ctx.config
    if listen:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, listen=listen))
    try:
        validate_for_serving(config)
    except ConfigError as exc:
        fail(str(exc))
    if check_config:
        for warning in check_asterisk_dir(Path(config.server.asterisk_etc)):
            click.echo(f"warning: {warning}", err=True)
        if not files_only:
            _check_ari(config)
        click.echo(f"config ok: {config.source} ({len(config.campaigns)} campaign(s), "
                   f"store {config.store.where}, listen {config.server.listen})")
        return
    logging_level = logging.getLogger("sentinelle").level
    if logging_level > logging.INFO:
        logs.setup("INFO")
    try:
        if config.server.workers > 1:
            from sentinelle.service.serve import warn_permissions
            from sentinelle.service.workers import supervise

            warn_permissions(config)
            raise SystemExit(supervise(config, at))
        asyncio.run(run(config, at))
    except (StoreError, OSError) as exc:
        fail(str(exc), EXIT_BLOCK)


@click.command("agi", context_settings={"ignore_unknown_options": True})
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
    from sentinelle.core.clock import frozen
    from sentinelle.pbx.stdio import run

    sys.exit(run(ctx.config, frozen(at) if at else system_clock))


@click.command("listen")
@click.option("--at", "at", type=INSTANT,
              help="Shift recorded instants to start at this one (demos and end-to-end tests only).")
@click.option("--check-config", is_flag=True, help="Validate the [ari] config and exit.")
@click.pass_obj
def listen_cmd(ctx: Ctx, at: datetime | None, check_config: bool) -> None:
    """Run the ARI listener alone (outcomes and refusals); `serve` runs it too."""
    import asyncio

    from sentinelle.service.serve import run_listener

    config = ctx.config
    try:
        validate_for_listening(config)
    except ConfigError as exc:
        fail(str(exc))
    if check_config:
        _check_ari(config)
        click.echo(f"config ok: {config.source} (ARI app {config.ari.app}, "
                   f"refusal code {config.ari.refusal_dtmf}, store {config.store.path})")
        return
    if logging.getLogger("sentinelle").level > logging.INFO:
        logs.setup("INFO")
    try:
        asyncio.run(run_listener(config, at))
    except StoreError as exc:
        fail(str(exc), EXIT_BLOCK)


def _check_ari(config: Config) -> None:
    """With [ari] url set: exit 2 if Asterisk refuses the credentials or lacks
    what sentinelle needs (one line per item), warn if it does not answer
    (see pbx/ari_check.py and pbx/livecheck.py)."""
    if not config.ari.url:
        return
    from sentinelle.pbx.ari_check import check  # local: the ARI client only when configured

    result = check(config)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.error:
        fail(result.error)
    for line in result.missing:
        click.echo(line, err=True)
    if result.missing:
        fail(f"the PBX lacks {len(result.missing)} item(s) sentinelle needs (above); "
             "--files-only skips this check")
