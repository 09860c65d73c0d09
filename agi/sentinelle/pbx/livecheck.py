"""What the live Asterisk lacks for sentinelle, asked over ARI by
`serve --check-config` and `listen --check-config` (issue #12, section 4).

Every piece sentinelle needs on the PBX fails quietly when it is missing:
without `[sentinelle-check]` (or the `SENTINELLE_AGI` global) every guarded
call is hung up; without `[sentinelle-disposition]` or a feature code the
agent's `*9` or `*81` records nothing, and the number is called again within
the 60 days of R-31; without `[sentinelle-outcome]` outcomes depend on the
listener again; without `channelvars = SENTINELLE_ATTEMPT` the listener
cannot tell a queue agent's keys from anyone's. Files on the sentinelle host
prove nothing (sentinelle often runs elsewhere, and an edited file may not
be loaded), so the running Asterisk is asked.

How, as verified on Asterisk 22.10 (tests/e2e/test_livecheck_e2e.py):
- `GET /asterisk/variable` reads dialplan globals but evaluates no function
  (it answers "" for `DIALPLAN_EXISTS(...)`): only `SENTINELLE_AGI` is read
  there;
- `GET /channels/{id}/variable` evaluates a function when the name ends in
  `)`, but needs a channel. The check creates one (`POST /channels/create`,
  `Local/s@sentinelle-livecheck`, a context that exists nowhere) in a Stasis
  app of its own, never the listener's (a second client of one app takes its
  events over); the channel is never dialled and is hung up at the end.
  `DIALPLAN_EXISTS(context)` answers for the contexts (the loaded
  dialplan), `AST_CONFIG(features.conf,applicationmap,NAME)` for the feature
  codes (features.conf and its #includes as they are on the PBX's disk: an
  edit not yet reloaded passes); a missing entry is an HTTP 500;
- channelvars: `GET /asterisk/config/dynamic/res_ari/general/general`
  (res_ari's live view of ari.conf `[general]`, a plain read), else the
  probe channel's snapshot (`channelvars` is in it when configured).
  `AST_CONFIG(ari.conf,general,channelvars)` cannot tell "absent" from
  "unreadable".

Creating the channel needs an ARI user with write access (`read_only = no`,
which the listener's event filter needs too): for a read-only user the
contexts and feature codes are reported as not checked, not as missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from sentinelle import logs
from sentinelle.pbx import channelvars
from sentinelle.pbx.ari import AriClient, AriError

log = logging.getLogger("sentinelle.pbx")

# The probe channel's destination: no such context, so even a channel dialled
# by mistake would run nothing.
PROBE_CONTEXT = "sentinelle-livecheck"
ARI_GENERAL = "/asterisk/config/dynamic/res_ari/general/general"
# The whole check: a dozen requests and a websocket, on a PBX that may be busy.
LIVE_TIMEOUT_S = 15.0
# How long the probe channel's end is waited for once hung up.
HANGUP_WAIT_S = 3.0
# Where each fix goes, as README "Install in your PBX" ships it.
EXTENSIONS_FILE = "dialplan/extensions_sentinelle.conf"
FEATURES_FILE = "dialplan/features_sentinelle.conf"


@dataclass(frozen=True)
class LiveCheck:
    missing: tuple[str, ...] = ()  # one line per item: what to add, and where
    not_checked: tuple[str, ...] = ()  # what could not be asked, and why


class NotChecked(Exception):
    """The PBX could not be asked (no channel, an unexpected answer)."""


async def inspect(client: AriClient, *, refusal_dtmf: str, agi_url: str) -> LiveCheck:
    """Ask the PBX behind `client` for everything sentinelle needs.

    `refusal_dtmf` is the code `sentinelle_refusal` must have (`[ari]
    refusal_dtmf`); `agi_url` goes into the line suggested for a missing
    `SENTINELLE_AGI`."""
    missing: list[str] = []
    not_checked: list[str] = []
    if await _global(client, channelvars.AGI_URL) == "":
        missing.append(
            f"missing: the dialplan global {channelvars.AGI_URL}: add "
            f"`{channelvars.AGI_URL}={agi_url}` to [globals] in extensions.conf, then "
            "`dialplan reload` (without it every guarded call is hung up)")
    names = await _ari_channelvars(client)
    try:
        async with probe_channel(client) as snapshot:
            channel_id = str(snapshot["id"])
            if names is None:  # the snapshot has "channelvars" only when some are set
                shown = snapshot.get("channelvars")
                names = set(shown) if isinstance(shown, dict) else set()
            missing += await _contexts(client, channel_id)
            missing += await _features(client, channel_id, refusal_dtmf)
    except NotChecked as exc:
        not_checked.append(f"dialplan contexts and feature codes not checked: {exc}")
    if names is None:
        not_checked.append("ari.conf channelvars not checked: Asterisk does not show res_ari's "
                           "[general] settings")
    elif channelvars.ATTEMPT not in names:
        current = ",".join(sorted(names))
        missing.append(
            f"missing: {channelvars.ATTEMPT} in ari.conf [general] channelvars: add "
            f"`channelvars = {','.join(filter(None, [current, channelvars.ATTEMPT]))}`, then "
            "`module reload res_ari.so` (the listener needs it to tie a queue or conference "
            "agent's keys to the call)")
    return LiveCheck(tuple(missing), tuple(not_checked))


async def report_once(client: AriClient, *, refusal_dtmf: str, agi_url: str,
                      timeout: float) -> None:
    """The running service's report: the unit's pre-start check reads the
    files only (wrong ARI settings must not stop the guard), so once the
    listener is first connected each missing item is logged as a WARNING,
    once. Never raises: a check that cannot run is an INFO line."""
    await client.connected.wait()
    try:
        found = await asyncio.wait_for(
            inspect(client, refusal_dtmf=refusal_dtmf, agi_url=agi_url), timeout)
    except Exception as exc:  # a start-up report must never take the service down
        logs.event(log, "live PBX check not done", reason=client.scrub(f"{type(exc).__name__}: {exc}"))
        return
    for line in found.missing:
        logs.event(log, "the PBX lacks what sentinelle needs", logging.WARNING, item=line)
    for line in found.not_checked:
        logs.event(log, "live PBX check incomplete", reason=line)
    logs.event(log, "live PBX checked", missing=len(found.missing),
               not_checked=len(found.not_checked))


def agi_url(listen: str) -> str:
    """Where the PBX finds `serve`, for the SENTINELLE_AGI line to add: a
    wildcard address is no address to dial."""
    host, _, port = listen.rpartition(":")
    with contextlib.suppress(ValueError):
        if not host or ipaddress.ip_address(host.strip("[]")).is_unspecified:
            host = "ADDRESS-OF-THIS-HOST"
    return f"agi://{host}:{port}"


@contextlib.asynccontextmanager
async def probe_channel(client: AriClient) -> AsyncIterator[dict[str, Any]]:
    """A channel to evaluate functions on: created in a Stasis app that exists
    only while its websocket is open, never dialled, hung up on the way out."""
    app = f"{client.app}-livecheck-{os.getpid()}"
    try:
        async with client.connect_app(app) as ws:
            try:
                snapshot = await client.request(
                    "POST", "/channels/create",
                    params={"endpoint": f"Local/s@{PROBE_CONTEXT}", "app": app})
            except AriError as exc:
                if exc.status == 403:
                    raise NotChecked(
                        f"the ARI user {client.endpoint.user!r} may not create the probe "
                        "channel (read_only = yes in ari.conf?); set read_only = no") from None
                raise NotChecked(str(exc)) from None
            if not isinstance(snapshot, dict) or "id" not in snapshot:
                raise NotChecked(f"POST /channels/create answered {snapshot!r:.200}")
            try:
                yield snapshot
            finally:
                await _hang_up(client, ws, str(snapshot["id"]))
    except NotChecked:
        raise
    except (OSError, TimeoutError, WebSocketException) as exc:  # the probe app's websocket
        raise NotChecked(client.scrub(f"{type(exc).__name__}: {exc}")) from None


async def _hang_up(client: AriClient, ws: ClientConnection, channel_id: str) -> None:
    """Hang the probe channel up and see it end on the app's websocket before
    closing it: an app closed while its channel's last events are on their
    way stays listed by Asterisk 22, inactive, until another app comes or
    goes (seen in about one run in ten)."""
    try:
        await client.request("DELETE", f"/channels/{quote(channel_id, safe='')}", ok=(204, 404))
    except AriError:
        return
    with contextlib.suppress(TimeoutError, WebSocketException):
        async with asyncio.timeout(HANGUP_WAIT_S):
            async for message in ws:
                with contextlib.suppress(ValueError):
                    event = json.loads(message)
                    if (isinstance(event, dict) and event.get("type") == "ChannelDestroyed"
                            and (event.get("channel") or {}).get("id") == channel_id):
                        return


async def _global(client: AriClient, name: str) -> str | None:
    """A dialplan global's value ("" when unset); None when not known."""
    try:
        result = await client.request("GET", "/asterisk/variable", params={"variable": name})
    except AriError:
        return None
    return str(result.get("value", "")) if isinstance(result, dict) else None


