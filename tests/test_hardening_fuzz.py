"""Bad input, fuzzed: the FastAGI protocol and the import files.

A running FastAgiServer (in a thread, with a real SQLite store) gets random
and mutated AGI header blocks, binary garbage, blocks without their blank
line, oversized blocks, non-UTF-8, clients that vanish, and every kind of
unexpected AGI answer (`200 result=-1`, `511`, multi-line `520-` usage
errors, `HANGUP` mid-command, garbage, over-long lines, silence). For each
case: no crash, no hang, every line the server writes is one well-formed
`SET VARIABLE SENTINELLE_* "..."` or `GET VARIABLE` command (no injection),
the verdict is written last, an ALLOW only ever comes from a legal path
(R-00 short number or a non-prospecting campaign), the server stops talking
after an error answer, and the next well-formed request is answered right.
The number of cases is printed at the end (SENTINELLE_FUZZ_EXAMPLES scales it).

Import files (Bloctel lists and consent CSVs with BOM, CRLF, mixed
separators, duplicates, bad lines, non-UTF-8) are fuzzed against an oracle
built from how each line was generated: either exactly the valid lines are
imported, or the import is rejected naming exactly the bad lines and nothing
changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import struct
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sentinelle.pbx.agi as agi
import sentinelle.pbx.session as agi_session
from sentinelle.config import load_config, parse_config
from sentinelle.core.clock import frozen
from sentinelle.core.numbers import Kind, NumberError, parse
from sentinelle.guard import Request, check
from sentinelle.imports import ImportRejected, bloctel_number, import_bloctel, import_csv
from sentinelle.logs import JsonFormatter
from sentinelle.pbx.server import FastAgiServer
from sentinelle.store import e164_int, open_store
from tests.helpers.fakeasterisk import headers_for
from tests.helpers.hardening_support import report
from tests.helpers.pgserver import fresh_store

PARIS = ZoneInfo("Europe/Paris")
TUESDAY = datetime(2026, 12, 1, 10, 30, tzinfo=PARIS)
EXAMPLES = int(os.environ.get("SENTINELLE_FUZZ_EXAMPLES", "250"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
)
CLIENT_TIMEOUT_S = 6.0  # far above every server deadline below: hitting it is a hang

FUZZ_CONFIG = """
[store]
path = "fuzz.db"
busy_timeout_ms = 300

[professionals.acme]

[campaigns.promo]
professional = "acme"

[campaigns.svc]
professional = "acme"
purpose = "service"

[server]
listen = "127.0.0.1:0"
header_timeout_s = 0.2
request_timeout_s = 1.0
"""

_COMMAND = re.compile(rb'^(SET VARIABLE (SENTINELLE_[A-Z_]+) "([\x20\x21\x23-\x5b\x5d-\x7e]*)"'
                      rb"|GET VARIABLE SENTINELLE_CAMPAIGN)$")
_VARS = ("SENTINELLE_RULES", "SENTINELLE_REASON", "SENTINELLE_RETRY_AT", "SENTINELLE_ATTEMPT",
         "SENTINELLE_VERDICT")

COUNTS: dict[str, int] = {}


def _count(what: str, n: int = 1) -> None:
    COUNTS[what] = COUNTS.get(what, 0) + n


# -- the server under test, in its own thread ---------------------------------

class ServerThread:
    def __init__(self, config) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = FastAgiServer(config, frozen(TUESDAY))
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-fastagi",
                                       daemon=True)
        self.port = 0

    def __enter__(self) -> ServerThread:
        self.thread.start()
        _, self.port = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Unexpected(logging.Handler):
    """Formats every record as the service does (JSON, one line) and collects
    `log.exception` records (an exception nobody expected) and forged lines:
    attacker-controlled values (numbers, caller IDs, campaigns, routes) are
    logged, and must never be able to start a second log line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.records: list[logging.LogRecord] = []
        self.forged: list[str] = []
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)
        line = self.format(record)
        self.lines += 1
        try:
            ok = "\n" not in line and "\r" not in line and isinstance(json.loads(line), dict)
        except ValueError:
            ok = False
        if not ok:
            self.forged.append(line[:300])


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "sentinelle.toml").write_text(FUZZ_CONFIG)
    config = load_config(str(tmp / "sentinelle.toml"))
    open_store(config.store, create=True).close()
    unexpected = Unexpected()
    logger = logging.getLogger("sentinelle")
    logger.addHandler(unexpected)
    saved_level = logger.level
    logger.setLevel(logging.INFO)
    answer_min = agi_session.ANSWER_MIN_S
    agi_session.ANSWER_MIN_S = 0.2  # silent peers cost 0.2 s per case instead of 1 s
    try:
        with ServerThread(config) as srv:
            yield srv, unexpected
            stats = srv.server.stats
    finally:
        agi_session.ANSWER_MIN_S = answer_min
        logger.removeHandler(unexpected)
        logger.setLevel(saved_level)
    COUNTS["log_lines_checked"] = unexpected.lines
    COUNTS.update({"server_connections": stats.connections, "server_bad_headers": stats.bad_headers,
                   "server_timeouts": stats.timeouts, "server_allow": stats.decisions["allow"],
                   "server_block": stats.decisions["block"]})


