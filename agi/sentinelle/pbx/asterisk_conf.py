"""What `serve --check-config` can read of Asterisk's own files.

Asterisk's built-in `disconnect` feature is `*` unless features.conf says
otherwise, and it is live on every channel bridged by a `Dial()` with the
`h` or `H` option. `*` is a prefix of the disposition codes `*81`..`*84`: the
agent who keys a refusal would hang up the call instead, and the refusal is
lost (a breach of R-31 on the next call). Asterisk does not warn about it,
so sentinelle does, when it can read the files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

DEFAULT_DISCONNECT = "*"  # Asterisk's built-in featuremap default
_SECTION = re.compile(r"^\s*\[([^\]]+)\]")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=>?\s*([^,;\s]+)")
_DIAL = re.compile(r"\bDial\(", re.IGNORECASE)


def _strip(line: str) -> str:
    return line.split(";", 1)[0].rstrip()


def featuremap_disconnect(features_conf: str) -> str:
    """The disconnect code in force: features.conf's, else the built-in `*`."""
    section = ""
    for raw in features_conf.splitlines():
        line = _strip(raw)
        if m := _SECTION.match(line):
            section = m.group(1).strip().lower()
        elif section == "featuremap" and (m := _ASSIGN.match(line)) and m.group(1) == "disconnect":
            return m.group(2)
    return DEFAULT_DISCONNECT


def sentinelle_codes(features_conf: str) -> dict[str, str]:
    """Feature name -> code for the sentinelle_* application-map entries."""
    codes = {}
    for raw in features_conf.splitlines():
        line = _strip(raw)
        if (m := _ASSIGN.match(line)) and m.group(1).startswith("sentinelle_"):
            codes[m.group(1)] = m.group(2)
    return codes


def dials_with_disconnect(extensions: Iterable[str]) -> list[str]:
    """`Dial()` calls whose options give a party the disconnect feature."""
    found = []
    for text in extensions:
        for raw in text.splitlines():
            line = _strip(raw)
            for m in _DIAL.finditer(line):
                args = _top_level_args(line, m.end())
                options = args[2] if len(args) > 2 else ""
                if re.search(r"[hH]", _without_parentheses(options)):
                    found.append(f"Dial({','.join(args)})")
    return found


def _top_level_args(line: str, start: int) -> list[str]:
    """The comma-separated arguments of an application call starting at
    `start` (just past its opening parenthesis), nested parentheses kept."""
    args, depth, current = [], 0, ""
    for ch in line[start:]:
        if ch == ")" and depth == 0:
            break
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            args.append(current)
            current = ""
        else:
            current += ch
    return [*args, current]


def _without_parentheses(options: str) -> str:
    """Dial options minus their arguments: `U(sub^h)` has no h option."""
    out, depth = "", 0
    for ch in options:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and ch not in "()":
            out += ch
    return out


def disconnect_conflicts(features_conf: str, extensions: Iterable[str]) -> list[str]:
    """Warnings, one per disposition code the disconnect feature shadows."""
    disconnect = featuremap_disconnect(features_conf)
    dials = dials_with_disconnect(extensions)
    if not dials:
        return []
    return [
        f"features.conf: the disconnect feature {disconnect!r} is a prefix of {name} {code!r}, "
        f"and {dials[0]} enables it (h/H option): the agent keying {code} hangs up instead "
        "of recording the disposition. Set `disconnect => *0` (or another code) in "
        "[featuremap], or drop h/H from Dial()"
        for name, code in sorted(sentinelle_codes(features_conf).items())
        if code.startswith(disconnect)
    ]


def check_asterisk_dir(etc: Path) -> list[str]:
    """Warnings for an Asterisk configuration directory; nothing when the
    files are not readable here (sentinelle may run on another host)."""
    try:
        features = (etc / "features.conf").read_text(errors="replace")
    except OSError:
        return []
    includes = [features]
    for name in re.findall(r"^\s*#include\s+\"?([^\"\s]+)", features, re.M):
        try:
            includes.append((etc / name).read_text(errors="replace"))
        except OSError:
            continue
    extensions = []
    for path in sorted(etc.glob("extensions*.conf")):
        try:
            extensions.append(path.read_text(errors="replace"))
        except OSError:
            continue
    return disconnect_conflicts("\n".join(includes), extensions)
