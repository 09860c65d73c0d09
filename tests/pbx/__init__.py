"""End-to-end harness: a real Asterisk (chroot, see build-root.sh) driven by SIPp.

Import it as ``from tests.pbx import Pbx`` (the repository root is on
sys.path under pytest, which imports ``tests`` as a package).
"""

from .pbx import (
    AgentPhone,
    Ami,
    CallResult,
    Carrier,
    Pbx,
    PbxError,
    SipMessage,
    agent_phones,
    agent_scenario,
    ensure_root,
    free_ports,
    parse_sipp_log,
    with_ari_channelvars,
)

__all__ = [
    "AgentPhone",
    "Ami",
    "CallResult",
    "Carrier",
    "Pbx",
    "PbxError",
    "SipMessage",
    "agent_phones",
    "agent_scenario",
    "ensure_root",
    "free_ports",
    "parse_sipp_log",
    "with_ari_channelvars",
]
