"""End-to-end harness: a real Asterisk (chroot, see build-root.sh) driven by SIPp.

Import from tests as ``from pbx import Pbx`` (pytest puts ``tests/`` on
sys.path because ``tests/`` has no ``__init__.py``), or as
``from tests.pbx import Pbx`` with the repository root on sys.path.
"""

from .pbx import (
    Ami,
    CallResult,
    Carrier,
    Pbx,
    PbxError,
    SipMessage,
    ensure_root,
    free_ports,
    parse_sipp_log,
)

__all__ = [
    "Ami",
    "CallResult",
    "Carrier",
    "Pbx",
    "PbxError",
    "SipMessage",
    "ensure_root",
    "free_ports",
    "parse_sipp_log",
]