async def _ari_channelvars(client: AriClient) -> set[str] | None:
    """The names in ari.conf `[general] channelvars`, live; None if not shown."""
    try:
        attributes = await client.request("GET", ARI_GENERAL)
    except AriError:
        return None
    if not isinstance(attributes, list):
        return None
    for item in attributes:
        if isinstance(item, dict) and item.get("attribute") == "channelvars":
            return {name.strip() for name in str(item.get("value", "")).split(",") if name.strip()}
    return set()


async def _function(client: AriClient, channel_id: str, expression: str) -> str | None:
    """A dialplan function's value on the probe channel; None when Asterisk
    cannot read it (AST_CONFIG of an absent entry is an HTTP 500)."""
    try:
        result = await client.request("GET", f"/channels/{quote(channel_id, safe='')}/variable",
                                      params={"variable": expression})
    except AriError as exc:
        if exc.status == 500:
            return None
        raise NotChecked(str(exc)) from None
    if not isinstance(result, dict):
        raise NotChecked(f"{expression} answered {result!r:.200}")
    return str(result.get("value", ""))


async def _contexts(client: AriClient, channel_id: str) -> list[str]:
    missing = []
    for context in channelvars.CONTEXTS:
        # The context alone: the conference keys' context has digits, not s.
        exists = await _function(client, channel_id, f"DIALPLAN_EXISTS({context})")
        if exists == "":
            raise NotChecked("DIALPLAN_EXISTS answered nothing (func_dialplan not loaded?)")
        if exists != "1":
            missing.append(
                f"missing: the dialplan context [{context}]: add it from {EXTENSIONS_FILE} "
                "(`#include extensions_sentinelle.conf` in extensions.conf), then "
                "`dialplan reload`")
    return missing


async def _features(client: AriClient, channel_id: str, refusal_dtmf: str) -> list[str]:
    missing = []
    for name, (code, _) in channelvars.FEATURES.items():
        dtmf = refusal_dtmf if name == channelvars.FEATURE_REFUSAL else code
        expected = channelvars.feature_line(name, dtmf)
        found = await _function(client, channel_id, f"AST_CONFIG(features.conf,applicationmap,{name})")
        where = f"features.conf [applicationmap] ({FEATURES_FILE}, `#include features_sentinelle.conf`)"
        if found is None:
            missing.append(f"missing: the feature {name} ({dtmf}): add `{expected}` to {where}, "
                           "then `module reload features`")
        elif _squeeze(f"{name} => {found}") != _squeeze(expected):
            missing.append(f"wrong: the feature {name} is `{name} => {found}`: make it "
                           f"`{expected}` in {where}, then `module reload features`")
    return missing


def _squeeze(line: str) -> str:
    """Blanks and letter case apart: a hand-typed `Self` or `gosub` is the
    shipped line as far as this check goes."""
    return "".join(line.split()).lower()
