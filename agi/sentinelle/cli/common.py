"""What every command shares: the lazily loaded config and store, the exit
codes, the instant and day parameter types, and the number argument.

Exit codes are a contract other tools rely on: `check` exits 0 on allow, 1
on block, 2 on a usage or config error.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from sentinelle.config import Config, ConfigError, load_config
from sentinelle.core.clock import parse_instant
from sentinelle.core.numbers import Kind, NumberError, parse
from sentinelle.store import AnyStore, StoreError, from_ts, is_postgres, open_store

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

    def store(self, create: bool = True) -> AnyStore:
        c = self.config.store
        if not is_postgres(c):
            refuse_root_on_service_store(c.path)
        return open_store(c, create=create, pool_size=1)

    def professional(self, campaign: str | None) -> str:
        try:
            return self.config.campaign(campaign).professional
        except ConfigError as exc:
            fail(str(exc))


def allow_future_option(enabled: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if not enabled:
        return lambda command: command
    return click.option("--allow-future", is_flag=True,
                        help="Accept instants more than 5 minutes ahead of this host's clock.")


def refuse_root_on_service_store(path: str) -> None:
    """An admin command run as root on the service user's store would leave
    root-owned files beside it (SQLite creates the -wal and -shm files, an
    import a journal): the service could then no longer write, and every call
    would be blocked SYS-STORE. Refuse, and say whom to run as."""
    if path == ":memory:" or os.geteuid() != 0:
        return
    store = Path(path)
    try:
        owner = (store if store.exists() else store.resolve().parent).stat().st_uid
    except OSError:
        return  # the store's own error will say what is wrong
    if owner == 0:
        return
    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    fail(f"running as root on a store owned by {name!r} ({path}): the files SQLite would "
         f"create beside it would belong to root and the service could no longer write "
         f"(every call blocked, SYS-STORE). Run it as the store's owner: "
         f"sudo -u {name} sentinelle ...")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def store_errors() -> Iterator[None]:
    try:
        yield
    except StoreError as exc:
        fail(str(exc), EXIT_BLOCK)


class Instant(click.ParamType):  # type: ignore[type-arg]
    name = "ISO8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 instant (e.g. 2026-12-01T10:30:00+01:00)",
                      param, ctx)


class Day(click.ParamType):  # type: ignore[type-arg]
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


def zone_option(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"--tz {name!r}: unknown time zone (e.g. Europe/Paris, UTC)")


_TIME_KEYS = {"at", "slot_from", "slot_until"}


def in_zone(row: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """A store row with its instants (stored in UTC) shown in `zone` with the
    offset: one rule for every time an admin reads."""
    out = dict(row)
    for key, value in row.items():
        if isinstance(value, str) and (key in _TIME_KEYS or key.endswith("_at")):
            instant = from_ts(value)
            if instant is not None:
                out[key] = instant.astimezone(zone).isoformat(timespec="seconds")
    return out


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[TextIO]:
    """stdout, or a file written beside its final name and renamed once
    complete: an export or a scrub cut short never leaves a plausible-looking
    truncated file behind."""
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    final = Path(path)
    tmp = final.with_name(f".{final.name}.partial")
    try:
        with open(tmp, "w", encoding="utf-8", newline="", buffering=1 << 20) as fh:
            yield fh
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