@pytest.fixture(scope="module", autouse=True)
def _fuzz_report(request):
    yield
    cases = sum(v for k, v in COUNTS.items()
                if k.endswith("_cases") or k.endswith(("_imported", "_rejected")))
    summary = ", ".join(f"{k}={v}" for k, v in sorted(COUNTS.items()))
    report(request, f"hardening fuzz: {cases} cases ({summary})")


# -- a raw AGI peer -----------------------------------------------------------

CLOSE, SILENCE = b"<close>", b"<silence>"


@dataclass
class Session:
    commands: list[bytes] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)  # index of the response used per command

    def variables(self) -> dict[str, str]:
        out = {}
        for c in self.commands:
            m = _COMMAND.match(c)
            if m and m.group(2):
                out[m.group(2).decode()] = m.group(3).decode()
        return out


def session(port: int, payload: bytes, ending: str = "blank",
            responses: list[list[bytes]] | None = None, campaign_var: bytes = b"promo") -> Session:
    """Send `payload`, end the header phase as `ending` says, then answer each
    command with the next response (a list of lines), or `200 result=1`."""
    out = Session()
    responses = list(responses or [])
    sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S)
    try:
        try:
            sock.sendall(payload)
            if ending == "blank":
                sock.sendall(b"\n")
            elif ending == "halfclose":
                sock.shutdown(socket.SHUT_WR)
            elif ending == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return out
        except OSError:  # broken pipe, reset, not connected: the server already gave up on us
            return out
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"server hung: no answer and no close after "
                                     f"{CLIENT_TIMEOUT_S}s; commands so far {out.commands}") from None
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                out.commands.append(line)
                if line.startswith(b"GET VARIABLE"):
                    default = [b"200 result=1 (" + campaign_var + b")\n"]
                else:
                    default = [b"200 result=1\n"]
                response = responses.pop(0) if responses else default
                out.answered.append(len(out.commands) - 1)
                if response == [CLOSE]:
                    return out
                if response == [SILENCE]:
                    continue
                try:
                    sock.sendall(b"".join(response))
                except (BrokenPipeError, ConnectionResetError):
                    return out
    finally:
        sock.close()
    return out


def headers_blob(headers: dict[str, str]) -> bytes:
    return "".join(f"{k}: {v}\n" for k, v in headers.items()).encode("utf-8", "surrogateescape")


def control(port: int) -> None:
    """The well-formed requests that must still be answered right after any case."""
    allow = session(port, headers_blob(headers_for("0612345678", campaign="svc")))
    v = allow.variables()
    assert v.get("SENTINELLE_VERDICT") == "ALLOW" and v.get("SENTINELLE_RULES", "") == "", allow.commands
    block = session(port, headers_blob(headers_for("0612345678", campaign="promo")))
    v = block.variables()
    assert v.get("SENTINELLE_VERDICT") == "BLOCK" and v.get("SENTINELLE_RULES", "") == "R-11", block.commands
    _count("control_requests", 2)


