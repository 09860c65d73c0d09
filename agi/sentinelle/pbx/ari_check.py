"""Can the ARI listener log in? Asked by `serve --check-config` and
`listen --check-config` when `[ari] url` is set.

A wrong ARI password used to fail quietly: the listener retried forever
with a warning a minute, while calls went on being allowed and nothing on
the ARI side was followed. Retrying cannot fix credentials, so a refusal
(HTTP 401/403) is an error here, and the check exits 2 naming it. Asterisk
not answering at all is only a warning: the service may well start before
the PBX, and the listener connects once it is up.

Once logged in, the live PBX is asked what sentinelle needs of it (contexts,
feature codes, channelvars: pbx/livecheck.py); each missing item is a line,
and any makes the check exit 2 like a refused password.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sentinelle.config import Config
from sentinelle.pbx.ari import AriClient, AriError, auth_refused
from sentinelle.pbx.livecheck import LIVE_TIMEOUT_S, agi_url, inspect

PROBE_TIMEOUT_S = 3.0
PROBE_PATH = "/asterisk/info"  # any authenticated ARI resource


@dataclass(frozen=True)
class AriCheck:
    error: str | None = None  # the listener cannot work as configured
    warnings: tuple[str, ...] = ()  # not checked (Asterisk did not answer, or could not tell)
    missing: tuple[str, ...] = ()  # what the live PBX lacks, one line each


async def probe(config: Config, timeout: float = PROBE_TIMEOUT_S,
                live_timeout: float = LIVE_TIMEOUT_S) -> AriCheck:
    ari = config.ari
    client = AriClient(ari.url, ari.user, ari.password, ari.app, http_timeout=timeout,
                       open_timeout=timeout)
    where = f"{client.endpoint.base} as user {client.endpoint.user!r}"
    unchecked = "not checked (nor the dialplan contexts, feature codes and channelvars)"
    try:
        try:
            await asyncio.wait_for(client.request("GET", PROBE_PATH), timeout + 1)
        except AriError as exc:
            if auth_refused(exc):
                return AriCheck(error=(
                    f"ARI at {where} refused the credentials (HTTP {exc.status}): check "
                    "ari.user and ari.password (or password_file) against ari.conf; a user or "
                    "password in [ari] url must be percent-encoded there"))
            return AriCheck(warnings=(f"ARI at {where} {unchecked}: {exc}",))
        except TimeoutError:
            return AriCheck(warnings=(f"ARI at {where} {unchecked}: no answer within "
                                      f"{timeout:g} s",))
        try:
            found = await asyncio.wait_for(
                inspect(client, refusal_dtmf=ari.refusal_dtmf,
                        agi_url=agi_url(config.server.listen)), live_timeout)
        except TimeoutError:
            return AriCheck(warnings=(f"ARI at {where}: the live PBX check got no answer within "
                                      f"{live_timeout:g} s: contexts, feature codes and "
                                      "channelvars not checked",))
        return AriCheck(warnings=tuple(f"ARI at {where}: {line}" for line in found.not_checked),
                        missing=found.missing)
    finally:
        await client.aclose()


def check(config: Config, timeout: float = PROBE_TIMEOUT_S) -> AriCheck:
    return asyncio.run(probe(config, timeout))
