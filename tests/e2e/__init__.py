"""End-to-end tests on a real Asterisk (tests/pbx) and sipp."""