def check_output(s: Session) -> None:
    """What the server wrote: well-formed commands only, verdict last, and
    an ALLOW only on a legal path (nothing here has consent or a contract)."""
    for c in s.commands:
        assert _COMMAND.match(c), f"malformed or injected command from the server: {c!r}"
    names = [m.group(2) for c in s.commands if (m := _COMMAND.match(c)) and m.group(2)]
    if b"SENTINELLE_VERDICT" in names:
        assert names[-1] == b"SENTINELLE_VERDICT" and names.count(b"SENTINELLE_VERDICT") == 1
        # Only non-empty values are sent (the dialplan cleared them all), in order, once each.
        order = [n.decode() for n in names]
        assert order == [n for n in _VARS if n in order], names
        v = s.variables()
        assert all(value.strip() for value in v.values()), v
        if v["SENTINELLE_VERDICT"] == "ALLOW":
            assert v.get("SENTINELLE_RULES", "") == ""
            reason = v.get("SENTINELLE_REASON", "")
            assert "R-00" in reason or "purpose service" in reason, v
            _count("allow")
        else:
            assert v["SENTINELLE_VERDICT"] == "BLOCK" and v.get("SENTINELLE_RULES", ""), v
            _count("block")
    else:
        _count("no_verdict")


def _no_unexpected(unexpected: Unexpected) -> None:
    assert not unexpected.forged, f"a log record did not stay one JSON line: {unexpected.forged[0]}"
    if unexpected.records:
        rec = unexpected.records[0]
        text = logging.Formatter().formatException(rec.exc_info) if rec.exc_info else ""
        raise AssertionError(f"unexpected exception in the server: {rec.getMessage()}\n{text}")


# -- strategies -----------------------------------------------------------------

NUMBERS = st.one_of(
    st.sampled_from(["0612345678", "06 12 34 56 78", "+33612345678", "0033612345678", "112",
                     "15", "3949", "0692123456", "06ABC", "", "0", "+", "+4420",
                     "０６１２３４５６７８", "٠٦١٢٣٤٥٦٧٨", "06\u200b12345678", "0" * 200,
                     "9" * 3000, "0612345678\x00", "0612345678;HANGUP"]),
    st.text(max_size=40),
    st.from_regex(r"\+?[0-9 .\-]{0,20}", fullmatch=True),
)
CAMPAIGNS = st.one_of(st.sampled_from(["promo", "svc", "", "unknown", 'promo" EXEC', "promo\r",
                                       "svc\\", "é" * 100]), st.text(max_size=20))
SAFE_TEXT = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
                    max_size=60)


@st.composite
def agi_headers(draw, value=SAFE_TEXT) -> dict[str, str]:
    campaign = draw(st.one_of(st.none(), CAMPAIGNS))
    h = headers_for(draw(NUMBERS), campaign=campaign,
                    callerid=draw(st.one_of(st.sampled_from(["0162000000", "0612000000", "",
                                                             "anonymous", '"Boss" <0162000000>']),
                                            value)),
                    callingpres=draw(st.sampled_from([0, 1, 32, 35, 67, 255, -1, 2**40])))
    h["agi_calleridname"] = draw(value)
    for _ in range(draw(st.integers(0, 4))):
        h[draw(st.sampled_from(["agi_", "agi_x", "agi_arg_3", "agi_enhanced", "agi_dnid",
                                "agi_network_script", "agi_arg_1", "x_other", "agi_arg_2"]))] = \
            draw(value)
    return {k.replace("\n", " "): v.replace("\n", " ") for k, v in h.items()}


