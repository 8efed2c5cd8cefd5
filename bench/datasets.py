"""Build the whole default grid (19 tasks at their default lengths, 100/100/10000) into a
fresh database, as `synth datasets build` does, and print the wall time; then time each
grid point alone, in process, to show where the time goes.

Run: .venv/bin/python bench/datasets.py [--uci-dir DIR]
Target: the whole grid in under 13 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from synth.datasets.build import build_grid
from synth.datasets.grid import Sizes, plan_grid
from synth.datasets.splits import build_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uci-dir", type=Path, default=os.environ.get("SYNTH_UCI_DIR"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        started = time.perf_counter()
        stored = build_grid(uci_dir=args.uci_dir, db_path=db)
        wall = time.perf_counter() - started
        size = db.stat().st_size
    print(f"{'grid point':<16} {'seconds alone':>13}")
    alone = 0.0
    for point in plan_grid(None, None, Sizes(100, 100, 10000), 42, uci_dir=args.uci_dir):
        t0 = time.perf_counter()
        build_dataset(point, uci_dir=args.uci_dir)
        took = time.perf_counter() - t0
        alone += took
        print(f"{point.task.id + ' L=' + str(point.length):<16} {took:>13.3f}")
    print(f"\nsum of grid points alone: {alone:.2f} s")
    print(
        f"whole grid, as `synth datasets build`: {wall:.2f} s wall for {len(stored)} grid points "
        f"into a fresh database of {size / 1e6:.0f} MB"
    )
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
