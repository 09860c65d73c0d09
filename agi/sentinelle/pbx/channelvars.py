"""Names shared with the dialplan (dialplan/*.conf).

One place, so the Python side and the Asterisk side cannot drift apart:
tests/test_dialplan_agreement.py parses the shipped dialplan and checks that
every SENTINELLE_* variable, FastAGI route and user event it uses is here,
and that every name here is used there or listed in PYTHON_ONLY.
"""

# Channel variables sentinelle sets on the channel (read by the dialplan).
VERDICT = "SENTINELLE_VERDICT"  # ALLOW | BLOCK
RULES = "SENTINELLE_RULES"  # comma-separated rule ids, empty on ALLOW
REASON = "SENTINELLE_REASON"  # short ASCII text
RETRY_AT = "SENTINELLE_RETRY_AT"  # ISO 8601 or empty
ATTEMPT = "SENTINELLE_ATTEMPT"  # attempt id, for the ARI listener

# The disposition route's answer: OK (recorded) or ERROR (with REASON).
DISPOSITION = "SENTINELLE_DISPOSITION"
DISPOSITION_OK, DISPOSITION_ERROR = "OK", "ERROR"

# The outcome route's answer (hangup handler): the outcome recorded or kept
# (answered, busy, no-answer, failed, unknown), or ERROR (with REASON); to a
# continued report (a transfer's second channel) that found no outcome to
# extend yet, OPEN.
OUTCOME = "SENTINELLE_OUTCOME"
OUTCOME_ERROR = "ERROR"
OUTCOME_OPEN = "open"

# When the check returned (Asterisk's clock, epoch seconds), set by the
# check subroutine and inherited: the outcome handlers' time base, read by
# the dialplan only (the route gets it as the `checked=` argument).
CHECKED = "SENTINELLE_CHECKED"

# Channel variable the dialplan may set instead of passing AGI argument 2.
CAMPAIGN = "SENTINELLE_CAMPAIGN"

# Agent conference topology (dialplan/extensions_conference.conf), read by
# the dialplan only: the ConfBridge room an agent waits in or a callee is
# sent to (the dialer passes it), and, on the callee's channel in the room,
# the attempt of that call. Not SENTINELLE_ATTEMPT there: the ARI listener
# would take a channel carrying that one (channelvars) for an agent's, and
# count the callee's keys.
ROOM = "SENTINELLE_ROOM"
CALLEE_ATTEMPT = "SENTINELLE_CALLEE_ATTEMPT"

ALLOW, BLOCK = "ALLOW", "BLOCK"

# Dialplan globals only Asterisk reads: where the FastAGI service listens
# (agi://host:port, the route is appended), and the example's campaign.
AGI_URL = "SENTINELLE_AGI"
DEFAULT_CAMPAIGN = "SENTINELLE_DEFAULT_CAMPAIGN"

# The FastAGI routes (agi://host:port/<route>), registered in pbx/routes.
ROUTE_CHECK = "check"
ROUTE_DISPOSITION = "disposition"  # an agent's refusal or disposition, recorded synchronously
ROUTE_OUTCOME = "outcome"  # a call's outcome, from the hangup handler the check pushes

# User events emitted by the dialplan and read by the ARI listener, and the
# fields of their payload the listener reads.
EVENT_ATTEMPT = "SentinelleAttempt"
EVENT_DISPOSITION = "SentinelleDisposition"
FIELD_ATTEMPT = "attempt"  # both events: the attempt id
FIELD_CODE = "code"  # SentinelleDisposition: refused | do-not-call | callback | wrong-number

# The contexts dialplan/extensions_sentinelle.conf defines, each entered at
# `s,1`: the check subroutine, the disposition subroutine the feature codes
# run, and the hangup handler the check pushes. `serve --check-config` asks
# the live Asterisk for them (pbx/livecheck.py).
CONTEXT_CHECK = "sentinelle-check"
CONTEXT_DISPOSITION = "sentinelle-disposition"
CONTEXT_OUTCOME = "sentinelle-outcome"
CONTEXT_OUTCOME_CONTINUED = "sentinelle-outcome-continued"  # a transferred call's end
CONTEXT_CONFERENCE_KEYS = "sentinelle-conference-keys"  # ConfBridge's DTMF menu runs these
CONTEXT_CONFERENCE_DISPOSITION = "sentinelle-conference-disposition"
CONTEXTS = (CONTEXT_CHECK, CONTEXT_DISPOSITION, CONTEXT_OUTCOME, CONTEXT_OUTCOME_CONTINUED,
            CONTEXT_CONFERENCE_KEYS, CONTEXT_CONFERENCE_DISPOSITION)

# The [applicationmap] of dialplan/features_sentinelle.conf: feature name ->
# (DTMF code, disposition code passed to [sentinelle-disposition]). The
# refusal feature's code is `[ari] refusal_dtmf` (its default here): the
# listener watches the same digits where the feature is not enabled.
FEATURE_REFUSAL = "sentinelle_refusal"
FEATURES: dict[str, tuple[str, str]] = {
    "sentinelle_refused": ("*81", "refused"),
    "sentinelle_do_not_call": ("*82", "do-not-call"),
    "sentinelle_callback": ("*83", "callback"),
    "sentinelle_wrong_number": ("*84", "wrong-number"),
    FEATURE_REFUSAL: ("*9", "refused"),
}


def feature_line(name: str, dtmf: str | None = None) -> str:
    """The applicationmap line of a sentinelle feature, as shipped (with
    another DTMF code when `[ari] refusal_dtmf` changed the refusal's)."""
    code, disposition = FEATURES[name]
    return f"{name} => {dtmf or code},self,Gosub({CONTEXT_DISPOSITION},s,1({disposition}))"


# Names the Python side reads that the shipped dialplan does not use (none
# today: SENTINELLE_CAMPAIGN is the dialer example's campaign variable).
PYTHON_ONLY: frozenset[str] = frozenset()
