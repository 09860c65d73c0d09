"""The shipped dialplan and the Python side name the same things.

Asterisk and sentinelle meet only through names: channel variables, the
FastAGI route in the AGI() URL, the user events and their fields, the
disposition codes. A name misspelt on one side fails silently (a verdict
never read is a hang-up for every call; a user event nobody reads is a
refusal never recorded), so this test parses dialplan/*.conf and holds it
against pbx/channelvars.py, the route registry and the listener.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sentinelle.pbx import channelvars, recording
from sentinelle.pbx.listener import DISPOSITIONS
from sentinelle.pbx.routes import ROUTES

DIALPLAN = Path(__file__).resolve().parent.parent / "dialplan"
PBX_SOURCES = Path(channelvars.__file__).parent

_COMMENT = re.compile(r"(?<!\\);.*$")
_VARIABLE = re.compile(r"(?<![A-Za-z0-9])_{0,2}(SENTINELLE_[A-Z0-9_]*[A-Z0-9])")
_ROUTE = re.compile(r"AGI\((?:\$\{" + channelvars.AGI_URL + r"\}|h?agi://[^/,)]*)/([^,)]+)")
_USEREVENT = re.compile(r"UserEvent\(([^,)]+)((?:,[^,)]*)*)\)")
_VERDICT_TEST = re.compile(r'"\$\{' + channelvars.VERDICT + r'\}"\s*!?=\s*"([^"]*)"')
# Both the features' subroutine and the conference one take the code first;
# a subroutine passing its own ${ARG1} on names no code.
_DISPOSITION = re.compile(r"Gosub\(sentinelle-(?:conference-)?disposition,s,1\(([^,)]*)[,)]")


def _code() -> str:
    """The dialplan without its comments (they describe names, code uses them)."""
    files = sorted(DIALPLAN.glob("*.conf"))
    assert files, f"no dialplan in {DIALPLAN}"
    return "\n".join(_COMMENT.sub("", line) for f in files for line in f.read_text().splitlines())


def _constants(test: object) -> dict[str, str]:
    return {name: value for name, value in vars(channelvars).items()
            if name.isupper() and isinstance(value, str) and callable(test) and test(name, value)}


CODE = _code()
VARIABLES = _constants(lambda _n, v: v.startswith("SENTINELLE_"))
ROUTE_NAMES = _constants(lambda n, _v: n.startswith("ROUTE_"))
EVENTS = _constants(lambda n, _v: n.startswith("EVENT_"))
FIELDS = _constants(lambda n, _v: n.startswith("FIELD_"))


def _user_events() -> dict[str, set[str]]:
    events: dict[str, set[str]] = {}
    for name, args in _USEREVENT.findall(CODE):
        fields = {arg.split(":", 1)[0].strip() for arg in args.split(",") if ":" in arg}
        events.setdefault(name.strip(), set()).update(fields)
    return events


def test_the_parser_sees_the_dialplan() -> None:
    """Guards the test itself: a regex that matches nothing would pass all below."""
    assert {"SENTINELLE_VERDICT", "SENTINELLE_ATTEMPT", "SENTINELLE_AGI"} <= set(
        _VARIABLE.findall(CODE))
    assert _ROUTE.findall(CODE) and _user_events() and _VERDICT_TEST.findall(CODE)
    assert _COMMENT.sub("", r"Log(a\;b) ; SENTINELLE_AGI in a comment") == r"Log(a\;b) "


def test_every_dialplan_variable_is_a_constant() -> None:
    unknown = set(_VARIABLE.findall(CODE)) - set(VARIABLES.values())
    assert not unknown, f"SENTINELLE_* variables used by the dialplan but not in channelvars: {unknown}"


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_every_variable_constant_is_used_or_python_only(name: str) -> None:
    value = VARIABLES[name]
    used = value in set(_VARIABLE.findall(CODE))
    assert used != (value in channelvars.PYTHON_ONLY), (
        f"channelvars.{name} = {value!r}: " + ("used by the dialplan, yet listed in PYTHON_ONLY"
                                                if used else "not used by the dialplan; "
                                                "use it or list it in PYTHON_ONLY"))


def test_routes_agree() -> None:
    used = set(_ROUTE.findall(CODE))
    constants = set(ROUTE_NAMES.values())
    assert used <= constants, f"FastAGI routes in the dialplan but not in channelvars: {used - constants}"
    assert constants <= used | channelvars.PYTHON_ONLY, f"routes never called: {constants - used}"
    assert set(ROUTES) == constants, "pbx.routes.ROUTES and the channelvars.ROUTE_* names differ"


def test_user_events_and_their_fields_agree() -> None:
    events = _user_events()
    assert set(events) == set(EVENTS.values()), (set(events), set(EVENTS.values()))
    for event, fields in events.items():
        assert channelvars.FIELD_ATTEMPT in fields, f"{event} carries no {channelvars.FIELD_ATTEMPT}"
    assert channelvars.FIELD_CODE in events[channelvars.EVENT_DISPOSITION]
    used = set().union(*events.values())
    assert set(FIELDS.values()) <= used, set(FIELDS.values()) - used


def test_the_verdict_the_dialplan_waits_for_is_the_one_sent() -> None:
    assert set(_VERDICT_TEST.findall(CODE)) == {channelvars.ALLOW}


def test_disposition_codes_agree() -> None:
    assert set(_DISPOSITION.findall(CODE)) - {"${ARG1}"} == DISPOSITIONS


def _keys(path: Path, entry: re.Pattern[str]) -> dict[str, str]:
    """{DTMF keys: disposition code} of one topology's key map."""
    text = "\n".join(_COMMENT.sub("", line) for line in path.read_text().splitlines())
    return dict(entry.findall(text))


