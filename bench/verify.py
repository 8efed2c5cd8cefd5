"""What `synth verify` costs.

Run by hand: ``.venv/bin/python bench/verify.py [--uci-dir ../shared/uci] [--skip-grid]``.

1. The exhaustive check of one correct L=20 parity program (all 1,048,576 inputs) in
   the sandbox, against the same program exec()'d and called here over the same inputs
   (the same chunks, scored the same way), and the runner's peak memory. Targets
   (issue 18): at most 3 s, within 1.5x of in process, the runner under 300 MB.
2. Verifying the selected programs of a 19-task x 5-trial run (the `formula` proposer,
   one attempt each, trained at L=40, 100/100/10,000) at four lengths with 10,000 rows per set (balanced
   sets and samples, no enumeration), the balanced datasets built first; then the same
   again, everything stored. Target: at most 60 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from synth.sandbox.zygote import to01
from synth.tasks import get_task
from synth.verification import sets
from synth.verification.checks import check
from synth.verification.readings import readings
from synth.verification.verify import verify_runs

PARITY = "def f(x):\n    return x.count('1') % 2\n"
# Every task with lengths but fn_aa (from 36) serves them all; 40 serves fn_h (multiples
# of 4) and fn_aa alike, so the run is trained there.
LENGTHS = [20, 40, 60, 100]
SYNTH = Path(sys.executable).with_name("synth")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exhaustive() -> None:
    rules = readings(get_task("fn_a"), 20, 20)
    program = {
        k: None
        for k in (
            "run_id",
            "attempt_id",
            "program_hash",
            "fn",
            "trial",
            "attempt",
            "selected",
            "train_length",
        )
    }
    program |= {"code": PARITY, "func_name": "f"}
    before = peak_mb()
    check([(program, frozenset())], "binary", sets.exhaustive(4, rules), timeout=60)  # the zygote starts
    start = time.perf_counter()
    (row,) = check([(program, frozenset())], "binary", sets.exhaustive(20, rules), timeout=60)
    sandboxed = time.perf_counter() - start
    after = peak_mb()
    assert row["exact"] == 1, row

    namespace: dict = {}
    exec(compile(PARITY, "<candidate>", "exec"), namespace)
    f = namespace["f"]
    start = time.perf_counter()
    correct = 0
    for inputs, labels in sets.exhaustive(20, rules).chunks():
        predicted = np.fromiter((to01(f(x)) for x in inputs), dtype=np.uint8, count=len(inputs))
        correct += int((predicted == labels["task"]).sum())
    in_process = time.perf_counter() - start
    assert correct == 1 << 20
    print("exhaustive check, correct parity program, L=20 (1,048,576 inputs)")
    print(
        f"  sandboxed    {sandboxed:6.2f} s   (sandbox time {row['duration_ms'] / 1000:.2f} s, isolation {row['isolation']!r})"
    )
    print(f"  in process   {in_process:6.2f} s   ratio {sandboxed / in_process:.2f}x")
    print(f"  runner peak RSS {after:.0f} MB (before the check: {before:.0f} MB)")


def grid(uci_dir: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        env = {**os.environ, "SYNTH_UCI_DIR": uci_dir}
        start = time.perf_counter()
        subprocess.run(
            [str(SYNTH), "run", "--provider", "formula", "--lengths", "40", "--num-trials", "5",
             "--attempts", "1", "--time-budget", "0.5", "--db", str(db), "--out-dir", folder,
             "--run-id", "bench"],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        print(f"recorded the run (19 tasks x 5 trials, formula): {time.perf_counter() - start:.0f} s")
        for label in ("first verify (balanced datasets built)", "verify again (all stored)"):
            start = time.perf_counter()
            rows = verify_runs(
                ["bench"], db_path=db, lengths=LENGTHS, test_size=10_000, samples=10_000,
                exhaustive_up_to=0, uci_dir=Path(uci_dir),
            )  # fmt: skip
            took = time.perf_counter() - start
            sets_checked = len({(r["attempt_id"], r["eval_length"], r["set_key"]) for r in rows})
            print(f"{label}: {took:.1f} s, {sets_checked} program x set checks, {len(rows)} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[2] / "shared" / "uci"
    parser.add_argument("--uci-dir", default=os.environ.get("SYNTH_UCI_DIR", str(shared)))
    parser.add_argument("--skip-grid", action="store_true", help="only the exhaustive check")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    exhaustive()
    if not args.skip_grid:
        grid(args.uci_dir)


if __name__ == "__main__":
    main()
