"""The AGI protocol, the part sentinelle speaks: Asterisk's headers, then
one command and one result line at a time.

panoramisk parses the result lines; the reading is ours because a FastAGI
peer is untrusted input on a socket: headers are capped in size and lines,
result dialogues in length, and whatever goes back into a command is made
ASCII and unable to start a second one.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import unicodedata
from collections.abc import Mapping
from typing import IO, Protocol

from panoramisk.utils import parse_agi_result

from sentinelle.core.model import MASKED_CALLER_IDS

# The headers sentinelle reads (Asterisk sends a few more: agi_language, ...).
ARG_1 = "agi_arg_1"  # AGI(...,NUMBER,CAMPAIGN): the dialled number
ARG_2 = "agi_arg_2"  # the campaign, or empty (then the SENTINELLE_CAMPAIGN channel variable)
# The disposition route: AGI(.../disposition,CODE,ATTEMPT) -- the same two arguments, read as such.
EXTENSION = "agi_extension"  # the dialled number when argument 1 is missing
CALLERID = "agi_callerid"
CALLINGPRES = "agi_callingpres"
CHANNEL = "agi_channel"
UNIQUEID = "agi_uniqueid"
NETWORK_SCRIPT = "agi_network_script"  # the FastAGI route: agi://host:port/<script>
HEADER_PREFIX = "agi_"

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_LINES = 128
MAX_LINE = 4096
MAX_RESULT_LINES = 64  # "100 Trying" and "520-" usage lines before a final result
REASON_MAX = 160
_UNSAFE = re.compile(r"[^\x20-\x7e]")
_RESULT = re.compile(r"^[0-9]{3}(?: |$)")  # "200 result=1", "511 ...", "100 Trying"
# agi_callingpres: bits 0x60 are the presentation indicator (0x20 prohibited,
# 0x40 unavailable); either way the callee sees no number.
_PRES_MASK = 0x60


class AgiError(Exception):
    """The peer broke the AGI protocol; the connection is dropped."""


def ascii_safe(value: str, limit: int = REASON_MAX) -> str:
    """Make a value safe inside `SET VARIABLE name "value"`: ASCII, no
    newline (a second AGI command), no quote or backslash (a broken one)."""
    text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    text = _UNSAFE.sub(" ", text).replace('"', "'").replace("\\", "/")
    return text[:limit]


def is_masked(headers: Mapping[str, str]) -> bool:
    """Whether the callee would see no number: a withheld presentation, or a
    caller ID that is one of the words PBXs put there (the rules' list)."""
    pres = headers.get(CALLINGPRES, "0").strip()
    try:
        masked = (int(pres) & _PRES_MASK) != 0
    except ValueError:
        masked = pres.lower().startswith(("prohib", "unavail"))
    callerid = headers.get(CALLERID, "").strip().lower()
    return masked or not callerid or callerid in MASKED_CALLER_IDS


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
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text:
            return headers
        key, sep, value = text.partition(":")
        if sep and key.startswith(HEADER_PREFIX):
            headers[key.strip()] = value.strip()
    raise AgiError("too many AGI header lines")


class LineWriter(Protocol):
    """What the AGI dialogue needs of its output: an asyncio.StreamWriter, or
    `FileWriter` when the classic AGI's stdout is a regular file."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class AgiChannel:
    """AGI commands on one connection, results parsed by panoramisk."""

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
        if "\n" in cmd or "\r" in cmd:
            raise AgiError("refusing to send a command containing a newline")
        name = " ".join(cmd.split()[:2])
        self.pending = name
        self.writer.write(cmd.encode("ascii", "replace") + b"\n")
        await self.writer.drain()
        result = await self._result(name)
        self.pending = None
        return result

    async def _result(self, name: str) -> dict[str, object]:
        for _ in range(MAX_RESULT_LINES):
            text = await self._line(name)
            if text.startswith("520-"):  # usage error: skip the multi-line usage text
                for _ in range(MAX_RESULT_LINES):
                    if (await self._line(name)).startswith("520 "):
                        break
                raise AgiError(f"AGI usage error for {name}")
            if text != "HANGUP" and not _RESULT.match(text):
                raise AgiError(f"unparsable AGI result {text[:80]!r}")
            try:
                result: dict[str, object] = parse_agi_result(text)
            except (ValueError, TypeError):
                raise AgiError(f"unparsable AGI result {text[:80]!r}") from None
            if result.get("status_code") == 100:
                continue
            if "error" in result:
                raise AgiError(f"{result['error']} for {name}: {text[:80]!r}")
            return result
        raise AgiError(f"too many intermediate AGI results for {name}")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f'SET VARIABLE {name} "{ascii_safe(value)}"')

    async def get_variable(self, name: str) -> str:
        result = (await self.command(f"GET VARIABLE {name}")).get("result")
        if not isinstance(result, tuple) or len(result) != 2 or result[0] != "1":
            return ""  # "200 result=0": the variable is not set
        return ascii_safe(str(result[1]), 64).strip()


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
