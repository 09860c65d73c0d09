"""What several test files share: the test config, a fake Asterisk, a real
`sentinelle serve` subprocess and its probes, evidence and HTTP helpers."""
