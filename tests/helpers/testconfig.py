"""The one test configuration: a real TOML file the fixtures write, and the
caller ID every automated-dialing test presents."""

CONFIG = """
[store]
path = "sentinelle.db"

[policy]
regime = "auto"
consent_max_age_days = 365
foreign = "block"

[professionals.acme]
caller_ids = ["0142000000"]

[professionals.other]

[campaigns.promo]
professional = "acme"
purpose = "prospecting"
dialing = "automated"

[campaigns.promo2]
professional = "acme"

[campaigns.manual]
professional = "acme"
dialing = "manual"

[campaigns.press]
professional = "acme"
purpose = "press"

[campaigns.service]
professional = "acme"
purpose = "service"

[campaigns.elsewhere]
professional = "other"
"""

# The one professional and prospecting campaign that the service-level tests
# (a real `serve`, a real Asterisk) share; the fixtures' CONFIG above adds the
# other purposes and professionals the rule-level tests need.
ACME_PROMO = """
[professionals.acme]

[campaigns.promo]
professional = "acme"
purpose = "prospecting"
dialing = "automated"
"""

NPV = "0162000000"  # an Arcep multi-purpose number: valid caller ID for automated dialing
