"""Benchmark `synth merge` on a database of 100,000 attempts.

Fills a source database (direct SQL inserts, after the schema is created by
tracker.db) with 40 runs (say 4 models x 10 seeds... or 40 machines' shards) x 20 tasks
x 5 lengths x 5 trials x 5 attempts: 100,000 attempts with their responses (600
characters of text each, full-text indexed as the store indexes them), 20,000 distinct
programs, their evaluations, and 100 datasets of 100/100/10,000 examples (1.02 million
examples). Then it times:

- the merge of the source into an empty database (all copied, the indexes and the
  full-text search of responses, prompts and programs built as rows arrive);
- the same merge again, into the database that now holds it all: a no-op.

    python bench/merge.py [--dir DIR] [--keep]

Targets: into an empty database <= 30 s; into one that already holds it < 5 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracker.db import open_db  # noqa: E402
from tracker.merge import merge_databases  # noqa: E402

RUNS = 40
TASKS = [f"fn_{i:02d}" for i in range(1, 21)]
LENGTHS = [20, 25, 30, 50, 100]
TRIALS = 5
ATTEMPTS = 5
SIZES = (100, 100, 10_000)
PROGRAMS = 20_000
NOW = "2026-12-03T00:00:00.000+00:00"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fill(path: Path) -> int:
    """The source database; returns how many attempts it holds."""
    open_db(path).close()  # the schema, by the store's own migrations
    rng = random.Random(0)
    conn = sqlite3.connect(path)
    conn.execute("pragma synchronous = off")
    datasets = {}
    for fn in TASKS:
        for length in LENGTHS:
            fingerprint = sha(f"{fn}|{length}")
            datasets[fn, length] = conn.execute(
                "insert into datasets (fingerprint, fn, target, kind, length, train_size, val_size, test_size, "
                "train_effective, val_effective, test_effective, base_seed, derived_seed, generator_version, "
                "created_at) values (?, ?, ?, 'binary', ?, ?, ?, ?, ?, ?, ?, 42, 1, 1, ?)",
                [fingerprint, fn, fn, length, *SIZES, *SIZES, NOW],
            ).lastrowid
            conn.executemany(
                "insert into examples values (?, ?, ?, ?, ?)",
                (
                    (datasets[fn, length], split, i, "".join(rng.choice("01") for _ in range(length)), i % 2)
                    for split, n in zip(("train", "val", "test"), SIZES, strict=True)
                    for i in range(n)
                ),
            )
            audit = [c for _, c, *_ in conn.execute("pragma table_info(dataset_audits)")]
            conn.execute(
                f"insert into dataset_audits values ({', '.join('?' * len(audit))})",
                [datasets[fn, length], *[0] * (len(audit) - 2), 1],
            )
            prompt = f"Find f for {fn} at L={length}.\n" + "0101 -> 1\n" * 150
            conn.execute("insert into prompts values (?, ?)", [sha(prompt), prompt])
    codes = [
        f"def f(x):\n    # candidate {n}\n    return x.count('1') % {n % 7 + 2}\n" for n in range(PROGRAMS)
    ]
    conn.executemany("insert into programs values (?, ?)", ((sha(c), c) for c in codes))
    attempts = 0
    for r in range(RUNS):
        run_id = f"run_{r:02d}"
        config = {"run_id": run_id, "model": f"model-{r % 4}", "seed": r // 4, "shard": None}
        conn.execute(
            "insert into runs (run_id, created_at, finished_at, status, provider, model, config, argv, "
            "versions, environment) values (?, ?, ?, 'completed', 'openai', ?, ?, '[]', '{}', '{}')",
            [run_id, NOW, NOW, config["model"], json.dumps(config)],
        )
        for (fn, length), dataset_id in datasets.items():
            conn.execute("insert into run_datasets values (?, ?, ?, ?)", [run_id, fn, length, dataset_id])
            prompt = sha(f"Find f for {fn} at L={length}.\n" + "0101 -> 1\n" * 150)
            for trial in range(1, TRIALS + 1):
                trial_id = conn.execute(
                    "insert into trials (run_id, fn, length, trial, dataset_id, status, attempts_made, "
                    "selected_attempt, val_acc, test_acc, finished_at) values (?, ?, ?, ?, ?, 'done', ?, 1, 0.9, 0.8, ?)",
                    [run_id, fn, length, trial, dataset_id, ATTEMPTS, NOW],
                ).lastrowid
                for attempt in range(1, ATTEMPTS + 1):
                    code = codes[rng.randrange(PROGRAMS)]
                    attempt_id = conn.execute(
                        "insert into attempts (trial_id, attempt, prompt_hash, program_hash, status, finished_at) "
                        "values (?, ?, ?, ?, 'evaluated', ?)",
                        [trial_id, attempt, prompt, sha(code), NOW],
                    ).lastrowid
                    text = f"Reasoning about {fn} ({attempts}): " + "the parity of the ones decides. " * 17
                    conn.execute(
                        "insert into responses (attempt_id, provider, model, status, text, input_tokens, "
                        "output_tokens, duration_ms, response_id, created_at, cost_usd) "
                        "values (?, 'openai', ?, 'completed', ?, 1200, 400, 900.0, ?, ?, 0.01)",
                        [attempt_id, config["model"], text, f"resp_{attempts}", NOW],
                    )
                    conn.execute(
                        "insert into evaluations (attempt_id, status, val_acc, val_correct, val_total, test_acc, "
                        "test_correct, test_total, row_errors, duration_ms, created_at) "
                        "values (?, 'ok', 0.9, 90, 100, 0.8, 8000, 10000, 0, 50.0, ?)",
                        [attempt_id, NOW],
                    )
                    attempts += 1
        conn.execute(
            "insert into events (run_id, ts, level, kind, message) values (?, ?, 'info', 'run_finished', 'completed')",
            [run_id, NOW],
        )
    conn.commit()
    conn.close()
    return attempts


def timed(dest: Path, source: Path) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    done = merge_databases(dest, [source])
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-merge-"))
    folder.mkdir(parents=True, exist_ok=True)
    source, dest = folder / "source.db", folder / "dest.db"
    for path in (source, dest):
        path.unlink(missing_ok=True)
    started = time.perf_counter()
    attempts = fill(source)
    print(
        f"filled {source}: {attempts:,} attempts, {source.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.1f} s"
    )
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    seconds, done = timed(dest, source)
    added = sum(r["action"] == "added" for r in done)
    print(f"merge into an empty database: {seconds:.2f} s ({added} runs added)  [target <= 30 s]")
    seconds, done = timed(dest, source)
    unchanged = sum(r["action"] == "unchanged" for r in done)
    print(
        f"merge into a database that holds it: {seconds:.2f} s ({unchanged} runs unchanged)  [target < 5 s]"
    )
    with sqlite3.connect(dest) as conn:
        held = conn.execute("select count(*) from attempts").fetchone()[0]
    assert held == attempts, (held, attempts)
    if not args.keep:
        for path in folder.glob("*.db*"):
            path.unlink()
        if args.dir is None:
            folder.rmdir()


if __name__ == "__main__":
    main()
