"""Can the ARI listener log in? Asked by `serve --check-config` and
`listen --check-config` when `[ari] url` is set.

A wrong ARI password used to fail quietly: the listener retried forever
with a warning a minute, while calls went on being allowed and nothing on
the ARI side was followed. Retrying cannot fix credentials, so a refusal
(HTTP 401/403) is an error here, and the check exits 2 naming it. Asterisk
not answering at all is only a warning: the service may well start before
the PBX, and the listener connects once it is up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sentinelle.config import Config
from sentinelle.pbx.ari import AriClient, AriError, auth_refused

PROBE_TIMEOUT_S = 3.0
PROBE_PATH = "/asterisk/info"  # any authenticated ARI resource


@dataclass(frozen=True)
class AriCheck:
    error: str | None = None  # the listener cannot work as configured
    warning: str | None = None  # not checked (Asterisk did not answer)


async def probe(config: Config, timeout: float = PROBE_TIMEOUT_S) -> AriCheck:
    ari = config.ari
    client = AriClient(ari.url, ari.user, ari.password, ari.app, http_timeout=timeout)
    where = f"{client.endpoint.base} as user {client.endpoint.user!r}"
    try:
        await asyncio.wait_for(client.request("GET", PROBE_PATH), timeout + 1)
    except AriError as exc:
        if auth_refused(exc):
            return AriCheck(error=(
                f"ARI at {where} refused the credentials (HTTP {exc.status}): check ari.user "
                "and ari.password (or password_file) against ari.conf; a user or password in "
                "[ari] url must be percent-encoded there"))
        return AriCheck(warning=f"ARI at {where} not checked: {exc}")
    except TimeoutError:
        return AriCheck(warning=f"ARI at {where} not checked: no answer within {timeout:g} s")
    finally:
        await client.aclose()
    return AriCheck()


def check(config: Config, timeout: float = PROBE_TIMEOUT_S) -> AriCheck:
    return asyncio.run(probe(config, timeout))
