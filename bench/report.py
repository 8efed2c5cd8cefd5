"""Benchmark `synth report` and the leaderboard query on a large synthetic database.

Fills a database (direct SQL inserts, after the schema is created by tracker.db) with
10 runs (global seeds) x 20 tasks x 5 lengths, 100 attempts per run and grid point:
100,000 attempts with their responses, programs and evaluations, and a dataset of
100/100/10,000 examples per run and grid point (1,000 datasets, 10.2 million examples),
a few of them leaky. Then it times, each in a fresh child process so that its peak
memory (ru_maxrss) is its own:

- the report of the latest run (what `synth report` does with no run id), HTML;
- the report of all ten runs, HTML and Markdown;
- the leaderboard: the report's analysis over all runs, and Datasette's canned query
  (tracker/datasette/metadata.yaml) over all runs;
- `--figures` of all ten runs: every chart as SVG, PNG and PDF.

Each prints its wall-clock and CPU seconds, with the machine's load average first: on
a machine shared with other work the wall clock grows with the load, CPU time far less.

Datasets are stored with their leakage audits, as tracker.datasets.save_dataset stores
them; the fill times that step (what migration m005 costs such a database, once).

    python bench/report.py [--db PATH] [--keep]

Targets: report of all runs <= 5 s with peak memory <= 500 MB (issue 20; 15 s and
1 GB in issue 5); leaderboard <= 0.5 s; figures <= 30 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TASKS = [f"fn_{i:02d}" for i in range(1, 21)]
LENGTHS = [20, 25, 30, 50, 100]
SEEDS = list(range(1, 11))
ATTEMPTS_PER_POINT = 100
MAX_ATTEMPTS = 5
SIZES = (100, 100, 10_000)
MEASUREMENTS = (
    "report-latest",
    "report-all",
    "report-all-md",
    "leaderboard-report",
    "leaderboard-datasette",
    "figures-all",
)
CODE = "def f(x):\n    # candidate {n}\n    s = sum(int(c) for c in x[:{k}])\n    return s % 2\n"


def fill(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from synth.selection import select
    from tracker.db import open_db

    open_db(path).conn.close()  # schema, migrations, WAL
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("pragma synchronous = off")
    rng = np.random.default_rng(0)
    rand = random.Random(0)
    dataset_id = trial_id = attempt_id = 0
    for seed in SEEDS:
        run_id = f"bench_seed{seed:02d}"
        config = {
            "seed": seed,
            "reasoning_effort": "high",
            "attempts": MAX_ATTEMPTS,
            "num_trials": 40,
            "train_size": SIZES[0],
            "val_size": SIZES[1],
            "test_size": SIZES[2],
            "provider": "openai",
            "model": "gpt-5",
        }
        with conn:
            conn.execute(
                "insert into runs (run_id, created_at, finished_at, status, provider, model, api_mode,"
                " dry_run, config, argv, versions, environment) values (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    run_id,
                    f"2025-01-{seed:02d}T00:00:00",
                    f"2025-01-{seed:02d}T09:00:00",
                    "completed",
                    "openai",
                    "gpt-5",
                    "responses",
                    0,
                    json.dumps(config),
                    "[]",
                    json.dumps({"llm-pv": "bench"}),
                    "{}",
                ],
            )
            for t, fn in enumerate(TASKS):
                for length in LENGTHS:
                    dataset_id += 1
                    _dataset(conn, rng, dataset_id, fn, length, seed, leaky=(t + seed) % 25 == 0)
                    conn.execute(
                        "insert into run_datasets (run_id, fn, length, dataset_id) values (?,?,?,?)",
                        [run_id, fn, length, dataset_id],
                    )
                    prompt = f"prompt {fn} L{length} seed {seed}\n" + "0101 -> 1\n" * 100
                    prompt_hash = hashlib.sha256(prompt.encode()).hexdigest()
                    conn.execute("insert into prompts (hash, text) values (?, ?)", [prompt_hash, prompt])
                    made, trial = 0, 0
                    while made < ATTEMPTS_PER_POINT:
                        trial += 1
                        trial_id += 1
                        k = min(rand.randint(1, MAX_ATTEMPTS), ATTEMPTS_PER_POINT - made)
                        made += k
                        results = []
                        for n in range(1, k + 1):
                            attempt_id += 1
                            solved = n == k and (k < MAX_ATTEMPTS or rand.random() < 0.2)
                            results.append(_attempt(conn, rand, attempt_id, trial_id, n, prompt_hash, solved))
                        chosen = select(results)
                        conn.execute(
                            "insert into trials (id, run_id, fn, length, trial, dataset_id, status,"
                            " stopped_early, attempts_made, selected_attempt, val_acc, test_acc,"
                            " oracle_attempt, oracle_test_acc, finished_at) values"
                            " (?,?,?,?,?,?,'done',?,?,?,?,?,?,?,?)",
                            [
                                trial_id,
                                run_id,
                                fn,
                                length,
                                trial,
                                dataset_id,
                                chosen["stopped_early"],
                                k,
                                chosen["selected_attempt"],
                                chosen["val_acc"],
                                chosen["test_acc"],
                                chosen["oracle_attempt"],
                                chosen["oracle_test_acc"],
                                "2025-01-01",
                            ],
                        )
        print(f"  seed {seed}: {attempt_id:,} attempts, {dataset_id:,} datasets", file=sys.stderr)
    conn.close()
    from tracker.audits import audit_missing

    db = open_db(path)
    start = time.perf_counter()
    with db.conn:
        audited = audit_missing(db)
    print(f"  {audited:,} datasets audited in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    db.conn.close()


def _dataset(conn, rng, dataset_id: int, fn: str, length: int, seed: int, leaky: bool) -> None:
    n = sum(SIZES)
    bits = rng.integers(48, 50, size=(n, length), dtype=np.uint8)
    inputs = [row.tobytes().decode() for row in bits]
    if leaky:  # three training inputs also in the test split
        inputs[200:203] = inputs[0:3]
    fingerprint = hashlib.sha256(f"{fn}|{length}|{seed}".encode()).hexdigest()
    conn.execute(
        "insert into datasets (id, fingerprint, fn, target, kind, length, train_size, val_size,"
        " test_size, train_effective, val_effective, test_effective, base_seed, derived_seed,"
        " generator_version, created_at) values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            dataset_id,
            fingerprint,
            fn,
            fn,
            "binary",
            length,
            *SIZES,
            *SIZES,
            seed,
            dataset_id * 7919,
            1,
            "2025-01-01",
        ],
    )
    train, val = SIZES[0], SIZES[0] + SIZES[1]
    bounds = (("train", 0, train), ("val", train, val), ("test", val, n))
    conn.executemany(
        "insert into examples (dataset_id, split, idx, input, label) values (?,?,?,?,?)",
        (
            (dataset_id, split, i - start, inputs[i], i % 2)
            for split, start, end in bounds
            for i in range(start, end)
        ),
    )


def _attempt(conn, rand, attempt_id, trial_id, n, prompt_hash, solved) -> tuple:
    roll = rand.random()
    if roll < 0.02:
        status, failure = "call_failed", "call_rate_limit"
    elif roll < 0.05:
        status, failure = "extract_failed", "no_json"
    else:
        status, failure = "evaluated", None
    code = CODE.format(n=attempt_id, k=rand.randint(1, 100)) if status == "evaluated" else None
    program_hash = hashlib.sha256(code.encode()).hexdigest() if code else None
    if code:
        conn.execute("insert into programs (hash, code) values (?, ?)", [program_hash, code])
    conn.execute(
        "insert into attempts (id, trial_id, attempt, prompt_hash, program_hash, func_name,"
        " extraction, failure_class, error, status, started_at, finished_at) values"
        " (?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            attempt_id,
            trial_id,
            n,
            prompt_hash,
            program_hash,
            "f" if code else None,
            "json" if code else None,
            failure,
            "rate limited" if failure == "call_rate_limit" else None,
            status,
            "2025-01-01",
            "2025-01-01",
        ],
    )
    if status == "call_failed":
        return n, None, None
    text = json.dumps({"code": code or "def f(x) return"}) + " reasoning " * 50
    conn.execute(
        "insert into responses (attempt_id, provider, model, status, text, input_tokens,"
        " cached_tokens, output_tokens, reasoning_tokens, tool_calls, tool_output_chars,"
        " duration_ms, response_id, request_json, raw_json, created_at) values"
        " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            attempt_id,
            "openai",
            "gpt-5",
            "completed",
            text,
            3000 + rand.randint(0, 500),
            1024,
            6000 + rand.randint(0, 4000),
            5000,
            0,
            0,
            30_000.0,
            f"resp_{attempt_id}",
            '{"model": "gpt-5"}',
            json.dumps({"output": text}),
            "2025-01-01",
        ],
    )
    if status != "evaluated":
        return n, None, None
    roll = rand.random()
    eval_status = "compile_error" if roll < 0.02 else "timeout" if roll < 0.05 else "ok"
    val = 1.0 if solved else rand.choice([0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    test = 0.0 if eval_status == "compile_error" else min(1.0, val - rand.random() * 0.1)
    errors = ["IndexError: string index out of range"] if rand.random() < 0.1 else []
    conn.execute(
        "insert into evaluations (attempt_id, status, limit_hit, val_acc, val_correct, val_total,"
        " test_acc, test_correct, test_total, row_errors, errors, duration_ms, created_at)"
        " values (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            attempt_id,
            eval_status,
            "wall" if eval_status == "timeout" else None,
            val,
            int(val * 100),
            100,
            test,
            int(test * 10_000),
            10_000,
            len(errors),
            json.dumps(errors),
            20.0,
            "2025-01-01",
        ],
    )
    return n, val, test


def measure(what: str, db: str) -> dict:
    """One measurement, in this (fresh) process."""
    sys.path.insert(0, str(ROOT))
    start = time.perf_counter()
    import reports

    imported = time.perf_counter() - start
    out = Path(tempfile.mkdtemp()) / "report"
    start, cpu = time.perf_counter(), _cpu_seconds()
    runs = [f"bench_seed{s:02d}" for s in SEEDS]
    if what == "report-latest":
        result = reports.build_report(db, None, out.with_suffix(".html"))
    elif what == "report-all":
        result = reports.build_report(db, runs, out.with_suffix(".html"))
    elif what == "report-all-md":
        result = reports.build_report(db, runs, out.with_suffix(".md"), fmt="md")
    elif what == "figures-all":
        from reports.build import build_figures

        result = sum(p.stat().st_size for p in build_figures(db, out, runs))
    else:
        result = _leaderboard(what, db)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    size = result.stat().st_size if isinstance(result, Path) else result if what == "figures-all" else None
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "what": what,
        "seconds": seconds,
        "cpu_s": cpu,
        "import_s": imported,
        "peak_mb": peak_mb,
        "bytes": size,
    }


def _cpu_seconds() -> float:
    """This process's CPU time (user and system, every thread): unlike the wall clock,
    it hardly grows when other work shares the machine's cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _leaderboard(what: str, db: str) -> int:
    from reports.accuracy import finished_points, leaderboard
    from reports.scope import resolve_scope
    from tracker.db import open_db

    conn = open_db(db, readonly=True)
    if what == "leaderboard-report":
        return len(leaderboard(finished_points(conn, resolve_scope(conn, None, {"provider": "openai"}))))
    import yaml

    meta = yaml.safe_load((ROOT / "tracker/datasette/metadata.yaml").read_text())
    sql = next(iter(meta["databases"].values()))["queries"]["leaderboard"]["sql"]
    return len(conn.execute(sql, {"run_id": ""}).fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, help="reuse (or create) this database")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, str(args.db))))
        return
    db = args.db or Path(tempfile.mkdtemp(prefix="bench-report-")) / "bench.db"
    if not db.exists():
        start = time.perf_counter()
        fill(db)
        print(
            f"filled {db} in {time.perf_counter() - start:.1f} s ({db.stat().st_size / 1e6:,.0f} MB)",
            file=sys.stderr,
        )
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"machine load (1-minute average): {os.getloadavg()[0]:.2f}")
    print(f"{'measurement':<22}{'seconds':>9}{'CPU s':>8}{'import s':>10}{'peak MB':>9}{'output MB':>11}")
    for what in MEASUREMENTS:
        child = subprocess.run(
            [sys.executable, __file__, "--db", str(db), "--measure", what], capture_output=True, text=True
        )
        if child.returncode:
            sys.exit(f"{what} failed:\n{child.stderr}")
        r = json.loads(child.stdout)
        size = f"{r['bytes'] / 1e6:.1f}" if r["bytes"] else ""
        print(
            f"{what:<22}{r['seconds']:>9.2f}{r['cpu_s']:>8.2f}{r['import_s']:>10.2f}{r['peak_mb']:>9.0f}{size:>11}"
        )
    if not args.db and not args.keep:
        for p in db.parent.iterdir():
            p.unlink()
        db.parent.rmdir()


if __name__ == "__main__":
    main()
