"""Classic AGI: Asterisk starts one process per call, `sentinelle-agi`, and
talks to it over stdin/stdout: `AGI(/path/sentinelle-agi,NUMBER,CAMPAIGN)`.

This module is the console script, and it is nearly empty on purpose: the
script imports it before calling `main`, so anything imported here is
imported with the cyclic GC on. `main` turns the GC off first, then loads
the check (`classic`). A process that handles one call and exits has no use
for cycle collection, and its start-up (imports: dataclasses, enums,
regexes, thousands of objects) triggered it dozens of times, ~5-10 % of the
CPU of a call measured on this machine. Memory is not at stake: the process
lives for one call.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from datetime import datetime

    from sentinelle.config import Config
    from sentinelle.pbx.classic import Stats


def main(clock: Callable[[], datetime] | None = None) -> NoReturn:
    """Console script `sentinelle-agi`. argv is the call's (NUMBER CAMPAIGN,
    repeated in the agi_arg_N headers, which are what counts) so it carries
    no option: the config comes from $SENTINELLE_CONFIG (set it in
    Asterisk's environment), else ./sentinelle.toml, else the defaults.
    `clock` is for benchmarks (a frozen one); Asterisk never passes it.

    The process then ends without the interpreter's teardown (freeing every
    module and object: 10-15 ms of CPU per call measured here), since by
    then the store is closed and the answer written: only what Python
    still buffers is flushed first."""
    code = one_call(clock)
    import logging  # loaded by the call already

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream has nothing to flush
            stream.flush()
    os._exit(code)


def one_call(clock: Callable[[], datetime] | None = None) -> int:
    """`main`'s work without its quick exit (tests look at the process
    afterwards): the GC off, then the call."""
    gc.disable()
    from sentinelle.pbx import classic

    return classic.main(clock)


def run(config: Config, clock: Callable[[], datetime], stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None, stats: Stats | None = None) -> int:
    """The check for one call (`classic.run`), for `sentinelle agi`, whose
    process keeps its GC: the click command line is loaded anyway."""
    from sentinelle.pbx import classic

    return classic.run(config, clock, stdin, stdout, stats)


if __name__ == "__main__":  # pragma: no cover
    main()
