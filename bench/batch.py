"""A 1,000-request wave through the loopback server's Batch API: the runner's CPU.

One grid point (fn_a at L=20), 1,000 trials of one attempt: one wave of 1,000 requests,
built, uploaded, created, polled, downloaded, and every line recorded, evaluated and
exported, by `synth run --batch`; then the same grid with direct calls. The server runs
in its own process (bench/grid.py's), answering a wrong program at once.

Printed: the CPU time of the runner's event-loop thread (the evaluations' own threads
and children excluded) for each run, and the batch run's less the direct run's: the
cost of going through the Batch API rather than calling.

Run: .venv/bin/python bench/batch.py [--trials 1000]
Target: the batch run's loop CPU for a 1,000-request wave <= 5 s.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

from grid import server_process

from synth.config import RunConfig
from synth.engine.entry import start_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="requests in the wave")
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = "sk-bench-not-a-key"
    print(f"fn_a at L=20, {args.trials} trials x 1 attempt (train/val/test 10/10/20)")
    print(f"{'mode':>7} {'requests':>8} {'wall s':>7} {'loop CPU s':>10}")
    cpu = {}
    with server_process(0.0) as base_url, tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        for mode in ("warm", "direct", "batch"):
            config = RunConfig(
                functions=["fn_a"],
                lengths=[20],
                num_trials=args.trials,
                attempts=1,
                train_size=10,
                val_size=10,
                test_size=20,
                concurrency=32,
                api_base_url=base_url,
                dry_run=mode == "warm",  # the dataset built and the imports done first
                batch=mode == "batch",
                batch_poll_interval=0.05,
                batch_poll_max=0.05,
                out_dir=str(Path(tmp) / mode),
                run_id=mode,
            )
            started, used = time.time(), time.thread_time()
            result = start_run(config, db_path=db, progress_stream=io.StringIO())
            wall, cpu[mode] = time.time() - started, time.thread_time() - used
            if mode != "warm":
                requests = result.manifest["row_stats"]["attempt_rows"]
                print(f"{mode:>7} {requests:>8} {wall:>7.2f} {cpu[mode]:>10.2f}")
    print(f"batch less direct: {cpu['batch'] - cpu['direct']:.2f} s of loop CPU")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
