"""Wall time of ``hoijax --help`` and of one subcommand's ``--help`` (fresh processes).

The top-level help lists the commands from a table in ``hoijax/cli/main.py`` without importing
any of them, so it should not load JAX; a subcommand's help imports that command's module
(``hoijax track --help`` loads JAX and the tracker's settings). Each command runs ``--repeats``
times in a new Python process after one warm-up run (which fills the OS file cache); the median
and the spread go to ``experiments/results/bench_cli_help_cpu.json``.

    python experiments/bench_cli_help.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import package_versions

_COMMANDS = {
    "hoijax --help": ["--help"],
    "hoijax track --help": ["track", "--help"],
    "hoijax view --help": ["view", "--help"],
}


def _time(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "bench_cli_help_cpu.json")
    args = ap.parse_args()
    script = shutil.which("hoijax")
    entry = [script] if script else [sys.executable, "-m", "hoijax.cli.main"]
    rows = {}
    for name, extra in _COMMANDS.items():
        argv = entry + extra
        _time(argv)  # warm-up: file cache, .pyc files
        times = [_time(argv) for _ in range(args.repeats)]
        rows[name] = {"median_s": statistics.median(times), "min_s": min(times),
                      "max_s": max(times), "repeats": args.repeats}
        print(f"{name:24s} median {rows[name]['median_s']:.3f} s "
              f"(min {min(times):.3f}, max {max(times):.3f})")
    result = {
        "benchmark": "wall time of the CLI's help, fresh process each run",
        "entry_point": " ".join(Path(e).name for e in entry),
        "results": rows,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus_usable": len(os.sched_getaffinity(0)),
                    "python": platform.python_version()},
        "versions": package_versions("hoijax", "tyro", "jax", "viser"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
