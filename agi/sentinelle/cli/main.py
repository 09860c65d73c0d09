"""The `sentinelle` command line: one group, every command added by name.

The commands live in modules named for what they act on (decide, facts,
imports, service, evidence, scrub, store); this module only assembles them, so no command
module imports another and there is no import circle.
"""

from __future__ import annotations

import click

from sentinelle import __version__, logs
from sentinelle.cli import decide, evidence, facts, imports, scrub, service, store
from sentinelle.cli.common import Ctx


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


for command in (
    decide.check_cmd, decide.rules_cmd,
    facts.refusal, facts.consent, facts.contract, facts.optout, facts.history_cmd, facts.init_cmd,
    imports.import_group,
    service.serve_cmd, service.agi_cmd, service.listen_cmd,
    evidence.export_cmd, evidence.explain_cmd, evidence.report_cmd, evidence.audit_cmd,
    evidence.purge_cmd, evidence.forget_cmd,
    scrub.scrub_cmd,
    store.store_group,
):
    main.add_command(command)


def agi_main() -> None:
    """The classic AGI without the command line: `sentinelle-agi` now runs
    `sentinelle.pbx.stdio:main` directly (no click, ~5x faster to start);
    kept for installs whose script still points here."""
    from sentinelle.pbx.stdio import main as stdio_main

    stdio_main()


if __name__ == "__main__":  # pragma: no cover
    main()
