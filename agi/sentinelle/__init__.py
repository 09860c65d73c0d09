"""sentinelle: decides, before an outbound call is bridged, whether French
telephone-prospecting law (docs/rules.md, rules R-00..R-43) allows it."""

__version__ = "0.1.0"
