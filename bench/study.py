"""A study against two loopback OpenAI servers with a fixed latency per call: how close is
its wall clock to the ideal when every cell runs in one process?

4 systems (two per endpoint, each endpoint its own key variable and a concurrency of 16)
x 2 prompt wordings = 8 runs, each of 2 tasks x 2 lengths x 8 trials x 3 attempts. The
servers answer a wrong program, so every trial makes all its attempts and every program
is evaluated in the sandbox. The ideal is set by the endpoints, which work in parallel:
ceil(trials per endpoint / concurrency) x attempts x latency.

Run: .venv/bin/python bench/study.py [--latency 0.5] [--test-size 1000]
Target (issue 14): wall / ideal <= 1.15.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml
from grid import server_process  # bench/grid.py: the loopback server in its own process

from synth.datasets.build import build_grid
from synth.study import run as study_run
from synth.study.run import run_study
from synth.study.spec import load_study


def timed_setup() -> list[float]:
    """The seconds of the study's set-up (every cell's datasets, prompts and clients,
    before anything is recorded), appended to the list returned."""
    seconds, prepare = [], study_run._prepare

    def measured(*args, **kwargs):
        started = time.perf_counter()
        try:
            return prepare(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    study_run._prepare = measured
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per call")
    parser.add_argument("--concurrency", type=int, default=16, help="per endpoint")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--test-size", type=int, default=1000)
    args = parser.parse_args()
    functions, lengths, prompts = ["fn_a", "fn_g"], [20, 25], ["default", "paraphrase-1"]
    os.environ.update(KEY_ONE="sk-bench-one", KEY_TWO="sk-bench-two")
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        urls = [stack.enter_context(server_process(args.latency)) for _ in range(2)]
        systems = [
            {
                "name": f"s{i}",
                "model": f"m{i}",
                "api_base_url": urls[i % 2],
                "api_key_env": ("KEY_ONE", "KEY_TWO")[i % 2],
            }
            for i in range(4)
        ]
        spec = {
            "name": "bench",
            "functions": functions,
            "lengths": lengths,
            "num_trials": args.trials,
            "attempts": args.attempts,
            "test_size": args.test_size,
            "concurrency": args.concurrency,
            "prompts": prompts,
            "seed": 42,
            "systems": systems,
        }
        (Path(tmp) / "study.yaml").write_text(yaml.safe_dump(spec))
        db = Path(tmp) / "bench.db"
        os.chdir(tmp)  # the runs' exports
        build_grid(functions=functions, lengths=lengths, test_size=args.test_size, db_path=db)
        setup = timed_setup()
        started = time.perf_counter()
        result = run_study(load_study(Path(tmp) / "study.yaml"), db_path=db, progress_stream=io.StringIO())
        wall = time.perf_counter() - started
    trials_per_endpoint = 2 * len(prompts) * len(functions) * len(lengths) * args.trials
    ideal = math.ceil(trials_per_endpoint / args.concurrency) * args.attempts * args.latency
    runs = len(result.statuses)
    calls = runs * len(functions) * len(lengths) * args.trials * args.attempts
    print(
        f"{runs} runs, {calls} calls over 2 endpoints at concurrency {args.concurrency}, latency "
        f"{args.latency} s, test size {args.test_size}"
    )
    print(f"wall {wall:.2f} s, ideal {ideal:.2f} s, ratio {wall / ideal:.3f}; set-up {setup[0]:.2f} s")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
