"""`python -m sentinelle.cli`."""

from sentinelle.cli.main import main

main()
