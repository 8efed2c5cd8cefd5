"""What the classical learners cost: a proposal, and its program in the sandbox.

Run by hand: ``.venv/bin/python bench/learners.py [--repeats 3]``. For each learner, on
fn_a at L=100 (binary) and on adult (fn_m, tabular; needs ../shared/uci or --uci-dir),
with 100 training and 100 validation rows: the median time of one proposal (the whole
grid fitted and the program written, as a worker does it, scikit-learn imported
beforehand) and of one sandboxed evaluation of its program on 100 + 10,000 rows, with
the program's size. Targets: a proposal within 2 s, an evaluation within 1 s. The load
average is printed: wall-clock figures suffer from anything else running; CPU times
much less so: of a proposal (this process: the fit runs on one thread), and of the
program run over the same rows in this process (exec, no sandbox).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from synth.datasets.grid import Sizes, plan_grid
from synth.datasets.splits import build_dataset
from synth.providers.offline import learners
from synth.providers.offline.base import rng_for
from synth.providers.offline.features import parse
from synth.sandbox import evaluate

POINTS = [("fn_a", 100), ("fn_m", 14)]


def cpu_of(code: str, kind: str, inputs: list[str]) -> float:
    """CPU seconds of the program over ``inputs`` in this process (tabular rows parsed first)."""
    namespace: dict = {}
    exec(compile(code, "<program>", "exec"), namespace)
    f = namespace["f"]
    rows = parse(kind, inputs)
    start = time.process_time()
    for row in rows:
        f(row)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--uci-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "uci"
    )
    args = parser.parse_args()
    learners.sklearn()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    print(f"{'learner':9} {'task':6} {'propose s':>10} {'cpu s':>6} {'eval s':>8} {'cpu s':>6} {'chars':>8}")
    for fn, length in POINTS:
        point = plan_grid([fn], [length], Sizes(100, 100, 10_000), 42, uci_dir=args.uci_dir)[0]
        ds = build_dataset(point, uci_dir=args.uci_dir)
        inputs = [x for split in ("val", "test") for x, _ in ds.splits[split]]
        for name in learners.LEARNERS:
            fits, cpus, evals, runs = [], [], [], []
            for _ in range(args.repeats):  # attempt 1: every column, the most work
                start, cpu = time.perf_counter(), time.process_time()
                fitted = learners.fit(
                    name, ds.splits["train"], point.task.kind, rng_for(42, 1, 1), 1, ds.splits["val"]
                )
                code = fitted.program()
                fits.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu)
                ev = evaluate(code, "f", point.task.kind, inputs, timeout=60)
                assert ev.status == "ok" and ev.n_errors == 0, ev.errors
                evals.append(ev.duration_ms / 1000)
                runs.append(cpu_of(code, point.task.kind, inputs))
            print(
                f"{name:9} {fn:6} {statistics.median(fits):10.2f} {statistics.median(cpus):6.2f} "
                f"{statistics.median(evals):8.2f} {statistics.median(runs):6.2f} {len(code):8,}",
                flush=True,
            )


if __name__ == "__main__":
    main()
