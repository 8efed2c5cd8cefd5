"""What the sandbox costs: sandboxed evaluation versus exec() in the runner's process.

Run by hand: ``.venv/bin/python bench/eval.py [--repeats 40]``. Prints the median
in-process and sandboxed times of a simple correct program (parity) on 100 + 10,000
binary rows of length 100, the overhead, the same for a program that takes ~50 ms
in-process, and evaluations per second with 2 concurrent evaluations; and which
isolation layers the sandbox applied on this machine. Wall-clock
figures suffer from anything else running on the machine (the load average is
printed); the CPU figures (this process plus its children) much less so.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import resource
import statistics
import time

import numpy as np

from synth.datasets.generators.base import bits_to_strings, random_bits
from synth.sandbox import evaluate, evaluate_async
from synth.sandbox.zygote import to01

ROWS = 100 + 10_000
LENGTH = 100
FAST = "def f(x):\n    return x.count('1') % 2\n"
# A few us per row in-process: 50-65 ms for the 10,100 rows on a 2-CPU VM.
SLOW = "def f(x):\n    return sum(map(int, x)) % 2\n"


def in_process(code: str, inputs: list[str]) -> list[int]:
    """The unsandboxed baseline: exec() here, normalise each prediction like the child."""
    namespace: dict = {}
    exec(compile(code, "<candidate>", "exec"), namespace)
    f = namespace["f"]
    return [to01(f(x)) for x in inputs]


def cpu_seconds() -> float:
    """CPU time of this process, its reaped children, and the sandbox's zygote with the
    evaluation children it reaped (they are not ours: the zygote forks them)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + zygote_cpu()


@functools.cache
def zygote_pid() -> int:
    """The sandbox's zygote, found once as the parent of a child caught alive."""
    parents: list[int] = []

    def parent_of(pid: int) -> None:
        with open(f"/proc/{pid}/stat") as fh:
            parents.append(int(fh.read().rsplit(")", 1)[1].split()[1]))

    evaluate(
        "import time\ndef f(x):\n    time.sleep(0.2)\n    return 0\n",
        "f",
        "binary",
        ["0"],
        on_start=parent_of,
    )
    return parents[0]


def zygote_cpu() -> float:
    """utime + stime + cutime + cstime of the zygote: its reaped children are the
    evaluations."""
    with open(f"/proc/{zygote_pid()}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(fn, repeats: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) of ``fn()``."""
    times = []
    cpu_before = cpu_seconds()
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), (cpu_seconds() - cpu_before) * 1000 / repeats


async def throughput(code: str, inputs: list[str], count: int, workers: int) -> float:
    """Evaluations per second with ``workers`` evaluations in flight at any time."""
    gate = asyncio.Semaphore(workers)

    async def one():
        async with gate:
            result = await evaluate_async(code, "f", "binary", inputs)
            assert result.status == "ok", result

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    inputs = bits_to_strings(random_bits(np.random.default_rng(0), ROWS, LENGTH))
    expected = [x.count("1") % 2 for x in inputs]
    check = evaluate(FAST, "f", "binary", inputs)
    assert check.score(expected)[0] == 1.0, check

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load}")
    print(f"isolation: {check.isolation or 'rlimits only'}")
    print(f"{ROWS} binary rows of length {LENGTH}, medians of {args.repeats} runs")
    for name, code in (("parity (fast)", FAST), ("parity (~50 ms)", SLOW)):
        base, base_cpu = measure(lambda code=code: in_process(code, inputs), args.repeats)
        boxed, boxed_cpu = measure(lambda code=code: evaluate(code, "f", "binary", inputs), args.repeats)
        print(
            f"{name:16} in-process {base:6.1f} ms   sandboxed {boxed:6.1f} ms   "
            f"overhead {boxed - base:5.1f} ms   ratio {boxed / base:4.2f}   "
            f"(CPU {base_cpu:5.1f} -> {boxed_cpu:5.1f} ms)"
        )
    rate = asyncio.run(throughput(FAST, inputs, 20 * args.workers, args.workers))
    print(f"throughput: {rate:.1f} evaluations/s with {args.workers} concurrent (fast parity)")


if __name__ == "__main__":
    main()
