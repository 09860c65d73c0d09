"""A fake Asterisk: the FastAGI client side of the protocol, for fast tests.

It speaks what Asterisk speaks (headers, blank line, then one result line per
command) and records the variables the service sets. It never replaces the
real PBX: tests/e2e drive a real Asterisk for the same paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

_SET = re.compile(r'^SET VARIABLE (\S+) "(.*)"$')
_GET = re.compile(r"^GET VARIABLE (\S+)$")


@dataclass
class AgiResult:
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    closed_by_server: bool = False

    @property
    def verdict(self) -> str | None:
        return self.variables.get("SENTINELLE_VERDICT")


def headers_for(number: str, campaign: str | None = "promo", callerid: str = "0162000000",
                callingpres: int = 0, script: str = "check", **extra: str) -> dict[str, str]:
    headers = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1/{script}",
        "agi_channel": "PJSIP/agent1-00000001",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1700000000.1",
        "agi_version": "22.0.0",
        "agi_callerid": callerid,
        "agi_calleridname": "Agent",
        "agi_callingpres": str(callingpres),
        "agi_context": "outbound",
        "agi_extension": number,
        "agi_priority": "2",
        "agi_arg_1": number,
    }
    if campaign is not None:
        headers["agi_arg_2"] = campaign
    headers.update(extra)
    return headers


def classic_stdin(number: str, campaign: str | None = "promo", answers: int = 5) -> str:
    """What Asterisk writes to a classic AGI process (`AGI(/path/script,...)`):
    the same headers as FastAGI's without the network script, a blank line,
    then one result line per command the process will send."""
    headers = headers_for(number, campaign=campaign)
    headers.pop("agi_network_script")
    return ("".join(f"{k}: {v}\n" for k, v in headers.items()) + "\n"
            + "200 result=1\n" * answers)


async def call(port: int, headers: dict[str, str], *, host: str = "127.0.0.1",
               variables: dict[str, str] | None = None, reply: str = "200 result=1",
               timeout: float = 5.0) -> AgiResult:
    """One FastAGI session as Asterisk would run it."""
    reader, writer = await asyncio.open_connection(host, port)
    result = AgiResult()
    try:
        blob = "".join(f"{k}: {v}\n" for k, v in headers.items()) + "\n"
        writer.write(blob.encode())
        await writer.drain()
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout)
            except ConnectionError:
                line = b""  # a reset is how a server refusing us may close
            if not line:
                result.closed_by_server = True
                break
            command = line.decode().rstrip("\n")
            result.commands.append(command)
            if m := _SET.match(command):
                result.variables[m.group(1)] = m.group(2)
                writer.write((reply + "\n").encode())
            elif m := _GET.match(command):
                value = (variables or {}).get(m.group(1))
                writer.write((f"200 result=1 ({value})\n" if value is not None
                              else "200 result=0\n").encode())
            else:
                writer.write(b"510 Invalid or unknown command\n")
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return result
