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
import os
import stat
from typing import IO, Protocol

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
           "REASON_MAX", "UNIQUEID", "AgiChannel", "AgiError", "FileWriter", "LineWriter",
           "ascii_safe", "is_masked", "read_headers", "stdio_streams"]


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
    """What the AGI dialogue needs of its output: an asyncio.StreamWriter, or
    `FileWriter` when the classic AGI's stdout is a regular file."""

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


# A regular file on stdin is a recorded session, read whole; more than this
# is no AGI session (headers are capped at 16 KiB, answers are a few lines).
MAX_FILE_INPUT = 1024 * 1024


class FileWriter:
    """Blocking writes to a file descriptor the event loop cannot watch (a
    regular file, /dev/null): such a write never waits for a reader, so
    writing synchronously costs the loop nothing."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data)

    async def drain(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


async def stdio_streams(stdin: IO[bytes] | None = None,
                        stdout: IO[bytes] | None = None) -> tuple[asyncio.StreamReader, LineWriter]:
    """Classic AGI's transport: Asterisk runs one process per call and talks
    over its stdin/stdout, which are pipes. asyncio's pipe transports refuse
    anything else (a regular file: ValueError; /dev/null: epoll says EPERM),
    yet `sentinelle agi < session.txt > answers.txt` is how an admin replays
    a session: a file is read whole (it is all there already) and written
    to with blocking writes. A closed stdin/stdout is an OSError."""
    import sys

    for name, given, std in (("stdin", stdin, sys.stdin), ("stdout", stdout, sys.stdout)):
        if given is None and std is None:
            raise OSError(f"{name} is closed")
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    if _pollable(stdin.fileno()):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    else:
        reader.feed_data(_read_file(stdin.fileno()))
        reader.feed_eof()
    if not _pollable(stdout.fileno()):
        return reader, FileWriter(stdout)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), stdout)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _pollable(fd: int) -> bool:
    """Whether the event loop can watch `fd`: pipes, sockets and terminals;
    not regular files, nor /dev/null (a character device epoll refuses)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd))


def _read_file(fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_FILE_INPUT:
        chunk = os.read(fd, MAX_FILE_INPUT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
