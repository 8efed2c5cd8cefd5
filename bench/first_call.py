"""What a run of a large grid costs before its first model call.

fn_a at L=20 with 100,000 trials (the default bound on a grid's trials), one attempt,
against the test suite's loopback server in this process; its dataset built first (a
dry run of one trial), so only what the run itself does is counted. At the first request
the server notes the time and the runner's peak memory, then the run is stopped
(Ctrl-C), and the trial rows and the database's size are read.

Run: .venv/bin/python bench/first_call.py [--trials 100000]
Target (bad-input issue, item 8): no grid materialised before the first call.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from synth.config import RunConfig
from synth.engine.entry import start_run
from synth.errors import RunInterrupted

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from openai_server import OpenAIServer, Reply  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000)
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = "sk-bench-not-a-key"
    first: dict[str, float] = {}

    def answer(path, body):
        if not first:
            first.update(at=time.perf_counter(), peak=peak_mb())
            os.kill(os.getpid(), signal.SIGINT)  # the run stops as at Ctrl-C
        return Reply(text='{"code": "def f(x):\\n    return 0"}')

    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(answer) as server:
        db = Path(tmp) / "bench.db"
        config = RunConfig(
            functions=["fn_a"],
            lengths=[20],
            num_trials=args.trials,
            attempts=1,
            api_base_url=server.base_url,
            out_dir=str(Path(tmp) / "out"),
            run_id="big",
        )
        warm = {"dry_run": True, "num_trials": 1, "run_id": "warm", "out_dir": str(Path(tmp) / "warm")}
        start_run(RunConfig(**{**config.to_json(), **warm}), db_path=db, progress_stream=io.StringIO())
        before, start = peak_mb(), time.perf_counter()
        try:
            start_run(config, db_path=db, progress_stream=io.StringIO())
        except RunInterrupted:
            pass
        with sqlite3.connect(db) as conn:
            (rows,) = conn.execute("select count(*) from trials where run_id = 'big'").fetchone()
        size = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*")) / 1e6
    print(f"{args.trials:,} trials, fn_a L=20, load average {os.getloadavg()[0]:.2f}")
    print(f"  start_run to the first call  {first['at'] - start:6.2f} s")
    print(f"  runner's peak RSS then       {first['peak']:6.0f} MB (before start_run: {before:.0f} MB)")
    print(f"  trial rows once stopped      {rows:6,}")
    print(f"  database size once stopped   {size:6.1f} MB")


if __name__ == "__main__":
    main()