@st.composite
def mutated(draw) -> bytes:
    """A real header block, then random byte-level damage."""
    blob = bytearray(headers_blob(draw(agi_headers())) + b"\n")
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup", "crlf", "truncate",
                                   "nonutf8", "nul", "huge"]))
        pos = draw(st.integers(0, max(0, len(blob) - 1)))
        if op == "flip" and blob:
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            blob[pos:pos] = draw(st.binary(max_size=64))
        elif op == "delete":
            del blob[pos:pos + draw(st.integers(1, 64))]
        elif op == "dup":
            end = blob.find(b"\n", pos)
            line = blob[pos:end + 1 if end >= 0 else len(blob)]
            blob[pos:pos] = line * draw(st.integers(1, 200))
        elif op == "crlf":
            blob = bytearray(blob.replace(b"\n", b"\r\n"))
        elif op == "truncate":
            del blob[pos:]
        elif op == "nonutf8":
            blob[pos:pos] = draw(st.sampled_from([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x80" * 9]))
        elif op == "nul":
            blob[pos:pos] = b"\x00"
        elif op == "huge":
            blob[pos:pos] = b"agi_x: " + b"A" * draw(st.sampled_from([4000, 5000, 20000])) + b"\n"
    return bytes(blob)


@st.composite
def huge_block(draw) -> bytes:
    base = headers_blob(headers_for("0612345678"))
    kind = draw(st.sampled_from(["many_lines", "long_line", "big_total", "exactly_limits"]))
    if kind == "many_lines":
        return base + b"".join(b"agi_x%d: y\n" % i for i in range(draw(st.integers(100, 3000))))
    if kind == "long_line":
        return base + b"agi_arg_3: " + b"z" * draw(st.integers(4000, 70000)) + b"\n"
    if kind == "big_total":
        return base + b"agi_pad: " + b"p" * 3000 + b"\n" * 0 + b"\n".join(
            b"agi_p%d: " % i + b"q" * 3000 for i in range(draw(st.integers(5, 40)))) + b"\n"
    return base + b"".join(b"agi_l%d: " % i + b"w" * 100 + b"\n" for i in range(100))


PAYLOADS = st.one_of(
    st.binary(max_size=3000),
    st.binary(min_size=1, max_size=200).map(lambda b: b * 50),
    mutated(),
    agi_headers(value=st.text(max_size=80)).map(headers_blob),  # values may hold newlines
    huge_block(),
    st.lists(st.binary(max_size=80), max_size=60).map(b"\n".join),
)
ENDINGS = st.sampled_from(["blank"] * 6 + ["halfclose"] * 3 + ["reset"] * 2 + ["none"])

OK = [[b"200 result=1\n"], [b"200 result=0\n"], [b"200\n"], [b"200 result=1 (x)\r\n"],
      [b"100 result=0 Trying...\n", b"200 result=1\n"]]
ERRORS = [
    [b"200 result=-1\n"],
    [b"511 Command Not Permitted on a dead channel or intercept routine\n"],
    [b"520-Invalid command syntax.  Proper usage follows:\n",
     b"Usage: SET VARIABLE <variablename> <value>\n", b"  Sets a variable.\n",
     b"520 End of proper usage.\n"],
    [b"520-Invalid command syntax.  Proper usage follows:\n"] + [b"more usage\n"] * 80,
    [b"520 Invalid command syntax.\n"],
    [b"510 Invalid or unknown command\n"],
    [b"HANGUP\n"],
    [b"200 result=1 (hangup)\n"],
    [b"garbage\n"],
    [b"\xff\xfe\x00 binary\n"],
    [b"\xd9\xa2\xd9\xa0\xd9\xa0 result=1\n"],  # "200" in Arabic-Indic digits
    [b"2" * 10000 + b"\n"],
    [b"100 result=0 Trying...\n"] * 70,
    [b"100 result=0 Trying...\n", b"HANGUP\n"],
    [CLOSE],
    [SILENCE],
    [SILENCE],
]
RESPONSES = st.one_of(st.sampled_from(OK), st.sampled_from(ERRORS),
                      st.binary(max_size=100).filter(lambda b: b"\n" not in b)
                      .map(lambda b: [b + b"\n"]))


def _is_ok(response: list[bytes]) -> bool:
    return response in OK


# -- the FastAGI fuzz tests -------------------------------------------------------

@FUZZ_SETTINGS
@given(payload=PAYLOADS, ending=ENDINGS)
def test_fuzz_headers_garbage_and_mutations(fuzz_server, payload, ending):
    srv, unexpected = fuzz_server
    s = session(srv.port, payload, ending)
    _count("header_cases")
    check_output(s)
    _no_unexpected(unexpected)
    control(srv.port)


@FUZZ_SETTINGS
@given(headers=agi_headers(), responses=st.lists(RESPONSES, max_size=7),
       campaign_var=st.sampled_from([b"promo", b"svc", b"", b"x\" HANGUP", b"\xff"]))
def test_fuzz_agi_responses(fuzz_server, headers, responses, campaign_var):
    """Well-formed headers, then arbitrary answers to each command: after an
    error answer the server sends nothing more; with only good answers a
    request within the size limits always gets its verdict."""
    srv, unexpected = fuzz_server
    blob = headers_blob(headers)
    s = session(srv.port, blob, "blank", responses, campaign_var)
    _count("response_cases")
    check_output(s)
    used = responses[:len(s.commands)]
    for i, response in enumerate(used[:-1]):
        assert _is_ok(response), (f"server sent command {i + 2} after the error answer "
                                  f"{response!r}: {s.commands}")
    lines = blob.split(b"\n")
    within_limits = (len(blob) + 1 <= agi.MAX_HEADER_BYTES and len(lines) <= agi.MAX_HEADER_LINES
                     and all(len(line) < agi.MAX_LINE for line in lines))
    routed = headers.get("agi_network_script", "").strip().strip("/") == "check"
    if within_limits and routed and all(_is_ok(r) for r in responses):  # missing answers are ok
        assert s.variables().get("SENTINELLE_VERDICT") in ("ALLOW", "BLOCK"), s.commands
        _count("verdicts_checked")
    _no_unexpected(unexpected)
    control(srv.port)


def test_slow_drip_and_pipelined_hangup(fuzz_server):
    """Headers one byte at a time past the deadline, and a HANGUP pipelined
    right behind the headers (read as the answer to the first command)."""
    srv, unexpected = fuzz_server
    blob = headers_blob(headers_for("0612345678", campaign="svc"))
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=CLIENT_TIMEOUT_S)
    t0 = time.monotonic()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for b in blob:
            sock.sendall(bytes([b]))
            time.sleep(0.01)
            if time.monotonic() - t0 > 1.0:
                break
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(100) == b""
    sock.close()
    s = session(srv.port, blob + b"\nHANGUP\n", "none")
    assert len(s.commands) == 1 and s.variables().get("SENTINELLE_VERDICT") is None
    _no_unexpected(unexpected)
    control(srv.port)
    _count("scripted_cases", 2)


# -- import files ---------------------------------------------------------------

# (text as written, E.164 as an int) for Bloctel lines that must be accepted.
VALID_BLOCTEL = [
    ("0612345678", 33612345678), ("06 12 34 56 79", 33612345679), ("+33612345680", 33612345680),
    ("0033612345681", 33612345681), ("06.12.34.56.82", 33612345682), ("0692123456", 262692123456),
    ("0596123456", 596596123456), ("0142000000", 33142000000), ("0612345678;extra", 33612345678),
    ("0612345683,a,b", 33612345683), ("0612345684\tx", 33612345684), ("  0612345685  ", 33612345685),
]
INVALID_BLOCTEL = ["06ABC", "112", "+4420", "0612", "hello", "０６１２３４５６７８", "0612345678x",
                   "0６１２３４５６７８", "0٦١٢٣٤٥٦٧٨",
                   "33612345678", "\xff\xfe", "+", "9" * 70]


@st.composite
def bloctel_file(draw):
    """Lines labelled valid / invalid / blank; returns (bytes, expected set,
    1-based numbers of the invalid lines, those of them that are not UTF-8)."""
    bom = draw(st.booleans())
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    header = draw(st.sampled_from([None, "numero", "numéro;date"]))
    lines: list[bytes] = []
    expected: set[int] = set()
    bad: list[int] = []
    not_utf8: list[int] = []
    if header:
        lines.append(header.encode())
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["valid"] * 6 + ["invalid", "blank"]))
        if kind == "valid":
            text, number = draw(st.sampled_from(VALID_BLOCTEL))
            lines.append(text.encode())
            expected.add(number)
        elif kind == "invalid":
            text = draw(st.sampled_from(INVALID_BLOCTEL))
            if not lines and not any(c.isdigit() for c in text):
                text = "x1" + text  # a digit-less first line is a header, by design
            raw = text.encode("latin-1") if text == "\xff\xfe" else text.encode()
            lines.append(raw)
            bad.append(len(lines))
            if text == "\xff\xfe":
                not_utf8.append(len(lines))
        else:
            lines.append(draw(st.sampled_from([b"", b"   ", b"\t"])))
    data = eol.join(lines) + (eol if lines and draw(st.booleans()) else b"")
    return (b"\xef\xbb\xbf" if bom else b"") + data, expected, bad, not_utf8


