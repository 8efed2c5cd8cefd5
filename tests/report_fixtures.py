"""A small run database for the report tests, written through the tracker API.

Loaded by tests/conftest.py. Four datasets of 2/2/4 rows (one of
them leaky), five runs:

- ``r0``: a dry run on dataset A1 (no results);
- ``r1``: openai/gpt-5, seed 1, on A1 and the leaky B1, with a failed call, an
  extraction failure, a compile error and a timeout;
- ``r2``: openai/gpt-5, seed 2, on the clean A2 and B2 (the seed spread of r1);
- ``r3``: the offline ``tree`` proposer, seed 1, on A1, one trial;
- ``r4``: the latest run: a model the price table does not know, served by an
  OpenAI-compatible server, on A1, one trial, its attempt in flight: nothing finished.

Every response of an openai run used 100 input (40 cached), 50 output (30 reasoning)
tokens; the tree's used none. The values the tests expect are worked out by hand in
the tests, from the attempts below.
"""

import hashlib
import json

import pytest
from helpers import dataset_meta, started_run

from synth.selection import select
from synth.verification.verify import verify_runs
from tracker import runs as store
from tracker.datasets import save_dataset
from tracker.db import open_db

# (split, input, label) rows per dataset.
DATASETS = {
    "A1": (
        "fn_a",
        1,
        [
            ("train", "0001", 1),
            ("train", "0011", 0),
            ("val", "0111", 1),
            ("val", "0000", 0),
            ("test", "1000", 1),
            ("test", "1100", 0),
            ("test", "1110", 1),
            ("test", "1111", 0),
        ],
    ),
    # B1 leaks: 0101 -> 1 is in train and val (same line); 0110 is in train (label 0) and
    # test (label 1): an input overlap, not a line overlap; 1010 is twice in test.
    "B1": (
        "fn_b",
        1,
        [
            ("train", "0101", 1),
            ("train", "0110", 0),
            ("val", "0101", 1),
            ("val", "1001", 0),
            ("test", "0110", 1),
            ("test", "1010", 0),
            ("test", "1010", 0),
            ("test", "0111", 1),
        ],
    ),
    "A2": (
        "fn_a",
        2,
        [
            ("train", "1001", 0),
            ("train", "1011", 1),
            ("val", "0100", 1),
            ("val", "0101", 0),
            ("test", "0010", 1),
            ("test", "0110", 0),
            ("test", "1101", 1),
            ("test", "0000", 0),
        ],
    ),
    "B2": (
        "fn_b",
        2,
        [
            ("train", "1100", 0),
            ("train", "1000", 1),
            ("val", "0010", 1),
            ("val", "0011", 0),
            ("test", "0001", 1),
            ("test", "1110", 0),
            ("test", "1011", 1),
            ("test", "0100", 0),
        ],
    ),
}


def ok(val, test, *errors, status="ok"):
    return {"kind": "evaluated", "val": val, "test": test, "status": status, "errors": list(errors)}


def no_program(failure, error):
    return {"kind": "extract_failed", "failure": failure, "error": error}


def call_failed(failure, error):
    return {"kind": "call_failed", "failure": failure, "error": error}


DRY = {"kind": "dry_run"}
IN_FLIGHT = {"kind": "pending_eval"}

# run id -> (provider, model, seed, dry run, {(fn, dataset): [trial attempts, ...]})
RUNS = {
    "r0": ("openai", "gpt-5", 1, True, {("fn_a", "A1"): [[DRY]]}),
    "r1": (
        "openai",
        "gpt-5",
        1,
        False,
        {
            ("fn_a", "A1"): [
                [ok(0.5, 0.5), ok(1.0, 0.75)],
                [
                    no_program("no_json", "no JSON object in the reply"),
                    call_failed("call_rate_limit", "rate limited (429)"),
                    ok(0.0, 0.0, "SyntaxError: bad", status="compile_error"),
                ],
            ],
            ("fn_b", "B1"): [
                [ok(0.5, 1.0, "IndexError: x"), ok(0.5, 0.25), ok(0.0, 0.0, status="timeout")],
                [ok(1.0, 0.5)],
            ],
        },
    ),
    "r2": (
        "openai",
        "gpt-5",
        2,
        False,
        {
            ("fn_a", "A2"): [[ok(1.0, 1.0)], [ok(0.5, 0.5), ok(1.0, 1.0)]],
            ("fn_b", "B2"): [[ok(0.5, 0.75), ok(0.5, 0.5, "IndexError: x"), ok(0.0, 0.25)], [ok(1.0, 1.0)]],
        },
    ),
    "r3": ("tree", "tree", 1, False, {("fn_a", "A1"): [[ok(1.0, 0.75)]]}),
    "r4": ("openai", "llama-3.1-8b", 1, False, {("fn_a", "A1"): [[IN_FLIGHT]]}),
}
TOKENS = {"input_tokens": 100, "cached_tokens": 40, "output_tokens": 50, "reasoning_tokens": 30}
NO_TOKENS = dict.fromkeys(TOKENS, 0)
CODE = "def f(x):\n    return int(x[0] == '1')  # <b>&amp; stays text</b>\n"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def save(db, name: str) -> int:
    fn, seed, rows = DATASETS[name]
    meta = dataset_meta(
        sha(name), fn, test_size=4, test_effective=4, base_seed=seed, derived_seed=seed * 1000
    )
    counters: dict[str, int] = {}
    examples = []
    for split, x, y in rows:
        examples.append((split, counters.setdefault(split, 0), x, y))
        counters[split] += 1
    return save_dataset(db, meta, examples)


