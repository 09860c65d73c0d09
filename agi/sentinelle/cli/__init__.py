"""The `sentinelle` command line (see `sentinelle.cli.main`)."""

from sentinelle.cli.main import agi_main, main

__all__ = ["agi_main", "main"]
