"""A grid against the loopback OpenAI server with a fixed latency per call: how close is
the wall clock to the ideal, ceil(trials / concurrency) x attempts x latency?

The server answers a wrong program (`return 0`), so every trial uses all its attempts
and every program is evaluated in the sandbox, as in a real run.

Run: .venv/bin/python bench/grid.py [--latency 0.5] [--concurrency 8 32]
Target: wall / ideal <= 1.15 at concurrency 8 and 32.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from openai_server import OpenAIServer, Reply  # noqa: E402  (the test suite's server)

from synth.config import RunConfig  # noqa: E402
from synth.run import start_run  # noqa: E402

WRONG = '{"code": "def f(x):\\n    return 0"}'


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
    print(f"{'concurrency':>11} {'calls':>6} {'wall s':>8} {'ideal s':>8} {'ratio':>6}")
    with OpenAIServer(lambda path, body: Reply(text=WRONG, delay=args.latency)) as server:
        for concurrency in args.concurrency:
            with tempfile.TemporaryDirectory() as tmp:
                config = RunConfig(
                    functions=["fn_a"], lengths=args.lengths, num_trials=args.trials,
                    attempts=args.attempts, test_size=args.test_size,
                    concurrency=concurrency, api_base_url=server.base_url,
                    out_dir=str(Path(tmp) / "out"), run_id=f"bench-{concurrency}",
                )  # fmt: skip
                db = Path(tmp) / "bench.db"
                start_run(RunConfig(**{**config.to_json(), "dry_run": True, "run_id": "warm"}),
                          db_path=db, progress_stream=io.StringIO())  # datasets built  # fmt: skip
                calls_before = len(server.requests)
                started = time.perf_counter()
                start_run(config, db_path=db, progress_stream=io.StringIO())
                wall = time.perf_counter() - started
                calls = len(server.requests) - calls_before
            ideal = math.ceil(trials / concurrency) * args.attempts * args.latency
            print(f"{concurrency:>11} {calls:>6} {wall:>8.2f} {ideal:>8.2f} {wall / ideal:>6.3f}")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
