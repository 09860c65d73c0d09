"""A real Asterisk PBX plus SIPp phones and carrier, for end-to-end tests.

Why: sentinelle's promise is about what Asterisk does with its verdict (a
blocked call never leaves the trunk, a dead service blocks everything), which
no mock can prove. So the tests run Debian sid's Asterisk 22 from a chroot
(built once by ``build-root.sh``) and drive it with SIPp, the way a call
centre's phones and its carrier would.

Each :class:`Pbx` gets its own run directory (config, logs, spool, astdb,
control socket) bind-mounted at ``/run/sentinelle`` inside the chroot, in a
private mount namespace, and its own free loopback ports, so several PBXs (or
test runs) can share one root without seeing each other.

Typical use::

    from tests.pbx import Pbx   # the repository root on sys.path (pytest does it)

    with Pbx(agi_url="agi://127.0.0.1:4573", campaign="c1") as pbx:
        with pbx.carrier(response=200) as carrier:
            result = pbx.call("0612345678", agent="agent3")
            assert result.status == 200
            assert carrier.count() == 1
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DIALPLAN_DIR = REPO / "dialplan"
BUILD_SCRIPT = HERE / "build-root.sh"
DEFAULT_ROOT = Path(os.environ.get("SENTINELLE_PBX_ROOT", "/var/cache/sentinelle/pbx-root"))
ROOT_MARKER = ".sentinelle-pbx-root-ok"
# Where the per-run directory appears inside the chroot.
CHROOT_RUN = "/run/sentinelle"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
LOOPBACK = "127.0.0.1"
DISPOSITION_FEATURES = ("sentinelle_callback#sentinelle_wrong_number#sentinelle_refused"
                        "#sentinelle_do_not_call#sentinelle_refusal")

# Modules that are loaded by autoload but useless here: they only add start-up
# time, log noise (missing configs/databases/devices) or open extra sockets.
# res_pjsip_pubsub (and the PJSIP stack in general) must stay loaded.
NOLOAD = (
    "app_adsiprog",
    "app_alarmreceiver",
    "app_festival",
    "app_getcpeid",
    "app_jack",
    "app_minivm",
    "app_sms",
    "app_voicemail",
    "app_voicemail_odbc",
    "cdr_adaptive_odbc",
    "cdr_csv",
    "cdr_custom",
    "cdr_manager",
    "cdr_odbc",
    "cdr_pgsql",
    "cdr_radius",
    "cdr_sqlite3_custom",
    "cdr_tds",
    "cel_custom",
    "cel_manager",
    "cel_odbc",
    "cel_pgsql",
    "cel_radius",
    "cel_sqlite3_custom",
    "cel_tds",
    "chan_audiosocket",
    "chan_console",
    "chan_iax2",
    "chan_motif",
    "chan_unistim",
    "chan_websocket",
    "pbx_ael",
    "pbx_dundi",
    "pbx_lua",
    "pbx_realtime",
    "pbx_spool",
    "res_adsi",
    "res_aeap",
    "res_calendar",
    "res_calendar_caldav",
    "res_calendar_ews",
    "res_calendar_exchange",
    "res_calendar_icalendar",
    "res_config_curl",
    "res_config_ldap",
    "res_config_odbc",
    "res_config_pgsql",
    "res_config_sqlite3",
    "res_corosync",
    "res_fax",
    "res_fax_spandsp",
    "res_geolocation",
    "res_hep",
    "res_hep_pjsip",
    "res_hep_rtcp",
    "res_odbc",
    "res_odbc_transaction",
    "res_phoneprov",
    "res_pjsip_geolocation",
    "res_pjsip_phoneprov_provider",
    "res_pjsip_stir_shaken",
    "res_prometheus",
    "res_resolver_unbound",
    "res_smdi",
    "res_snmp",
    "res_speech_aeap",
    "res_statsd",
    "res_stir_shaken",
    "res_xmpp",
    "res_mwi_devstate",
    "res_pjsip_config_wizard",
    "res_stun_monitor",
    "res_parking",
    "app_agent_pool",
    "app_confbridge",
    "app_page",
    "app_amd",
    "app_followme",
    "app_queue",
    "func_odbc",
    "res_clialiases",
)

CALL_FAILURE_CODES = (
    400,
    401,
    403,
    404,
    405,
    407,
    408,
    410,
    415,
    420,
    480,
    481,
    482,
    483,
    484,
    485,
    486,
    487,
    488,
    491,
    500,
    501,
    502,
    503,
    504,
    600,
    603,
    604,
    606,
)


class PbxError(RuntimeError):
    """The PBX (or its root) could not be built or started. Tests must fail on it."""


# --------------------------------------------------------------------------
# helpers


def ensure_root(root: Path | None = None) -> Path:
    """Build the chroot if its success marker is missing; raise PbxError if that fails.

    Never skips: a missing Asterisk is a broken test environment, not a reason
    to report green.
    """
    root = Path(root or DEFAULT_ROOT)
    if (root / ROOT_MARKER).is_file():
        return root
    env = dict(os.environ, SENTINELLE_PBX_ROOT=str(root))
    proc = subprocess.run(["sh", str(BUILD_SCRIPT)], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (root / ROOT_MARKER).is_file():
        raise PbxError(
            f"building the Asterisk root at {root} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return root


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for ports bound to 0 (outgoing sockets, sipp
    clients started without -p)."""
    try:
        low, high = (int(x) for x in
                     Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


PORT_FLOOR = 10000  # below: well-known and registered services
TRUNK_AOR = "trunk"  # pjsip.conf: the carrier's static contact


def free_ports(count: int, kind: int = socket.SOCK_STREAM) -> list[int]:
    """Return `count` distinct loopback ports that are currently free for `kind`.

    Chosen at random below the kernel's ephemeral range: a port the kernel
    may hand to any socket bound to port 0 (every sipp phone placing a call,
    every outgoing connection) can be taken between its choice here and its
    use, and a carrier whose port a phone had taken failed to start (sipp
    "Unable to bind main socket", exit 254) in two runs. All sockets are
    held open until every port is chosen, so one call never returns the
    same port twice.
    """
    low, _ = _ephemeral_ports()
    rng = random.SystemRandom()
    socks: list[socket.socket] = []
    try:
        for _ in range(count * 200):
            if len(socks) == count:
                break
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind((LOOPBACK, rng.randrange(PORT_FLOOR, low) if low > PORT_FLOOR + 1000
                        else 0))
            except OSError:
                s.close()
                continue
            socks.append(s)
        if len(socks) < count:
            raise PbxError(f"no {count} free loopback ports below {low}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_port_both() -> int:
    """A port free for both UDP and TCP (SIP transports may use either)."""
    for _ in range(50):
        (port,) = free_ports(1, socket.SOCK_DGRAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOOPBACK, port))
        except OSError:
            continue
        return port
    raise PbxError("no free UDP+TCP port on loopback")


def _chroot_ids(root: Path, name: str = "asterisk") -> tuple[int, int]:
    """uid/gid of `name` inside the chroot (they need not exist on the host)."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise PbxError(f"no user {name!r} in {root}/etc/passwd")


# --------------------------------------------------------------------------
# SIPp message logs


@dataclasses.dataclass
class SipMessage:
    """One SIP message from a SIPp ``-trace_msg`` log."""

    direction: str  # "sent" or "received"
    first_line: str
    headers: dict[str, str]  # lower-case name -> value (first occurrence)
    body: str

    @property
    def status(self) -> int | None:
        m = re.match(r"SIP/2\.0 (\d{3})", self.first_line)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str | None:
        if self.first_line.startswith("SIP/2.0"):
            return None
        return self.first_line.split(" ", 1)[0]

    @property
    def cseq_method(self) -> str:
        parts = self.headers.get("cseq", "").split()
        return parts[-1] if parts else ""

    @property
    def request_user(self) -> str | None:
        m = re.match(r"\S+ sips?:([^@;>\s]+)@", self.first_line)
        return m.group(1) if m else None


_MSG_SPLIT = re.compile(r"^-{20,}.*$", re.MULTILINE)
_MSG_HEAD = re.compile(r"^\s*\S+ message (sent|received)\b.*?:\s*$", re.MULTILINE)


def parse_sipp_log(path: Path) -> list[SipMessage]:
    """Parse a SIPp message log into SipMessage objects (tolerates a partial last entry)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    messages = []
    for chunk in _MSG_SPLIT.split(text):
        head = _MSG_HEAD.search(chunk)
        if not head:
            continue
        raw = chunk[head.end() :].lstrip("\r\n")
        head_part, _, body = raw.replace("\r\n", "\n").partition("\n\n")
        lines = [ln for ln in head_part.split("\n") if ln.strip()]
        if not lines:
            continue
        headers: dict[str, str] = {}
        for ln in lines[1:]:
            name, sep, value = ln.partition(":")
            if sep:
                headers.setdefault(name.strip().lower(), value.strip())
        messages.append(SipMessage(head.group(1), lines[0].strip(), headers, body.strip()))
    return messages


@dataclasses.dataclass
class CallResult:
    """Outcome of one agent call (see :meth:`Pbx.call`)."""

    number: str
    agent: str
    status: int | None  # final SIP response to the INVITE; None if none arrived
    reason: str | None  # Reason header of that response (or of a BYE), verbatim
    q850: int | None  # cause=N from a "Reason: Q.850;cause=N" header
    exit_code: int  # SIPp's exit code (0 = scenario ran to its end)
    messages: list[SipMessage]
    log: Path  # SIPp message log, for debugging

    @property
    def answered(self) -> bool:
        return self.status == 200


def _call_result(number: str, agent: str, exit_code: int, log: Path) -> CallResult:
    messages = parse_sipp_log(log)
    status = reason = None
    for msg in messages:
        if msg.direction != "received":
            continue
        code = msg.status
        if code is not None and code >= 200 and msg.cseq_method == "INVITE":
            status = code
            reason = msg.headers.get("reason", reason)
        elif msg.method == "BYE" and "reason" in msg.headers:
            reason = msg.headers["reason"]
    q850 = None
    if reason:
        m = re.search(r"Q\.850\s*;\s*cause\s*=\s*(\d+)", reason, re.IGNORECASE)
        q850 = int(m.group(1)) if m else None
    return CallResult(number, agent, status, reason, q850, exit_code, messages, log)


# --------------------------------------------------------------------------
# SIPp scenarios

# A response as SIPp's scenarios send it: the request's own headers echoed.
_REPLY = """    <![CDATA[
SIP/2.0 {code}
[last_Via:]
[last_From:]
[last_To:]{tag}
[last_Call-ID:]
[last_CSeq:]
{extra}Content-Length: {length}
{body}
    ]]>"""

# The audio offer or answer every scenario carries (SIPp fills in the media).
_SDP = """
v=0
o=- 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=sendrecv"""

def _dtmf_body(digit: str) -> str:
    """A key pressed, as a SIP INFO carries it (application/dtmf-relay)."""
    return ("Content-Type: application/dtmf-relay\nContent-Length: [len]\n\n"
            f"Signal={digit}\nDuration=160")


def with_ari_channelvars(ari_conf: str, *names: str) -> str:
    """The harness's ari.conf with `channelvars` in [general], as the README
    has an install add it (the listener then sees these variables)."""
    general = "[general]\nenabled = yes\n"
    assert general in ari_conf
    return ari_conf.replace(general, general + f"channelvars = {','.join(names)}\n")


# No body: to a BYE, an INFO or a NOTIFY; the carrier's first answer.
_OK = _REPLY.format(code="200 OK", tag="", extra="", length="0", body="")
_TRYING = _REPLY.format(code="100 Trying", tag="", extra="", length="0", body="")

_UAC_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- generated by tests/pbx/pbx.py: one agent call -->
<scenario name="sentinelle agent call">
"""


def uac_scenario(
    number: str,
    agent: str,
    caller_id: str,
    masked: bool,
    campaign: str | None,
    send_dtmf: str | None,
    hold_ms: int,
    extra_headers: Iterable[str] = (),
) -> str:
    """SIPp UAC scenario: INVITE as `agent` to `number`, then ACK/(INFO DTMF)/BYE.

    The caller identity is carried by P-Asserted-Identity (the endpoints use
    trust_id_inbound=yes), "Privacy: id" marks it as withheld. Every usual
    final failure is accepted and ACKed so SIPp ends cleanly; the result is
    read back from the message log, not from SIPp's exit code.
    """
    frm = f"<sip:{agent}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]"
    to = f"<sip:{number}@[remote_ip]:[remote_port]>"
    dialog = f"From: {frm}\nTo: {to}[peer_tag_param]\nCall-ID: [call_id]\n"
    contact = f"Contact: <sip:{agent}@[local_ip]:[local_port];transport=[transport]>\n"
    via = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
    hdrs = [f"P-Asserted-Identity: <sip:{caller_id}@[local_ip]>"]
    if masked:
        hdrs.append("Privacy: id")
    if campaign is not None:
        hdrs.append(f"X-Campaign: {campaign}")
    hdrs.extend(extra_headers)
    extra = "".join(h + "\n" for h in hdrs)
    out = [_UAC_HEAD]
    out.append(f"""  <send retrans="500">
    <![CDATA[
INVITE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
{via}From: {frm}
To: {to}
Call-ID: [call_id]
CSeq: 1 INVITE
{contact}Max-Forwards: 70
{extra}Subject: sentinelle test
Content-Type: application/sdp
Content-Length: [len]
{_SDP}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" optional="true" rrs="true" next="answered"/>
""")
    for i, code in enumerate(CALL_FAILURE_CODES):
        opt = "true" if i < len(CALL_FAILURE_CODES) - 1 else "false"
        out.append(f'  <recv response="{code}" optional="{opt}" next="failed"/>\n')
    out.append(f"""  <label id="answered"/>
  <send>
    <![CDATA[
ACK [next_url] SIP/2.0
{via}[routes]
{dialog}CSeq: 1 ACK
{contact}Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
""")
    cseq = 2
    for digit in send_dtmf or "":
        out.append(f"""  <pause milliseconds="200"/>
  <send retrans="500">
    <![CDATA[
INFO [next_url] SIP/2.0
{via}[routes]
{dialog}CSeq: {cseq} INFO
{contact}Max-Forwards: 70
{_dtmf_body(digit)}
    ]]>
  </send>
  <recv response="200"/>
""")
        cseq += 1
    out.append(f"""  <recv request="BYE" timeout="{max(hold_ms, 1)}" ontimeout="hangup"/>
  <send next="end">
{_OK}
  </send>
  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
BYE [next_url] SIP/2.0
{via}[routes]
{dialog}CSeq: {cseq} BYE
{contact}Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="end"/>
  <label id="failed"/>
  <send>
    <![CDATA[
ACK sip:{number}@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: {frm}
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
""")
    return "".join(out)


def uas_scenario(response: int, ring_ms: int, answer_ms: int, call_ms: int | None) -> str:
    """SIPp UAS scenario for the carrier: answer every INVITE with `response`.

    For 200 the call is kept until the caller hangs up, or for `call_ms` after
    which the carrier hangs up itself (None: wait for the caller up to 10 min).
    """
    reason = {
        200: "OK",
        403: "Forbidden",
        404: "Not Found",
        480: "Temporarily Unavailable",
        486: "Busy Here",
        503: "Service Unavailable",
        603: "Decline",
    }.get(response, "Whatever")
    tag = ";tag=[pid]SIPpTag01[call_number]"
    contact = "Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>\n"
    ringing = _REPLY.format(code="180 Ringing", tag=tag, extra=contact, length="0", body="")
    final = _REPLY.format(code=f"{response} {reason}", tag=tag, extra="", length="0", body="")
    answer = _REPLY.format(code="200 OK", tag=tag, extra=contact + "Content-Type: application/sdp\n",
                           length="[len]", body=_SDP)
    # The INVITE's From/To/Contact are only needed (and SIPp refuses variables
    # that are set but never used) when the carrier may send its own BYE.
    save = (
        """
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="rfrom"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="rto"/>
      <ereg regexp="sips?:[^>;]*" search_in="hdr" header="Contact:" check_it="true"
            assign_to="rcontact"/>
    </action>
  """
        if response == 200
        else ""
    )
    out = [
        f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- generated by tests/pbx/pbx.py: carrier -->
<scenario name="sentinelle carrier">
  <recv request="INVITE" crlf="true">{save}</recv>
  <send>
{_TRYING}
  </send>
"""
    ]
    if ring_ms:
        out.append(f"""  <send>
{ringing}
  </send>
  <pause milliseconds="{ring_ms}"/>
""")
    if response != 200:
        out.append(f"""  <send>
{final}
  </send>
  <recv request="ACK"/>
</scenario>
""")
        return "".join(out)
    if answer_ms:
        out.append(f'  <pause milliseconds="{answer_ms}"/>\n')
    wait = call_ms if call_ms is not None else 600_000
    out.append(f"""  <send retrans="500">
{answer}
  </send>
  <recv request="ACK"/>
  <recv request="BYE" timeout="{max(wait, 1)}" ontimeout="hangup"/>
  <send next="end">
{_OK}
  </send>
  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
BYE [$rcontact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$rto];tag=[pid]SIPpTag01[call_number]
To: [$rfrom]
[last_Call-ID:]
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <label id="end"/>
</scenario>
""")
    return "".join(out)


def _sipp_cmd(scenario: Path, log: Path, remote: str | None, local_port: int | None) -> list[str]:
    cmd = [
        SIPP,
        "-sf",
        str(scenario),
        "-i",
        LOOPBACK,
        "-mi",
        LOOPBACK,
        "-t",
        "u1",
        "-nostdin",
        "-aa",
        "-trace_msg",
        "-message_file",
        str(log),
        "-trace_err",
        "-error_file",
        str(log.with_suffix(".errors")),
    ]
    if local_port:
        cmd += ["-p", str(local_port)]
    if remote:
        cmd.append(remote)
    return cmd


# --------------------------------------------------------------------------
# agents' phones that are called (SIPp UAS): queue members, conference seats,
# transfer targets


def fixed_contact_endpoints(ports: dict[str, int], context: str | None = None) -> str:
    """pjsip.conf endpoints (from agent-tpl) that Asterisk can call: each a
    SIPp UAS at a fixed loopback port. `context`: where their own calls go."""
    ctx = f"context = {context}\n" if context else ""
    return "".join(f"""
[{name}](agent-tpl)
aors = {name}
{ctx}
[{name}]
type = aor
contact = sip:{name}@{LOOPBACK}:{port}
""" for name, port in ports.items())





def agent_scenario(dtmf: str | Iterable[str], after_ms: int = 1500, on_notify: bool = False) -> str:
    """An agent's phone that is called: answer, key DTMF by SIP INFO, then
    stay until the call is hung up.

    dtmf: the keys (one string), or several groups of keys.
    on_notify=False: the first group `after_ms` after the answer (a queue
        member, rung once the callee is there).
    on_notify=True: each group only once an in-dialog NOTIFY arrived (see
        :meth:`Pbx.notify_channel`): an agent who waits in a conference room
        keys when the test knows the callee is there, not after a guessed
        delay that a loaded machine would break.
    """
    groups = [dtmf] if isinstance(dtmf, str) else list(dtmf)
    cseq = 0
    steps = []
    for n, group in enumerate(groups):
        if on_notify:
            steps.append(f"""  <recv request="NOTIFY" timeout="120000"/>
  <send>
{_OK}
  </send>
""")
        for i, digit in enumerate(group):
            cseq += 1
            pause = after_ms if i == 0 and n == 0 and not on_notify else 200
            steps.append(f"""  <pause milliseconds="{pause}"/>
  <send retrans="500">
    <![CDATA[
INFO [$rcontact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$rto];tag=[pid]SIPpTag01[call_number]
To: [$rfrom]
[last_Call-ID:]
CSeq: {cseq} INFO
Max-Forwards: 70
{_dtmf_body(digit)}
    ]]>
  </send>
  <recv response="200"/>
""")
    answer = _REPLY.format(
        code="200 OK", tag=";tag=[pid]SIPpTag01[call_number]",
        extra="Contact: <sip:agent@[local_ip]:[local_port];transport=[transport]>\n"
              "Content-Type: application/sdp\n", length="[len]", body=_SDP)
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="sentinelle called agent">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="rfrom"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="rto"/>
      <ereg regexp="sips?:[^>;]*" search_in="hdr" header="Contact:" check_it="true"
            assign_to="rcontact"/>
    </action>
  </recv>
  <send retrans="500">
{answer}
  </send>
  <recv request="ACK"/>
{"".join(steps)}  <recv request="BYE" timeout="120000"/>
  <send>
{_OK}
  </send>
</scenario>
"""


class PortTaken(PbxError):
    """A sipp UAS could not bind the port its contact names: something bound
    it between :func:`free_ports` and sipp's start."""


def _udp_inodes(port: int) -> set[str]:
    """The inodes of the UDP sockets bound to `port` (/proc/net/udp)."""
    inodes = set()
    with open("/proc/net/udp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _binds(pid: int, port: int) -> bool:
    """Whether process `pid` holds a UDP socket bound to `port`. Asked of the
    process itself: a port merely found busy may be another's, and the
    phone would then be taken for ready while its sipp is exiting."""
    inodes = _udp_inodes(port)
    if not inodes:
        return False
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


def _wait_bound(proc: subprocess.Popen, port: int, output: Path, who: str) -> None:
    """Until the sipp UAS `proc` has bound its UDP port: a call Asterisk
    sends before that meets a closed port and fails."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = output.read_text(errors="replace")
            error = PortTaken if "Unable to bind main socket" in text else PbxError
            raise error(f"{who} sipp exited {proc.returncode}: {text[-2000:]}")
        if _binds(proc.pid, port):
            return
        time.sleep(0.02)
    proc.kill()  # not left running, holding whatever it did bind
    proc.wait()
    raise PbxError(f"{who} sipp did not bind its port")


def _start_uas(pbx: Pbx, aor: str, port: int, argv: Callable[[int], list[str]], output: Path,
               who: str) -> tuple[subprocess.Popen, int]:
    """Start a sipp UAS where `aor`'s static contact points, and return it
    with its port. The port was chosen free when the PBX was configured,
    seconds or minutes earlier: if something has bound it since (a CI run
    saw an agent's phone exit "Unable to bind main socket"), the contact is
    moved to a port free now, in the running Asterisk too, and sipp tried
    again there."""
    for _ in range(3):
        with output.open("wb") as out:
            proc = subprocess.Popen(argv(port), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            _wait_bound(proc, port, output, who)
            return proc, port
        except PortTaken:
            taken, port = port, _free_port_both()
            print(f"{who}: port {taken} was taken, {aor}'s contact moved to {port}")
            pbx.move_contact(aor, port)
    raise PbxError(f"{who}: three ports taken in a row")


class AgentPhone:
    """One agent's phone that Asterisk calls: a SIPp UAS on its own port, one
    call (see :func:`agent_scenario` for the keys and when they are sent)."""

    def __init__(self, pbx: Pbx, name: str, dtmf: str | Iterable[str],
                 after_ms: int = 1500, on_notify: bool = False) -> None:
        self.name = name
        self.scenario = pbx.sipp_dir / f"{name}.xml"
        self.log = pbx.sipp_dir / f"{name}.msg.log"
        self.scenario.write_text(agent_scenario(dtmf, after_ms=after_ms, on_notify=on_notify))
        output = pbx.sipp_dir / f"{name}.out"
        self.proc, self.port = _start_uas(
            pbx, name, pbx.phone_ports[name],
            lambda at: [*_sipp_cmd(self.scenario, self.log, None, at), "-m", "1"],
            output, f"{name}'s phone")

    def callees(self) -> list[str]:
        """The callers (callees of the dialer) whose calls this phone received."""
        froms = [m.headers.get("from", "") for m in parse_sipp_log(self.log)
                 if m.direction == "received" and m.method == "INVITE"]
        return sorted({m.group(1) for f in froms if (m := re.search(r"sip:([^@;>]+)@", f))})

    def received(self, method: str) -> int:
        """How many `method` requests this phone received."""
        return sum(1 for m in parse_sipp_log(self.log)
                   if m.direction == "received" and m.method == method)

    def sent_infos_answered(self) -> int:
        """How many of its DTMF INFOs Asterisk acknowledged (200)."""
        return sum(1 for m in parse_sipp_log(self.log)
                   if m.direction == "received" and m.status == 200 and m.cseq_method == "INFO")

    @property
    def done(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def agent_phones(pbx: Pbx, keys: dict[str, str | Iterable[str]], *, after_ms: int = 1500,
                 on_notify: bool = False) -> Iterator[dict[str, AgentPhone]]:
    """The phones of `pbx`'s static contacts named in `keys` (each with its
    DTMF, see :func:`agent_scenario`), started in order and all stopped at
    the end. Those already started are stopped too when a later one cannot
    start: left running, they held their ports for the rest of the run."""
    phones: dict[str, AgentPhone] = {}
    try:
        for name, dtmf in keys.items():
            phones[name] = AgentPhone(pbx, name, dtmf, after_ms=after_ms, on_notify=on_notify)
        yield phones
    finally:
        for phone in phones.values():
            phone.stop()


# --------------------------------------------------------------------------
# carrier (SIPp UAS behind the trunk)


class Carrier:
    """The operator side of the trunk: a SIPp UAS that answers every INVITE.

    Tests use it to prove what *left* the PBX: :meth:`invites` lists each call
    that reached the carrier (retransmissions removed).
    """

    def __init__(
        self, pbx: Pbx, response: int = 200, ring_ms: int = 0, answer_ms: int = 0, call_ms: int | None = None
    ) -> None:
        self.pbx = pbx
        self.response = response
        self.ring_ms = ring_ms
        self.answer_ms = answer_ms
        self.call_ms = call_ms
        n = next(pbx._seq)
        self.scenario = pbx.sipp_dir / f"carrier-{n}.xml"
        self.log = pbx.sipp_dir / f"carrier-{n}.msg.log"
        self.stdout = pbx.sipp_dir / f"carrier-{n}.out"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Carrier:
        self.scenario.write_text(uas_scenario(self.response, self.ring_ms, self.answer_ms, self.call_ms))
        self.proc, _ = _start_uas(
            self.pbx, TRUNK_AOR, self.pbx.carrier_port,
            lambda at: _sipp_cmd(self.scenario, self.log, None, at), self.stdout, "carrier")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # SIPp: stop gracefully
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.pbx._carrier is self:
            self.pbx._carrier = None

    def __enter__(self) -> Carrier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def messages(self) -> list[SipMessage]:
        return parse_sipp_log(self.log)

    def invites(self) -> list[SipMessage]:
        """INVITEs received, one per call (Call-ID), in arrival order."""
        seen: dict[str, SipMessage] = {}
        for msg in self.messages():
            if msg.direction == "received" and msg.method == "INVITE":
                seen.setdefault(msg.headers.get("call-id", ""), msg)
        return list(seen.values())

    def numbers(self) -> list[str]:
        """Dialled numbers (Request-URI user part) of the INVITEs received."""
        return [m.request_user or "" for m in self.invites()]

    def count(self) -> int:
        return len(self.invites())

    def wait_for(self, count: int, timeout: float = 10.0) -> int:
        """Wait until at least `count` INVITEs arrived; return the count seen."""
        deadline = time.monotonic() + timeout
        while (seen := self.count()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen


# --------------------------------------------------------------------------
# AMI


class Ami:
    """Minimal synchronous Asterisk Manager Interface client.

    Why not panoramisk: tests want blocking calls and an event log they can
    search after the fact, without an event loop. A reader thread stores every
    event; responses are matched by ActionID.
    """

    def __init__(self, host: str, port: int, username: str, secret: str, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._file = self.sock.makefile("rb")
        self.banner = self._file.readline().decode(errors="replace").strip()
        self.sock.settimeout(None)
        self._events: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._responses: dict[str, queue.Queue] = {}
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="ami-reader")
        self._reader.start()
        resp = self.action("Login", Username=username, Secret=secret)
        if resp.get("Response") != "Success":
            raise PbxError(f"AMI login failed: {resp}")

    def _read_loop(self) -> None:
        msg: dict[str, str] = {}
        output: list[str] = []
        try:
            for raw in self._file:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line == "":
                    if msg:
                        if output:
                            msg["Output"] = "\n".join(output)
                        self._dispatch(msg)
                    msg, output = {}, []
                    continue
                key, sep, value = line.partition(": ")
                if not sep and line.endswith(":"):
                    key, sep, value = line[:-1], ":", ""
                if sep and key != "Output":
                    msg.setdefault(key, value)
                else:
                    output.append(value if key == "Output" else line)
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _dispatch(self, msg: dict[str, str]) -> None:
        aid = msg.get("ActionID")
        if "Response" in msg and aid in self._responses:
            self._responses[aid].put(msg)
            return
        if "Event" in msg:
            with self._cond:
                self._events.append(msg)
                self._cond.notify_all()
            if aid in self._responses and msg.get("EventList") == "Complete":
                self._responses[aid].put({"_list_complete": "1"})

    def action(self, name: str, **fields: str) -> dict[str, str]:
        """Send an action and return its response (a dict of headers)."""
        aid = f"s{next(self._ids)}"
        q: queue.Queue = queue.Queue()
        self._responses[aid] = q
        lines = [f"Action: {name}", f"ActionID: {aid}"]
        for key, value in fields.items():
            values = value if isinstance(value, list | tuple) else [value]
            lines.extend(f"{key}: {v}" for v in values)
        with self._lock:
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            return q.get(timeout=self.timeout)
        except queue.Empty:
            raise PbxError(f"no AMI response to {name}") from None
        finally:
            self._responses.pop(aid, None)

    def events(self, name: str | None = None) -> list[dict[str, str]]:
        """All events received so far (optionally only those named `name`)."""
        with self._cond:
            return [e for e in self._events if name is None or e.get("Event") == name]

    def wait_event(
        self, match: Callable[[dict[str, str]], bool] | str, timeout: float = 10.0
    ) -> dict[str, str]:
        """Wait for the first event (past or future) that `match` accepts.

        `match` may be an event name or a predicate. Raises TimeoutError.
        """
        pred = match if callable(match) else (lambda e: e.get("Event") == match)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self._events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise TimeoutError(f"no AMI event matching {match!r} within {timeout}s")
                self._cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(OSError, PbxError):
            self.sock.settimeout(1)
            self.sock.sendall(b"Action: Logoff\r\n\r\n")
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def __enter__(self) -> Ami:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------
# the PBX


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Pbx:
    """One Asterisk instance running from the shared chroot with its own config.

    Parameters:
        agi_url: value of the dialplan global SENTINELLE_AGI (e.g.
            ``agi://127.0.0.1:4573``); the check route ``/check`` is appended
            by the dialplan.
        campaign: campaign used when a call carries no X-Campaign header.
        root: chroot (built on demand by build-root.sh).
        run_dir: per-run directory (default: a fresh temp dir, kept after stop
            so logs can be read; removed by :meth:`cleanup`).
        agents: number of agent endpoints (agent1..agentN).
        extra_dialplan: text appended to extensions.conf (extra contexts).
        phone_ports: endpoints that Asterisk calls at a static contact, each
            a port on loopback where an :class:`AgentPhone` will answer.
        phone_context: the dialplan context of their own calls.
        debug: turn on Asterisk debug logging and PJSIP packet logging.
    """

    ami_user = "sentinelle"
    ami_secret = "sentinelle-ami-secret"
    ari_user = "sentinelle"
    ari_password = "sentinelle-ari-secret"
    host = LOOPBACK

    def __init__(
        self,
        agi_url: str = "agi://127.0.0.1:4573",
        campaign: str = "default",
        *,
        root: Path | str | None = None,
        run_dir: Path | str | None = None,
        agents: int = 20,
        extra_dialplan: str = "",
        phone_ports: dict[str, int] | None = None,
        phone_context: str | None = None,
        debug: bool = False,
        host_root: bool = False,
    ) -> None:
        self.root = ensure_root(Path(root) if root else None)
        self.phone_ports = dict(phone_ports or {})
        self.phone_context = phone_context
        self.agi_url = agi_url
        self.campaign = campaign
        self.agents = agents
        self.extra_dialplan = extra_dialplan
        self.debug = debug
        # The host's root file system (without its submounts) at
        # /run/sentinelle/host in the chroot: a classic AGI script can then
        # chroot back into it and run the host's venv (bench_pbx's `classic`).
        # chroot(2) needs root: Asterisk then keeps running as root.
        self.host_root = host_root
        self.run_dir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="sentinelle-pbx-"))
        self.etc_dir = self.run_dir / "etc"
        self.log_dir = self.run_dir / "log"
        self.sipp_dir = self.run_dir / "sipp"
        self.sip_port = _free_port_both()
        self.carrier_port = _free_port_both()
        self.ami_port, self.http_port = free_ports(2)
        self.rtp_start = random.randrange(20000, 59000, 2)
        self.proc: subprocess.Popen | None = None
        self._ami: Ami | None = None
        self._carrier: Carrier | None = None
        self._seq = iter(range(1, 1 << 62))
        self.start_seconds: float | None = None
        self.write_config()

    # ----- paths / addresses

    @property
    def ari_url(self) -> str:
        return f"http://{self.host}:{self.http_port}/ari"

    @property
    def ari_ws_url(self) -> str:
        return f"ws://{self.host}:{self.http_port}/ari/events"

    @property
    def full_log(self) -> Path:
        """Asterisk's 'full' log (verbose, notices, DTMF, AGI debug if enabled)."""
        return self.log_dir / "full"

    @property
    def messages_log(self) -> Path:
        return self.log_dir / "messages"

    @property
    def console_log(self) -> Path:
        """stdout/stderr of the asterisk process (start-up failures land here)."""
        return self.log_dir / "console.out"

    def log_text(self) -> str:
        try:
            return self.full_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ----- configuration

    def _moddir(self) -> str:
        found = sorted(self.root.glob("usr/lib/*/asterisk/modules"))
        if not found:
            raise PbxError(f"no Asterisk modules directory under {self.root}/usr/lib")
        return "/" + str(found[0].relative_to(self.root))

    def _configs(self) -> dict[str, str]:
        run = CHROOT_RUN
        verbose = 5 if self.debug else 3
        agents = "".join(f"[agent{i}](agent-tpl)\n" for i in range(1, self.agents + 1))
        noload = "".join(f"noload => {m}.so\n" for m in NOLOAD)
        return {
            "asterisk.conf": f"""[directories]
astcachedir => {run}/cache
astetcdir => {run}/etc
astmoddir => {self._moddir()}
astvarlibdir => /var/lib/asterisk
astdbdir => {run}/lib
astkeydir => {run}/lib
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {run}/spool
astrundir => {run}/run
astlogdir => {run}/log
astsbindir => /usr/sbin

[options]
verbose = {verbose}
debug = {1 if self.debug else 0}
nocolor = yes
{"" if self.host_root else "runuser = asterisk"}
{"" if self.host_root else "rungroup = asterisk"}
documentation_language = en_US
hideconnect = yes
""",
            "modules.conf": f"""[modules]
autoload = yes
{noload}""",
            "logger.conf": f"""[general]
dateformat = %F %T.%3q

[logfiles]
full => notice,warning,error,verbose({verbose}),dtmf{",debug" if self.debug else ""}
messages => notice,warning,error
""",
            "pjsip.conf": f"""[global]
type = global
user_agent = sentinelle-test-pbx
endpoint_identifier_order = username,ip,anonymous

[transport-udp]
type = transport
protocol = udp
bind = {LOOPBACK}:{self.sip_port}

; Agents' phones: identified by the From user, no authentication (loopback
; only); P-Asserted-Identity is trusted so tests can choose the caller ID and
; its presentation ("Privacy: id").
[agent-tpl](!)
type = endpoint
context = outbound
identify_by = username
disallow = all
allow = ulaw,alaw
direct_media = no
trust_id_inbound = yes
dtmf_mode = auto_info
rtp_symmetric = yes
media_address = {LOOPBACK}
bind_rtp_to_media_address = yes

{agents}{fixed_contact_endpoints(self.phone_ports, self.phone_context)}
[trunk]
type = endpoint
context = from-trunk
aors = {TRUNK_AOR}
disallow = all
allow = ulaw,alaw
direct_media = no
send_pai = yes
trust_id_outbound = yes
media_address = {LOOPBACK}
bind_rtp_to_media_address = yes

[{TRUNK_AOR}]
type = aor
contact = sip:{LOOPBACK}:{self.carrier_port}
""",
            "extensions.conf": f"""[general]
static = yes
writeprotect = yes
clearglobalvars = yes

[globals]
SENTINELLE_AGI = {self.agi_url}
SENTINELLE_DEFAULT_CAMPAIGN = {self.campaign}

#include extensions_sentinelle.conf

; Test calls from agents (SIPp UAC) or from AMI Originate (Local channels).
; The campaign comes from an X-Campaign SIP header, else from a channel
; variable 'campaign' (AMI Originate), else from the default.
[outbound]
exten => _[0-9+].,1,NoOp(test outbound call to ${{EXTEN}})
 same => n,GotoIf($["${{CHANNEL(channeltype)}}" != "PJSIP"]?campaign)
 same => n,Set(hdr=${{PJSIP_HEADER(read,X-Campaign)}})
 same => n,ExecIf($["${{hdr}}" != ""]?Set(campaign=${{hdr}}))
 same => n(campaign),ExecIf($["${{campaign}}" = ""]?Set(campaign=${{SENTINELLE_DEFAULT_CAMPAIGN}}))
 same => n,Set(DYNAMIC_FEATURES={DISPOSITION_FEATURES})
 same => n,GoSub(sentinelle-check,s,1(${{EXTEN}},${{campaign}}))
 same => n,Dial(PJSIP/${{EXTEN}}@trunk,30)
 same => n,Hangup()

[from-trunk]
exten => _X.,1,Hangup(21)

{self.extra_dialplan}
""",
            "manager.conf": f"""[general]
enabled = yes
bindaddr = {LOOPBACK}
port = {self.ami_port}
displayconnects = no

[{self.ami_user}]
secret = {self.ami_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.0/255.0.0.0
read = all
write = all
""",
            "http.conf": f"""[general]
enabled = yes
bindaddr = {LOOPBACK}
bindport = {self.http_port}
""",
            "ari.conf": f"""[general]
enabled = yes

[{self.ari_user}]
type = user
read_only = no
password = {self.ari_password}
""",
            "features.conf": """[general]
featuredigittimeout = 1000

#include features_sentinelle.conf
""",
            "rtp.conf": f"""[general]
rtpstart = {self.rtp_start}
rtpend = {self.rtp_start + 998}
icesupport = no
""",
            "cdr.conf": "[general]\nenable = no\n",
            "cel.conf": "[general]\nenable = no\n",
            "musiconhold.conf": "[general]\n",
            "indications.conf": """[general]
country = fr

[fr]
description = France
ringcadence = 1500,3500
dial = 440
busy = 440/500,0/500
ring = 440/1500,0/3500
congestion = 440/250,0/250
""",
            "ccss.conf": "[general]\n",
            "acl.conf": "",
            "udptl.conf": "[general]\n",
            "pjproject.conf": "[startup]\nlog_level = 1\n",
            "pjsip_notify.conf": "",
            "websocket_client.conf": "",
            "res_http_media_cache.conf": "",
        }

    def write_config(self) -> None:
        """(Re)write the run directory: config from the repo's dialplan/ plus test glue."""
        for sub in ("etc", "log", "spool", "run", "lib/keys", "cache", "sipp"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        for name, text in self._configs().items():
            (self.etc_dir / name).write_text(text)
        chroot_etc = self.run_dir / "chroot-etc"
        chroot_etc.mkdir(exist_ok=True)
        (chroot_etc / "hosts").write_text(
            f"127.0.0.1 localhost {socket.gethostname()}\n::1 localhost ip6-localhost\n"
        )
        (chroot_etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        for name in ("extensions_sentinelle.conf", "features_sentinelle.conf"):
            src = DIALPLAN_DIR / name
            if not src.is_file():
                raise PbxError(f"missing {src}")
            shutil.copy(src, self.etc_dir / name)
        uid, gid = _chroot_ids(self.root)
        os.chown(self.run_dir, uid, gid)
        for dirpath, dirnames, filenames in os.walk(self.run_dir):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, gid)

    # ----- lifecycle

    def _ns_prefix(self) -> list[str]:
        if not self.proc or self.proc.poll() is not None:
            raise PbxError("asterisk is not running")
        return ["nsenter", "-t", str(self.proc.pid), "-m", "--", "chroot", str(self.root)]

    def start(self, timeout: float = 60.0) -> Pbx:
        """Start Asterisk and wait until it is fully booted (raises PbxError otherwise)."""
        if self.proc and self.proc.poll() is None:
            return self
        t0 = time.monotonic()
        (self.root / CHROOT_RUN.lstrip("/")).mkdir(parents=True, exist_ok=True)
        if self.host_root:
            (self.run_dir / "host").mkdir(exist_ok=True)
        # Name resolution inside the chroot must stay on loopback: its own
        # hosts file maps this host's name (Asterisk resolves it) to 127.0.0.1
        # and resolv.conf points at 127.0.0.1, so nothing ever queries the
        # host's real DNS server.
        for name in ("hosts", "resolv.conf"):
            target = self.root / "etc" / name
            if not target.exists() or target.is_symlink():
                target.unlink(missing_ok=True)
                target.touch()
        script = (
            'set -e; mount -t proc proc "$1/proc"; '
            'mount --bind "$2" "$1$3"; '
            'mount --bind "$2/chroot-etc/hosts" "$1/etc/hosts"; '
            'mount --bind "$2/chroot-etc/resolv.conf" "$1/etc/resolv.conf"; '
            + ('mount --bind / "$1$3/host"; ' if self.host_root else "")
            + 'exec chroot "$1" /usr/sbin/asterisk -f -n -C "$3/etc/asterisk.conf"'
        )
        cmd = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            str(self.root),
            str(self.run_dir),
            CHROOT_RUN,
        ]
        with self.console_log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        # If the test process dies without stop(), do not leave Asterisk behind.
        weakref.finalize(self, _kill_group, self.proc)
        deadline = t0 + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PbxError(
                    f"asterisk exited with {self.proc.returncode} during start-up; "
                    f"console:\n{self._tail(self.console_log)}\n"
                    f"log:\n{self._tail(self.full_log)}"
                )
            res = subprocess.run(
                [
                    *self._ns_prefix(),
                    "asterisk",
                    "-C",
                    f"{CHROOT_RUN}/etc/asterisk.conf",
                    "-rx",
                    "core waitfullybooted",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            last = res.stdout + res.stderr
            if res.returncode == 0 and "fully booted" in last:
                # Connect the shared AMI client now so that it records every
                # event of the run, including those of the very first call.
                self._ami = self.ami_client()
                self.start_seconds = time.monotonic() - t0
                return self
            time.sleep(0.1)
        self.stop()
        raise PbxError(f"asterisk did not boot within {timeout}s: {last}\n{self._tail(self.full_log)}")

    @staticmethod
    def _tail(path: Path, lines: int = 40) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return f"({path} missing)"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Asterisk (core stop now, then SIGKILL) and any carrier still running."""
        if self._carrier:
            self._carrier.stop()
        if self._ami:
            self._ami.close()
            self._ami = None
        if not self.proc:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(PbxError, subprocess.TimeoutExpired):
                self.cli("core stop now", timeout=timeout)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self) -> Pbx:
        """Stop and start again with the same config, ports and run directory."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop and delete the run directory (logs included)."""
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Pbx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    # ----- control

    def cli(self, command: str, timeout: float = 15.0) -> str:
        """Run an Asterisk CLI command (``asterisk -rx``) and return its output."""
        res = subprocess.run(
            [*self._ns_prefix(), "asterisk", "-C", f"{CHROOT_RUN}/etc/asterisk.conf", "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            raise PbxError(f"asterisk -rx {command!r} failed: {res.stdout}{res.stderr}")
        return res.stdout

    def move_contact(self, aor: str, port: int) -> None:
        """Point `aor`'s static contact (the trunk's or a phone's) at `port`:
        in the config, and in the running Asterisk by reloading res_pjsip."""
        if aor == TRUNK_AOR:
            self.carrier_port = port
        elif aor in self.phone_ports:
            self.phone_ports[aor] = port
        else:
            raise PbxError(f"no static contact {aor!r}")
        self.write_config()
        if not self.running:
            return
        self.cli("module reload res_pjsip.so")
        deadline = time.monotonic() + 10
        while f"{LOOPBACK}:{port}" not in (shown := self.cli(f"pjsip show aor {aor}")):
            if time.monotonic() > deadline:
                raise PbxError(f"{aor}'s contact did not move to port {port}: {shown}")
            time.sleep(0.1)

    def set_global(self, name: str, value: str) -> None:
        """Change a dialplan global at run time (e.g. SENTINELLE_AGI)."""
        self.cli(f"dialplan set global {name} {value}")

    def ami_client(self, timeout: float = 10.0) -> Ami:
        """A new logged-in AMI connection (the caller closes it)."""
        return Ami(self.host, self.ami_port, self.ami_user, self.ami_secret, timeout)

    @property
    def ami(self) -> Ami:
        """The shared AMI connection, opened by start(); it records every event."""
        if self._ami is None:
            self._ami = self.ami_client()
        return self._ami

    def originate(
        self,
        number: str,
        campaign: str | None = None,
        hold_s: float = 1.0,
        wait: bool = False,
        timeout: float = 30.0,
    ) -> dict[str, str]:
        """Originate Local/<number>@outbound through AMI (no SIP phone involved).

        The Local channel runs the same [outbound] context as agents' calls;
        its other half just waits `hold_s` once answered. With wait=False the
        action is async and returns at once (for latency benchmarks).
        """
        fields = {
            "Channel": f"Local/{number}@outbound",
            "Application": "Wait",
            "Data": str(hold_s),
            "CallerID": f"sentinelle-bench <{number}>",
            "Async": "false" if wait else "true",
            "Timeout": str(int(timeout * 1000)),
        }
        if campaign is not None:
            fields["Variable"] = f"campaign={campaign}"
        return self.ami.action("Originate", **fields)

    def notify_channel(self, channel: str, event: str = "sentinelle-test") -> None:
        """Send an in-dialog SIP NOTIFY to the phone behind a PJSIP channel:
        the cue an :class:`AgentPhone` with on_notify=True waits for."""
        resp = self.ami.action("PJSIPNotify", Channel=channel, Variable=f"Event={event}")
        if resp.get("Response") != "Success":
            raise PbxError(f"PJSIPNotify to {channel} failed: {resp}")

    def getvar(self, channel: str, name: str) -> str | None:
        """Read a channel variable (or a dialplan function) through AMI Getvar."""
        resp = self.ami.action("Getvar", Channel=channel, Variable=name)
        return resp.get("Value") if resp.get("Response") == "Success" else None

    # ----- SIPp

    def carrier(
        self, response: int = 200, ring_ms: int = 0, answer_ms: int = 0, call_ms: int | None = None
    ) -> Carrier:
        """Start (replacing any previous one) the carrier UAS behind the trunk."""
        if self._carrier:
            self._carrier.stop()
        self._carrier = Carrier(self, response, ring_ms, answer_ms, call_ms).start()
        return self._carrier

    def _spawn_call(
        self,
        number: str,
        agent: str = "agent1",
        caller_id: str = "0162000000",
        masked: bool = False,
        campaign: str | None = None,
        send_dtmf: str | None = None,
        hold_ms: int = 500,
        extra_headers: Iterable[str] = (),
        timeout: float = 40.0,
    ) -> tuple[subprocess.Popen, Path, str, str, float]:
        n = next(self._seq)
        scenario = self.sipp_dir / f"call-{n}-{agent}-{number}.xml"
        log = scenario.with_suffix(".msg.log")
        scenario.write_text(
            uac_scenario(number, agent, caller_id, masked, campaign, send_dtmf, hold_ms, extra_headers)
        )
        cmd = [
            *_sipp_cmd(scenario, log, f"{LOOPBACK}:{self.sip_port}", None),
            "-m",
            "1",
            "-l",
            "1",
            "-timeout",
            f"{int(timeout)}s",
            "-timeout_error",
            "-s",
            number,
        ]
        with scenario.with_suffix(".out").open("wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        return proc, log, number, agent, timeout

    def call(
        self,
        number: str,
        agent: str = "agent1",
        caller_id: str = "0162000000",
        masked: bool = False,
        campaign: str | None = None,
        send_dtmf: str | None = None,
        hold_ms: int = 500,
        extra_headers: Iterable[str] = (),
        timeout: float = 40.0,
    ) -> CallResult:
        """Place one call from `agent` to `number` and return how it ended.

        campaign: sent as X-Campaign header (None: the Pbx default applies).
        masked: send "Privacy: id" so Asterisk sees a withheld caller ID.
        send_dtmf: digits sent as SIP INFO (application/dtmf-relay) once
            answered, 200 ms apart, before hanging up.
        hold_ms: how long the answered call lasts before the agent's BYE.
        """
        return self.calls(
            [
                dict(
                    number=number,
                    agent=agent,
                    caller_id=caller_id,
                    masked=masked,
                    campaign=campaign,
                    send_dtmf=send_dtmf,
                    hold_ms=hold_ms,
                    extra_headers=extra_headers,
                    timeout=timeout,
                )
            ]
        )[0]

    def calls(self, specs: Iterable[dict]) -> list[CallResult]:
        """Place several calls at once (one SIPp per call) and return results in order.

        Each spec is a dict of :meth:`call` keyword arguments.
        """
        spawned = [self._spawn_call(**spec) for spec in specs]
        results = []
        for proc, log, number, agent, timeout in spawned:
            try:
                code = proc.wait(timeout + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            results.append(_call_result(number, agent, code, log))
        return results
