"""What a classic AGI check imports, and what the process costs (issue #15).

    .venv/bin/python bench/bench_agi_imports.py [--calls N] [--base-agi DIR]

Runs one classic check at a time as Asterisk would (`sentinelle-agi`'s code
in a fresh Python, the AGI headers on stdin, `200 result=1` answers), on a
store and config of its own, and reports, over N calls (default 11, after
one call that creates the store and the start-up cache):

- the import time `python -X importtime` prints: the sum of the top-level
  modules' cumulative times, and the heaviest modules by name;
- the process's CPU time (user + system), in a run without -X importtime.

`--base-agi DIR` runs the same calls, interleaved, with the package in DIR
(another checkout's `agi/`, e.g. a git worktree of the commit before issue
#15) as the baseline of the same run: its console script is
`sentinelle.pbx.stdio:main` when DIR has it, else the one before it,
`sentinelle.cli.main:agi_main`.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, write_result

sys.path.insert(0, str(REPO))
from tests.helpers.fakeasterisk import classic_stdin
from tests.helpers.testconfig import CONFIG

ENTRY_NOW = "from sentinelle.pbx.stdio import main; main()"
ENTRY_BEFORE_15 = "from sentinelle.cli.main import agi_main; agi_main()"
NAMED = ("sqlite_utils", "numpy", "holidays", "phonenumbers", "click", "rich", "httpx",
         "prometheus_client", "matplotlib", "asyncio", "sentinelle.config", "sentinelle.core.numbers",
         "sentinelle.core.calendar", "sentinelle.core.rules", "sqlite3", "logging", "tomllib")
# A call to a service campaign: no consent needed, an ALLOW that records.
SESSION = classic_stdin("0612345678", campaign="service")
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


class Variant:
    def __init__(self, name: str, package_dir: Path, workdir: Path) -> None:
        self.name = name
        self.package_dir = package_dir
        stdio = package_dir / "sentinelle" / "pbx" / "stdio.py"
        self.entry = ENTRY_NOW if stdio.exists() else ENTRY_BEFORE_15
        self.dir = workdir / name
        self.dir.mkdir()
        config = self.dir / "sentinelle.toml"
        config.write_text(CONFIG.replace('"sentinelle.db"', f'"{self.dir / "sentinelle.db"}"'))
        self.env = {"SENTINELLE_CONFIG": str(config), "PATH": "/usr/bin:/bin",
                    "PYTHONPATH": str(package_dir)}
        self.imports_ms: list[float] = []
        self.cpu_ms: list[float] = []
        self.modules: dict[str, float] = {}

    def init(self) -> None:
        subprocess.run([sys.executable, "-c", "import sentinelle.cli.main as m; m.main(['init'])"],
                       env=self.env, cwd="/", capture_output=True, check=True)
        self.call(importtime=False)  # the new code builds its start-up cache here

    def call(self, importtime: bool) -> tuple[str, float]:
        args = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", self.entry]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(args, input=SESSION, capture_output=True, text=True, env=self.env,
                           cwd="/", check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if 'SET VARIABLE SENTINELLE_VERDICT "ALLOW"' not in r.stdout:
            raise SystemExit(f"{self.name}: the check did not answer ALLOW\n{r.stdout}\n{r.stderr}")
        cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
        return r.stderr, cpu

    def measure(self) -> None:
        stderr, _ = self.call(importtime=True)
        total = 0
        modules = {}
        for line in stderr.splitlines():
            m = _LINE.match(line)
            if m:
                if not m.group(3):  # a top-level import: its cumulative time counts once
                    total += int(m.group(2))
                modules[m.group(4)] = int(m.group(2)) / 1000
        self.imports_ms.append(total / 1000)
        self.modules = modules
        self.cpu_ms.append(self.call(importtime=False)[1])

    def summary(self) -> dict[str, Any]:
        return {"entry": self.entry, "package_dir": str(self.package_dir),
                "imports_ms_median": round(statistics.median(self.imports_ms), 1),
                "imports_ms": [round(x, 1) for x in self.imports_ms],
                "cpu_ms_median": round(statistics.median(self.cpu_ms), 1),
                "cpu_ms": [round(x, 1) for x in self.cpu_ms],
                "named_modules_ms": {k: round(self.modules[k], 1) for k in NAMED
                                     if k in self.modules}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=11)
    ap.add_argument("--base-agi", metavar="DIR", help="the baseline's package directory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sentinelle-bench-imports-") as tmp:
        variants = [Variant("now", REPO / "agi", Path(tmp))]
        if args.base_agi:
            variants.append(Variant("base", Path(args.base_agi).resolve(), Path(tmp)))
        for v in variants:
            v.init()
        for i in range(args.calls):  # interleaved, each order in turn
            for v in variants if i % 2 == 0 else variants[::-1]:
                v.measure()
    result: dict[str, Any] = {"calls": args.calls}
    for v in variants:
        s = result[v.name] = v.summary()
        print(f"{v.name:5s} ({v.entry.split(';')[0]})\n"
              f"  imports (-X importtime) median {s['imports_ms_median']:.1f} ms, "
              f"CPU per process median {s['cpu_ms_median']:.1f} ms\n"
              f"  named: " + ", ".join(f"{k} {t}" for k, t in s["named_modules_ms"].items()))
    if args.base_agi:
        now, base = result["now"], result["base"]
        result["ratio_imports"] = round(now["imports_ms_median"] / base["imports_ms_median"], 2)
        result["ratio_cpu"] = round(now["cpu_ms_median"] / base["cpu_ms_median"], 2)
        print(f"now/base: imports {result['ratio_imports']}x, CPU {result['ratio_cpu']}x")
    write_result("bench_agi_imports", False, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