def record(db, trial_id: int, n: int, spec: dict, provider: str, model: str):
    """One attempt as the runner records it; returns its (attempt, val, test) for select."""
    kind = spec["kind"]
    tokens = NO_TOKENS if provider != "openai" else TOKENS
    response = None
    if kind in ("evaluated", "extract_failed", "pending_eval"):
        response = {
            "provider": provider,
            "model": model,
            "status": "completed",
            "text": "{...}",
            **tokens,
            "duration_ms": 10.0,
        }
    program = (sha(CODE + str(trial_id)), CODE) if kind in ("evaluated", "pending_eval") else None
    status = "pending_eval" if kind == "evaluated" else kind
    attempt_id = store.record_attempt(
        db,
        trial_id,
        {
            "attempt": n,
            "status": status,
            "failure_class": spec.get("failure"),
            "error": spec.get("error"),
            "func_name": "f" if program else None,
        },
        prompt=(sha("prompt"), "prompt"),
        response=response,
        program=program,
    )
    if kind != "evaluated":
        return n, None, None
    store.record_evaluation(
        db,
        attempt_id,
        {
            "status": spec["status"],
            "val_acc": spec["val"],
            "val_correct": int(spec["val"] * 2),
            "val_total": 2,
            "test_acc": spec["test"],
            "test_correct": int(spec["test"] * 4),
            "test_total": 4,
            "row_errors": len(spec["errors"]),
            "errors": json.dumps(spec["errors"]),
            "duration_ms": 5.0,
        },
    )
    return n, spec["val"], spec["test"]


def build(path) -> None:
    db = open_db(path)
    ids = {name: save(db, name) for name in DATASETS}
    for run_id, (provider, model, seed, dry, grid) in RUNS.items():
        config = {
            "seed": seed,
            "reasoning_effort": "high",
            "attempts": 3,
            "num_trials": 2,
            "train_size": 2,
            "val_size": 2,
            "test_size": 4,
            "provider": provider,
            "model": model,
        }
        started = started_run(
            db,
            {
                "run_id": run_id,
                "provider": provider,
                "model": model,
                "api_mode": "responses",
                "dry_run": int(dry),
                "config": json.dumps(config),
                "argv": "[]",
                "versions": json.dumps({"llm-pv": "0.1.0"}),
                "environment": "{}",
            },
            [(fn, 4, ids[name]) for fn, name in grid],
            num_trials=max(map(len, grid.values())),
        )
        trials = {(t["fn"], t["trial"]): t["id"] for t in started}
        in_flight = False
        for (fn, _), attempts_of_trials in grid.items():
            for k, attempts in enumerate(attempts_of_trials, start=1):
                results = [
                    record(db, trials[(fn, k)], n, spec, provider, model)
                    for n, spec in enumerate(attempts, start=1)
                ]
                in_flight |= IN_FLIGHT in attempts
                if IN_FLIGHT not in attempts:
                    result = {**select(results), "attempts_made": len(results)}
                    store.finish_trial(db, trials[(fn, k)], result)
        if not in_flight:
            store.set_run_status(db, run_id, "dry_run" if dry else "completed")
    db.conn.close()


@pytest.fixture(scope="module")
def report_db(tmp_path_factory):
    """The path of the fixture database (built once per test module)."""
    path = tmp_path_factory.mktemp("report") / "runs.db"
    build(path)
    return path


@pytest.fixture(scope="module")
def verified_report_db(tmp_path_factory):
    """The fixture database with the selected programs of r1 (gpt-5) and r3 (tree)
    verified for real at L=4 (every input) and L=8 (a balanced set and a sample)."""
    path = tmp_path_factory.mktemp("verified") / "runs.db"
    build(path)
    verify_runs(["r1", "r3"], db_path=path, lengths=[4, 8], test_size=2, samples=64)
    return path


@pytest.fixture
def fresh_report_db(tmp_path):
    """A fixture database of the test's own, for tests that write to it."""
    path = tmp_path / "runs.db"
    build(path)
    return path


# Two offline proposers on tasks of different lengths: fn_a (parity_all) at L=12 and
# 20, fn_e (parity_rand_3) at L=8. A run's grid crosses its tasks and lengths, so each
# task is a run of its own.
TWO_PROPOSERS = {"fn_a": [12, 20], "fn_e": [8]}


@pytest.fixture(scope="module")
def two_proposers_db(tmp_path_factory):
    """Runs the runner itself recorded, of the tree and formula proposers: the path of
    their database and their run ids."""
    pytest.importorskip("sklearn", reason="the tree proposer needs scikit-learn")
    from synth.config import RunConfig
    from synth.engine.entry import start_run

    folder = tmp_path_factory.mktemp("two-proposers")
    path, run_ids = folder / "runs.db", []
    for provider in ("tree", "formula"):
        for fn, lengths in TWO_PROPOSERS.items():
            config = RunConfig(
                functions=[fn],
                lengths=lengths,
                num_trials=2,
                attempts=1,
                train_size=20,
                val_size=20,
                test_size=40,
                provider=provider,
                time_budget=0.2,
                run_id=f"{provider}-{fn}",
                out_dir=str(folder / "runs" / f"{provider}-{fn}"),
            )
            run_ids.append(start_run(config, db_path=path).run_id)
    return path, run_ids
