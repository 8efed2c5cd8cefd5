"""Build the whole default grid (19 tasks at their default lengths, 100/100/10000) into a
fresh database and print the time per grid point and in total.

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

from synth.dataset_cache import ensure_datasets
from synth.datasets import Sizes, plan_grid
from tracker.db import open_db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uci-dir", type=Path, default=os.environ.get("SYNTH_UCI_DIR"))
    args = parser.parse_args()
    started = time.perf_counter()
    points = plan_grid(None, None, Sizes(100, 100, 10000), 42, uci_dir=args.uci_dir)
    planned = time.perf_counter() - started
    print(f"{'grid point':<16} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(Path(tmp) / "bench.db")
        for point in points:
            t0 = time.perf_counter()
            ensure_datasets(db, [point], uci_dir=args.uci_dir)
            print(f"{point.task.id + ' L=' + str(point.length):<16} {time.perf_counter() - t0:>8.3f}")
        total = time.perf_counter() - started
        size = (Path(tmp) / "bench.db").stat().st_size
    print(f"\nplanning (incl. loading UCI tables): {planned:.2f} s")
    print(f"total: {total:.2f} s for {len(points)} grid points "
          f"({os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}); database {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