def _snapshot_numbers(store) -> set[int] | None:
    snaps = store.snapshots("acme")
    if not snaps:
        return None
    table = f"bloctel_{int(snaps[0].id)}"
    return set(store.run(lambda c: [r[0] for r in c.execute(f"SELECT e164 FROM {table}")]))  # noqa: S608 - int id


@settings(max_examples=max(50, EXAMPLES // 2), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bloctel_file(), skip_invalid=st.booleans())
def test_fuzz_bloctel_import_all_or_nothing(tmp_path_factory, request, backend, case,
                                            skip_invalid):
    data, expected, bad, not_utf8 = case
    tmp = tmp_path_factory.mktemp("bloctel")
    store = open_store(fresh_store(backend, request, tmp / "s.db"), create=True)
    try:
        before = tmp / "before.txt"
        before.write_text("0699999999\n")
        import_bloctel(store, "acme", before, date(2026, 7, 1), "opposed")
        f = tmp / "list.txt"
        f.write_bytes(data)
        # A bad line aborts unless skipped; bytes that are not UTF-8 (not a
        # text file) and a file without one valid number abort in any case.
        first_bad = bad[0] if bad and not skip_invalid else (not_utf8 or [None])[0]
        if first_bad is not None or not expected:
            with pytest.raises(ImportRejected) as exc:
                import_bloctel(store, "acme", f, date(2026, 7, 2), "opposed",
                               skip_invalid=skip_invalid)
            if first_bad is not None:
                assert exc.value.errors[0].line == first_bad
                assert f"line {first_bad}:" in str(exc.value)
            else:
                assert "no valid number" in str(exc.value)
            assert _snapshot_numbers(store) == {33699999999}  # previous snapshot untouched
            assert store.snapshots("acme")[0].snapshot_date == date(2026, 7, 1)
            _count("bloctel_rejected")
        else:
            res = import_bloctel(store, "acme", f, date(2026, 7, 2), "opposed",
                                 skip_invalid=skip_invalid)
            assert [e.line for e in res.skipped] == bad
            assert res.count == len(expected)
            assert _snapshot_numbers(store) == expected
            _count("bloctel_imported")
        loading = store.run(lambda c: c.execute(
            "SELECT count(*) FROM bloctel_snapshots WHERE state='loading'").fetchone()[0])
        assert loading == 0
    finally:
        store.close()


CSV_CONFIG = """
[professionals.acme]
[campaigns.promo]
professional = "acme"
"""


@st.composite
def consent_csv(draw):
    sep = draw(st.sampled_from([",", ";", "\t"]))
    other = {",": ";", ";": "\t", "\t": ","}[sep]
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    header = ["number", "campaign", "given_at", "source"]
    lines = [sep.join(header)]
    good = 0
    bad: list[int] = []
    last_valid: str | None = None
    for i in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["valid"] * 40 + ["dup"] * 3 + ["blank"] * 2 + [
            "bad_number", "no_source", "bad_date", "mixed", "unknown_campaign", "short"]))
        row = [f"06123{i:05d}", "promo", "2026-11-01T10:00:00+01:00", "web-form"]
        if kind == "dup":
            if last_valid is None:
                continue
            lines.append(last_valid)  # the same consent twice: two proofs, both kept
            good += 1
            continue
        if kind == "blank":
            lines.append("")
            continue
        if kind == "bad_number":
            row[0] = draw(st.sampled_from(["06ABC", "12", "+4420", "0612"]))
        elif kind == "short":
            row[0] = "112"
        elif kind == "no_source":
            row[3] = ""
        elif kind == "bad_date":
            row[2] = draw(st.sampled_from(["yesterday", "2026-13-01", "01/11/2026"]))
        elif kind == "unknown_campaign":
            row[1] = "nope"
        lines.append((other if kind == "mixed" else sep).join(row))
        if kind == "valid":
            good += 1
            last_valid = lines[-1]
        else:
            bad.append(len(lines))
    text = eol.join(lines) + eol
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    data = bom + text.encode()
    if draw(st.integers(0, 9)) == 0:  # a latin-1 byte somewhere: not UTF-8 at all
        data = data + b"0612399999" + sep.encode() + b"promo" + sep.encode() + \
            b"2026-11-01" + sep.encode() + b"caf\xe9" + eol.encode()
        return data, good, None
    return data, good, bad


