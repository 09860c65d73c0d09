"""Names shared with the dialplan (dialplan/extensions_sentinelle.conf).

One place, so the Python side and the Asterisk side cannot drift apart.
"""

# Channel variables sentinelle sets on the channel (read by the dialplan).
VERDICT = "SENTINELLE_VERDICT"  # ALLOW | BLOCK
RULES = "SENTINELLE_RULES"  # comma-separated rule ids, empty on ALLOW
REASON = "SENTINELLE_REASON"  # short ASCII text
RETRY_AT = "SENTINELLE_RETRY_AT"  # ISO 8601 or empty
ATTEMPT = "SENTINELLE_ATTEMPT"  # attempt id, for the ARI listener

# Channel variable the dialplan may set instead of passing AGI argument 2.
CAMPAIGN = "SENTINELLE_CAMPAIGN"

ALLOW, BLOCK = "ALLOW", "BLOCK"

# The FastAGI route (agi://host:port/check).
ROUTE_CHECK = "check"

# User events emitted by the dialplan and read by the ARI listener.
EVENT_ATTEMPT = "SentinelleAttempt"
EVENT_DISPOSITION = "SentinelleDisposition"
