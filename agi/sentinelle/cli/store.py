"""`sentinelle store ...`: acting on the store as a whole (moving an install)."""

from __future__ import annotations

import click

from sentinelle.config import ConfigError, StoreConfig, store_at
from sentinelle.store import StoreError, open_store
from sentinelle.store.copy import copy_store


@click.group("store")
def store_group() -> None:
    """The store as a whole: copy an install to another backend."""


def _location(option: str, url: str, password_file: str) -> StoreConfig:
    try:
        return store_at(url, password_file)
    except ConfigError as exc:
        raise click.BadParameter(str(exc).replace("store.url", "URL"), param_hint=option) from None


@store_group.command("copy")
@click.option("--from", "src_url", required=True, metavar="URL",
              help="The store to copy: sqlite:///PATH or postgresql://USER@HOST:PORT/DB.")
@click.option("--to", "dst_url", required=True, metavar="URL",
              help="An empty store to fill (created if needed), same forms.")
@click.option("--password-file", default="", metavar="PATH",
              help="PostgreSQL password (else PGPASSWORD or ~/.pgpass); never in a URL.")
def copy_cmd(src_url: str, dst_url: str, password_file: str) -> None:
    """Copy every table of a store into an empty one, verify the counts, all
    or nothing (exit 0 copied, 2 nothing written). Stop the PBXs' traffic
    first: what the source records during the copy is not copied."""
    src_cfg = _location("--from", src_url, password_file)
    dst_cfg = _location("--to", dst_url, password_file)
    if (src_cfg.url or src_cfg.path) == (dst_cfg.url or dst_cfg.path):
        raise click.BadParameter("the source and the destination are the same store",
                                 param_hint="--to")
    try:
        with open_store(src_cfg, pool_size=1) as src, \
                open_store(dst_cfg, create=True, pool_size=1) as dst:
            copied = copy_store(src, dst, progress=lambda t, n: click.echo(f"  {t}: {n}"))
    except StoreError as exc:
        click.echo(f"store copy: nothing written: {exc}", err=True)
        raise SystemExit(2) from None
    total = sum(copied.values())
    click.echo(f"copied {total} rows from {src_cfg.where} to {dst_cfg.where}; counts verified")
