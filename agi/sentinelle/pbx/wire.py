"""The AGI protocol's pure part: header names and limits, what goes into a
command, and how a result line is read. No I/O, no asyncio, no panoramisk.

Both transports use it: the FastAGI service (`agi.AgiChannel`, asyncio) and
the classic per-call AGI (`stdio`, blocking reads), so the two cannot read
the same result line differently. It is its own module because the classic
AGI must not import asyncio (~50 ms of every call's start-up) to get at it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

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
REQUEST = "agi_request"  # the classic AGI: the script's path, /dir/<route> (see pbx.classic)
HEADER_PREFIX = "agi_"

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_LINES = 128
MAX_LINE = 4096
MAX_RESULT_LINES = 64  # "100 Trying" and "520-" usage lines before a final result
REASON_MAX = 160
USAGE_START, USAGE_END = "520-", "520 "  # a usage error: lines up to "520 End of proper usage."
_UNSAFE = re.compile(r"[^\x20-\x7e]")
_RESULT = re.compile(r"^[0-9]{3}(?: |$)")  # "200 result=1", "511 ...", "100 Trying"
# The same two patterns panoramisk 1.4's parse_agi_result uses (the FastAGI
# service read results through it until both paths shared this module;
# tests/test_classic_agi.py compares the two on a corpus of lines).
_CODE = re.compile(r"(?P<code>^\d*)\s*(?P<response>.*)")
_KV = re.compile(r"(?P<key>\w+)=(?P<value>[^\s]+)\s*(?:\((?P<data>.*)\))*")
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


def header_line(line: bytes, headers: dict[str, str]) -> bool:
    """Add one `agi_key: value` line to `headers`; False on the blank line
    that ends them. Other lines are ignored, as Asterisk may add some."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    if not text:
        return False
    key, sep, value = text.partition(":")
    if sep and key.startswith(HEADER_PREFIX):
        headers[key.strip()] = value.strip()
    return True


def command_line(cmd: str) -> bytes:
    """The bytes of one AGI command; AgiError if it would be two."""
    if "\n" in cmd or "\r" in cmd:
        raise AgiError("refusing to send a command containing a newline")
    return cmd.encode("ascii", "replace") + b"\n"


def command_name(cmd: str) -> str:
    """What error messages call a command: its first two words."""
    return " ".join(cmd.split()[:2])


def set_variable(name: str, value: str) -> str:
    return f'SET VARIABLE {name} "{ascii_safe(value)}"'


def parse_result(text: str, name: str) -> dict[str, object] | None:
    """One result line for command `name` (without its line end): the result
    as panoramisk shapes it (`status_code`, `result` = (value, data), ...),
    or None for an intermediate "100 Trying". AgiError for a hangup, an
    error code, `result=-1` or an unparsable line. The caller handles
    USAGE_START itself (it must skip the usage text that follows)."""
    if text == "HANGUP":
        raise AgiError(f"AGIResultHangup for {name}: {text!r}")
    if not _RESULT.match(text):
        raise AgiError(f"unparsable AGI result {text[:80]!r}")
    m = _CODE.search(text)
    assert m is not None  # _RESULT matched: three digits
    code = int(m.group("code"))
    result: dict[str, object] = {"status_code": code, "result": ("", ""), "msg": ""}
    if code == 100:
        return None
    if code == 200:
        for key, value, data in _KV.findall(m.group("response") or ""):
            result[key] = (value, data)
            if data == "hangup":
                raise AgiError(f"AGIResultHangup for {name}: {text[:80]!r}")
            if key == "result" and value == "-1":
                raise AgiError(f"AGIAppError for {name}: {text[:80]!r}")
        return result
    kind = {510: "AGIInvalidCommand", 520: "AGIUsageError"}.get(code, "AGIUnknownError")
    raise AgiError(f"{kind} for {name}: {text[:80]!r}")


def variable_value(result: dict[str, object]) -> str:
    """GET VARIABLE's value: "200 result=1 (value)"; "" when not set
    ("200 result=0")."""
    value = result.get("result")
    if not isinstance(value, tuple) or len(value) != 2 or value[0] != "1":
        return ""
    return ascii_safe(str(value[1]), 64).strip()
