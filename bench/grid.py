"""A grid against the loopback OpenAI server with a fixed latency per call: how close is
the wall clock to the ideal, ceil(trials / concurrency) x attempts x latency?

The server answers a wrong program (`return 0`), so every trial uses all its attempts
and every program is evaluated in the sandbox, as in a real run. It runs in its own
process, as a real API server would, so it does not share the runner's interpreter.

Run: .venv/bin/python bench/grid.py [--latency 0.5] [--concurrency 8 32]
Target: wall / ideal <= 1.15 at concurrency 8 and 32.

Also printed, per call: the wall clock beyond the ideal, and the CPU time of the
runner's event-loop thread for the whole run (the openai SDK's request and reply work,
recording attempts and evaluations, setup and exports; the evaluations' own threads and
children excluded; the first concurrency listed also pays the SDK's first-use imports).
docs/BENCHMARKS.md explains how the two relate.
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
from pathlib import Path

from synth.config import RunConfig
from synth.run import start_run

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


@contextmanager
def server_process(latency: float):
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(TESTS), str(latency)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
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
    print(f"fn_a at L={args.lengths}, {trials} trials x {args.attempts} attempts, "
          f"latency {args.latency} s, test size {args.test_size}")  # fmt: skip
    print(f"{'concurrency':>11} {'calls':>6} {'wall s':>8} {'ideal s':>8} {'ratio':>6} "
          f"{'over ms/call':>12} {'loop CPU ms/call':>16}")  # fmt: skip
    with server_process(args.latency) as base_url:
        for concurrency in args.concurrency:
            with tempfile.TemporaryDirectory() as tmp:
                config = RunConfig(
                    functions=["fn_a"], lengths=args.lengths, num_trials=args.trials,
                    attempts=args.attempts, test_size=args.test_size,
                    concurrency=concurrency, api_base_url=base_url,
                    out_dir=str(Path(tmp) / "out"), run_id=f"bench-{concurrency}",
                )  # fmt: skip
                db = Path(tmp) / "bench.db"
                start_run(RunConfig(**{**config.to_json(), "dry_run": True, "run_id": "warm"}),
                          db_path=db, progress_stream=io.StringIO())  # datasets built  # fmt: skip
                started, cpu = time.perf_counter(), time.thread_time()
                result = start_run(config, db_path=db, progress_stream=io.StringIO())
                wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
                calls = result.manifest["row_stats"]["attempt_rows"]
            ideal = math.ceil(trials / concurrency) * args.attempts * args.latency
            print(f"{concurrency:>11} {calls:>6} {wall:>8.2f} {ideal:>8.2f} {wall / ideal:>6.3f} "
                  f"{1000 * (wall - ideal) / calls:>12.2f} {1000 * cpu / calls:>16.2f}")  # fmt: skip
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
