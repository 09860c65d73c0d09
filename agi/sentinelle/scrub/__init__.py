"""Scrubbing lead lists: each lead's verdict now, and when (or on what new
fact) it becomes callable, before a dialer wastes an attempt on it."""

from sentinelle.scrub.engine import NEEDS, LeadVerdict, Scrubber, lead_verdict, needs_of
from sentinelle.scrub.leads import FORMATS, LeadsError, read_leads
from sentinelle.scrub.run import Options, Summary, open_leads, parse_within, scrub, serial

__all__ = [
    "FORMATS",
    "NEEDS",
    "LeadVerdict",
    "LeadsError",
    "Options",
    "Scrubber",
    "Summary",
    "lead_verdict",
    "needs_of",
    "open_leads",
    "parse_within",
    "read_leads",
    "scrub",
    "serial",
]
