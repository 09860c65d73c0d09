"""The AGI protocol, the part sentinelle speaks: Asterisk's headers, then
one command and one result line at a time, over asyncio streams.

The reading is ours because a FastAGI peer is untrusted input on a socket:
headers are capped in size and lines, result dialogues in length, and
whatever goes back into a command is made ASCII and unable to start a second
one. The pure part (names, limits, result parsing) is in `wire`, shared with
the classic AGI, which reads the same lines without asyncio.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sentinelle.pbx import wire
from sentinelle.pbx.wire import (
    ARG_1,
    ARG_2,
    CALLERID,
    CALLINGPRES,
    CHANNEL,
    EXTENSION,
    HEADER_PREFIX,
    MAX_HEADER_BYTES,
    MAX_HEADER_LINES,
    MAX_LINE,
    MAX_RESULT_LINES,
    NETWORK_SCRIPT,
    REASON_MAX,
    UNIQUEID,
    AgiError,
    ascii_safe,
    is_masked,
)

# The routes and the server use these as agi.*; they are defined in `wire`.
__all__ = ["ARG_1", "ARG_2", "CALLERID", "CALLINGPRES", "CHANNEL", "EXTENSION", "HEADER_PREFIX",
           "MAX_HEADER_BYTES", "MAX_HEADER_LINES", "MAX_LINE", "MAX_RESULT_LINES", "NETWORK_SCRIPT",
           "REASON_MAX", "UNIQUEID", "AgiChannel", "AgiError", "LineWriter", "ascii_safe",
           "is_masked", "read_headers"]


async def read_headers(reader: asyncio.StreamReader) -> dict[str, str] | None:
    """AGI environment: `agi_key: value` lines up to a blank line. Returns
    None on an immediate close; raises AgiError on oversize or a close mid-way."""
    headers: dict[str, str] = {}
    total = 0
    for _ in range(MAX_HEADER_LINES + 1):
        try:
            line = await reader.readline()
        except ValueError as exc:  # line longer than the stream limit
            raise AgiError(f"header line too long: {exc}") from None
        if not line:
            if not headers and total == 0:
                return None
            raise AgiError("connection closed inside the AGI headers")
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise AgiError("AGI headers too large")
        if not wire.header_line(line, headers):
            return headers
    raise AgiError("too many AGI header lines")


class LineWriter(Protocol):
    """What the AGI dialogue needs of its output (an asyncio.StreamWriter)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class AgiChannel:
    """AGI commands on one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: LineWriter) -> None:
        self.reader = reader
        self.writer = writer
        # The command whose result is awaited: a deadline passing while it is
        # set means the dialogue is lost (the next line would be its answer).
        self.pending: str | None = None

    async def _line(self, name: str) -> str:
        try:
            line = await self.reader.readline()
        except ValueError:  # longer than the stream limit
            raise AgiError(f"AGI result line too long for {name}") from None
        if not line:
            raise AgiError(f"connection closed waiting for the result of {name}")
        return line.decode("utf-8", errors="replace").rstrip("\r\n")

    async def command(self, cmd: str) -> dict[str, object]:
        data = wire.command_line(cmd)
        name = wire.command_name(cmd)
        self.pending = name
        self.writer.write(data)
        await self.writer.drain()
        result = await self._result(name)
        self.pending = None
        return result

    async def _result(self, name: str) -> dict[str, object]:
        for _ in range(MAX_RESULT_LINES):
            text = await self._line(name)
            if text.startswith(wire.USAGE_START):  # skip the multi-line usage text
                for _ in range(MAX_RESULT_LINES):
                    if (await self._line(name)).startswith(wire.USAGE_END):
                        break
                raise AgiError(f"AGI usage error for {name}")
            result = wire.parse_result(text, name)
            if result is not None:
                return result
        raise AgiError(f"too many intermediate AGI results for {name}")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(wire.set_variable(name, value))

    async def get_variable(self, name: str) -> str:
        return wire.variable_value(await self.command(f"GET VARIABLE {name}"))