@settings(max_examples=max(50, EXAMPLES // 2), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=consent_csv())
def test_fuzz_consent_csv_all_or_nothing(tmp_path_factory, request, backend, case):
    data, good, bad = case
    tmp = tmp_path_factory.mktemp("csv")
    config = parse_config(tomllib.loads(CSV_CONFIG), base_dir=tmp)
    store = open_store(fresh_store(backend, request, tmp / "s.db"), create=True)
    try:
        f = tmp / "consents.csv"
        f.write_bytes(data)
        if bad is None or bad or not good:
            with pytest.raises(ImportRejected) as exc:
                import_csv(store, config, "consents", f)
            if bad is None:
                assert "not UTF-8" in str(exc.value)
            elif bad:
                assert [e.line for e in exc.value.errors] == bad, str(exc.value)
            else:  # a header and nothing else: an import that changes nothing is refused
                assert "no data row" in str(exc.value)
            assert store.count("consents") == 0  # nothing half-imported
            _count("csv_rejected")
        else:
            res = import_csv(store, config, "consents", f)
            assert res.count == good and store.count("consents") == good
            _count("csv_imported")
    finally:
        store.close()


# -- dialled numbers ------------------------------------------------------------

@settings(max_examples=EXAMPLES * 2, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dialled=st.one_of(NUMBERS, st.text(), st.text(alphabet="0123456789 +.-()٠١٢٣٤٥٦٧٨٩０６", max_size=30),
                         st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_fuzz_dialled_strings_never_crash_and_never_allow_unparsed(tmp_path_factory, dialled):
    """Any string (very long, unicode digits, letters, empty, control chars):
    the check never raises, and an ALLOW needs a number the parser accepts."""
    tmp = tmp_path_factory.mktemp("dialled")
    config = parse_config(tomllib.loads(FUZZ_CONFIG), base_dir=tmp)
    with open_store(config.store, create=True) as store:
        for campaign in ("svc", "promo"):
            d = check(config, store, Request(dialled=dialled, at=TUESDAY, campaign=campaign,
                                             caller_id="0162000000", record=True))
            try:
                number = parse(dialled)
            except NumberError:
                number = None
            if number is None:
                assert (d.verdict.value, d.rules) == ("block", ("R-01",)), d
            elif d.allowed:
                assert campaign == "svc" or number.kind is Kind.SHORT, d
    _count("dialled_cases")


@settings(max_examples=EXAMPLES * 2, deadline=None, database=None)
@given(national=st.one_of(
    st.from_regex(r"0[1-9][0-9]{8}", fullmatch=True),
    st.sampled_from(["0262", "0263", "0269", "0508", "0590", "0594", "0596", "0639", "0690",
                     "0691", "0692", "0693", "0694", "0696", "0697", "07090", "07091", "07092",
                     "070930", "070935", "070937", "070934", "0709"]).flatmap(
        lambda p: st.from_regex(rf"{p}[0-9]{{{10 - len(p)}}}", fullmatch=True))))
def test_bloctel_fast_path_agrees_with_the_dialled_number_parser(national):
    """A Bloctel line is stored under the E.164 a dialled call parses to; the
    import's fast path once stored 0709x overseas mobiles as +33 numbers, so
    an opposed Guadeloupe mobile was never found (wrong ALLOW under R-10)."""
    try:
        dialled = parse(national)
    except NumberError:
        return  # R-01 for the call: whatever the list says, it is blocked
    if dialled.kind in (Kind.SHORT, Kind.FOREIGN):
        return
    assert bloctel_number(national) == e164_int(dialled.e164), (national, dialled.e164)
    _count("bloctel_parser_cases")
