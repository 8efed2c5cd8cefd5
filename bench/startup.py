"""Benchmark how long the CLI takes to answer before any work: `synth --help`,
`synth tasks` and `synth run --help`, each a fresh process, as a user types them.

The CLI imports its commands' libraries (the engine, the store, the SDK, numpy) only
inside the command that needs them; this shows what that keeps off every start.

    python bench/startup.py [--runs N]

Target (issue 13): `synth --help` about 0.3 s or less.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SYNTH = Path(sys.executable).with_name("synth")
COMMANDS = (["--help"], ["tasks"], ["run", "--help"])


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(SYNTH), *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="timed runs per command (after one warm-up)")
    runs = parser.parse_args().runs
    print(f"{platform.machine()}, {platform.python_version()}, {runs} runs each (min / median / max)")
    for args in COMMANDS:
        seconds(args)  # warm-up: the file cache
        times = sorted(seconds(args) for _ in range(runs))
        label = " ".join(["synth", *args])
        print(f"{label:<20} {times[0]:.3f} / {statistics.median(times):.3f} / {times[-1]:.3f} s")


if __name__ == "__main__":
    main()