def test_an_agent_keys_the_same_codes_in_a_conference_room() -> None:
    """ConfBridge ignores features.conf: its DTMF menu maps the keys again.
    *83 must mean callback in a room as on a call, and no code be missing."""
    features = _keys(DIALPLAN / "features_sentinelle.conf", re.compile(
        r"^sentinelle_\w+\s*=>\s*([*#0-9]+),self,Gosub\(sentinelle-disposition,s,1\(([^)]*)\)\)",
        re.M))
    menu = _keys(DIALPLAN / "confbridge_sentinelle.conf", re.compile(
        r"^([*#0-9]+)\s*=\s*dialplan_exec\(sentinelle-conference-keys,(\w+),1\)", re.M))
    keys = {exten: code for exten, code in re.findall(
        r"^exten => (\w+),1,Gosub\(sentinelle-conference-disposition,s,1\(([^)]*)\)\)",
        CODE, re.M)}
    assert features and menu and keys
    assert {k: keys.get(exten) for k, exten in menu.items()} == features


def test_pbx_code_names_channel_variables_through_channelvars() -> None:
    """A literal "SENTINELLE_..." string in pbx/ code would bypass this test
    (environment variables aside: Asterisk never sees those)."""
    literal = re.compile(r"""["'](SENTINELLE_[A-Z_]+)["']""")
    environment = {recording.RECORD_ENV}
    offenders = [f"{path.name}: {m.group(0)}"
                 for path in sorted(PBX_SOURCES.rglob("*.py")) if path.name != "channelvars.py"
                 for m in literal.finditer(path.read_text()) if m.group(1) not in environment]
    assert not offenders, offenders


def test_every_topology_enables_all_the_agents_keys() -> None:
    """A feature name misspelt in DYNAMIC_FEATURES is silently no key: each
    example (agent who dials, dialer, transfer) enables every sentinelle
    feature of features_sentinelle.conf."""
    features = set(re.findall(r"^(sentinelle_\w+)\s*=>", (DIALPLAN / "features_sentinelle.conf")
                              .read_text(), re.M))
    enabled = re.findall(r"Set\(DYNAMIC_FEATURES=([^)]*)\)", CODE)
    assert features and len(enabled) >= 3, enabled
    for names in enabled:
        assert set(names.split("#")) == features, names


def test_the_sentinelle_contexts_are_the_constants() -> None:
    """`serve --check-config` asks the live Asterisk for channelvars.CONTEXTS,
    the contexts of the file every install includes (the topology examples
    are optional): a context added there must be asked for too."""
    required = "\n".join(_COMMENT.sub("", line) for line in
                         (DIALPLAN / "extensions_sentinelle.conf").read_text().splitlines())
    assert set(re.findall(r"^\[([^\]]+)\]", required, re.M)) == set(channelvars.CONTEXTS)
    for context in channelvars.CONTEXTS:
        assert re.search(rf"^\[{context}\]\nexten => \w+,1,", required, re.M), context


def test_the_feature_lines_are_the_constants() -> None:
    """`serve --check-config` prints channelvars.feature_line() as the line to
    add: it must be the shipped line, and the refusal's code the default
    `[ari] refusal_dtmf`."""
    from sentinelle.config import AriConfig

    shipped = (DIALPLAN / "features_sentinelle.conf").read_text()
    lines = {m.group(1): m.group(0) for m in re.finditer(r"^(sentinelle_\w+) => .*$", shipped, re.M)}
    assert set(lines) == set(channelvars.FEATURES)
    for name, line in lines.items():
        assert line == channelvars.feature_line(name)
    assert channelvars.FEATURES[channelvars.FEATURE_REFUSAL][0] == AriConfig().refusal_dtmf
    assert {disposition for _, disposition in channelvars.FEATURES.values()} == DISPOSITIONS
