"""A grid against the loopback OpenAI server with a fixed latency per call: how close is
the wall clock to the ideal, ceil(trials / concurrency) x attempts x latency?

The server answers a wrong program (`return 0`), so every trial uses all its attempts
and every program is evaluated in the sandbox, as in a real run. It runs in its own
process, as a real API server would, so it does not share the runner's interpreter.

Run: .venv/bin/python bench/grid.py [--latency 0.5] [--concurrency 8 32]
Target: wall / ideal <= 1.15 at concurrency 8 and 32.

Also printed: where the wall clock goes, read from the run's own records (each
response's time and duration): setup, from calling start_run to the start of the first model call;
the calls, from the first call's start to the last reply recorded, against the ideal; the
tail, from the last reply to start_run's return (the last evaluations, then the exports).
And the CPU time of the runner's event-loop thread per call over the whole run (the
openai SDK's request and reply work, recording, setup and exports; the evaluations' own
threads and children excluded; the first concurrency listed also pays the SDK's
first-use imports). docs/BENCHMARKS.md explains how these relate.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from synth.config import RunConfig
from synth.engine.entry import start_run
from tracker.db import open_db

TESTS = Path(__file__).resolve().parents[1] / "tests"
# The test suite's loopback server, answering every call after a fixed delay.
SERVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from openai_server import OpenAIServer, Reply
WRONG = '{"code": "def f(x):\\\\n    return 0"}'
with OpenAIServer(lambda path, body: Reply(text=WRONG, delay=float(sys.argv[2]))) as server:
    print(server.base_url, flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin
"""


def call_span(db_path: Path, run_id: str) -> tuple[float, float]:
    """The start of the run's first model call and the time its last reply was recorded,
    as Unix times, from the responses table (created_at less duration_ms is a call's start)."""
    db = open_db(db_path, readonly=True)
    try:
        rows = db.execute(
            "select r.created_at, r.duration_ms from responses r join attempts a on a.id = r.attempt_id "
            "join trials t on t.id = a.trial_id where t.run_id = ?",
            [run_id],
        ).fetchall()
    finally:
        db.close()
    ends = [datetime.fromisoformat(at).timestamp() for at, _ in rows]
    return min(end - ms / 1000 for end, (_, ms) in zip(ends, rows)), max(ends)


@contextmanager
def server_process(latency: float):
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(TESTS), str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per call")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--trials", type=int, default=16, help="trials per grid point")
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 25, 30, 40])
    parser.add_argument("--test-size", type=int, default=10000)
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = "sk-bench-not-a-key"
    trials = args.trials * len(args.lengths)
    print(
        f"fn_a at L={args.lengths}, {trials} trials x {args.attempts} attempts, "
        f"latency {args.latency} s, test size {args.test_size}"
    )
    print(
        f"{'concurrency':>11} {'calls':>6} {'wall s':>8} {'ideal s':>8} {'ratio':>6} "
        f"{'setup ms':>8} {'calls s':>8} {'/ ideal':>7} {'tail ms':>7} {'loop CPU ms/call':>16}"
    )
    with server_process(args.latency) as base_url:
        for concurrency in args.concurrency:
            with tempfile.TemporaryDirectory() as tmp:
                config = RunConfig(
                    functions=["fn_a"],
                    lengths=args.lengths,
                    num_trials=args.trials,
                    attempts=args.attempts,
                    test_size=args.test_size,
                    concurrency=concurrency,
                    api_base_url=base_url,
                    out_dir=str(Path(tmp) / "out"),
                    run_id=f"bench-{concurrency}",
                )
                db = Path(tmp) / "bench.db"
                warm = {"dry_run": True, "run_id": "warm", "out_dir": str(Path(tmp) / "warm")}
                start_run(
                    RunConfig(**{**config.to_json(), **warm}), db_path=db, progress_stream=io.StringIO()
                )  # datasets built
                started, cpu = time.time(), time.thread_time()
                result = start_run(config, db_path=db, progress_stream=io.StringIO())
                ended, cpu = time.time(), time.thread_time() - cpu
                calls = result.manifest["row_stats"]["attempt_rows"]
                first, last = call_span(db, config.run_id)
            wall = ended - started
            ideal = math.ceil(trials / concurrency) * args.attempts * args.latency
            print(
                f"{concurrency:>11} {calls:>6} {wall:>8.2f} {ideal:>8.2f} {wall / ideal:>6.3f} "
                f"{1000 * (first - started):>8.0f} {last - first:>8.2f} {(last - first) / ideal:>7.3f} "
                f"{1000 * (ended - last):>7.0f} {1000 * cpu / calls:>16.2f}"
            )
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
