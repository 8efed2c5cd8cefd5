"""`synth verify` as a library function: plan every program x evaluation set of the
chosen runs, refuse bad requests before anything is evaluated, build the balanced
datasets into the store, then check what is not stored yet, each set recorded whole.

A verify killed at any moment and started again finds the sets it recorded and checks
only the rest: nothing is evaluated twice.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from synth.config import RunConfig
from synth.custom_tasks import task_of
from synth.datasets.cache import ensure_datasets
from synth.datasets.generators import tabular
from synth.datasets.generators.base import Origin, Task
from synth.datasets.grid import GridPoint, Sizes, plan_grid
from synth.errors import InfeasibleError, SynthError
from synth.tasks import get_task, use_custom_tasks
from synth.verification import sets
from synth.verification.checks import check
from synth.verification.readings import readings
from tracker import runs as store
from tracker.datasets import load_examples
from tracker.db import db_path as resolve_db
from tracker.db import open_db
from tracker.verifications import record_verification, recorded_programs, verification_rows, verified_sets

PROGRAMS = ("selected", "all")
DEFAULT_EXHAUSTIVE_UP_TO = 20
MAX_EXHAUSTIVE = 24  # 2**24 = 16.8 million inputs a program
DEFAULT_SAMPLES = 100_000
MAX_SAMPLES = 10_000_000
# Default evaluation lengths: the training length times these, plus the task's defaults.
MULTIPLES = (1, 2, 5, 10)
# Decimal tasks' default lengths stop here: drawing primes of more digits costs
# seconds a row. Longer ones can still be asked for with --lengths.
DECIMAL_DEFAULT_MAX = 100


@dataclass(frozen=True)
class Plan:
    program: dict
    kind: str
    evalset: sets.EvalSet
    seen: frozenset[str]
    timeout: float


def verify_runs(
    run_ids: list[str] | None = None,
    *,
    db_path: Path | None = None,
    lengths: list[int] | None = None,
    test_size: int | None = None,
    programs: str = "selected",
    exhaustive_up_to: int = DEFAULT_EXHAUSTIVE_UP_TO,
    samples: int = DEFAULT_SAMPLES,
    uci_dir: Path | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> list[dict]:
    """Verify the programs of ``run_ids`` (none: the latest run); returns one row per
    program x evaluation set x reading planned, stored ones reused (see
    tracker.verifications.JSON_KEYS)."""
    _check_options(lengths, test_size, programs, exhaustive_up_to, samples)
    if not resolve_db(db_path).exists():
        raise SynthError(f"no database at {resolve_db(db_path)}")
    with open_db(db_path) as db:
        chosen = _runs(db, run_ids, db_path)
        # Every run checked (and its tables read) before any dataset is built.
        scopes = [_scope(db, run_id, lengths, test_size, programs, uci_dir, notify) for run_id in chosen]
        plans = [p for s in scopes for p in _plans(db, s, exhaustive_up_to, samples, uci_dir)]
        done = verified_sets(db, [p.program["attempt_id"] for p in plans])
        todo = [p for p in plans if _key(p) not in done]
        notify(f"verifying {len(todo)} program x set checks ({len(plans) - len(todo)} stored)")
        _run_checks(db, todo, notify)
        wanted = {_key(p) for p in plans}
        rows = verification_rows(db, chosen)
        return [r for r in rows if (r["attempt_id"], r["eval_length"], r["set_key"]) in wanted]


def _check_options(lengths, test_size, programs, exhaustive_up_to, samples) -> None:
    if programs not in PROGRAMS:
        raise SynthError(f"--programs must be one of {', '.join(PROGRAMS)} (got {programs!r})")
    if not 0 <= exhaustive_up_to <= MAX_EXHAUSTIVE:
        raise SynthError(
            f"--exhaustive-up-to must be from 0 to {MAX_EXHAUSTIVE} (got {exhaustive_up_to}): "
            f"2^{MAX_EXHAUSTIVE} inputs is the most a program is run on"
        )
    if not 1 <= samples <= MAX_SAMPLES:
        raise SynthError(f"--samples must be from 1 to {MAX_SAMPLES:,} (got {samples})")
    if test_size is not None:
        Sizes(2, 2, test_size)  # refuses a size that is not positive and even
    if lengths is not None and (bad := [L for L in lengths if L < 1]):
        raise SynthError(f"--lengths must be positive (got {bad[0]})")


def _runs(db: sqlite_utils.Database, run_ids: list[str] | None, db_path) -> list[str]:
    if run_ids:
        for run_id in run_ids:
            if store.get_run(db, run_id) is None:
                raise SynthError(f"no run {run_id!r} in {resolve_db(db_path)}")
        return list(dict.fromkeys(run_ids))
    latest = db.execute("select run_id from runs order by created_at desc, run_id desc limit 1").fetchone()
    if latest is None:
        raise SynthError(f"no run in {resolve_db(db_path)} to verify")
    return [latest[0]]


@dataclass(frozen=True)
class RunScope:
    """What verifying one run covers, checked: its programs, the evaluation lengths of
    each (task, training length), and the balanced datasets' grid points."""

    config: RunConfig
    programs: list[dict]
    tasks: dict[str, Task]
    size: int
    wanted: dict[tuple[str, int], list[int]]
    points: dict[tuple[str, int], GridPoint]


def _scope(db, run_id, lengths, test_size, which, uci_dir, notify) -> RunScope:
    """One run's scope; refused lengths said (or raised), source tables loaded."""
    config = RunConfig.from_json(json.loads(store.get_run(db, run_id)["config"]))
    programs = recorded_programs(db, run_id, which)
    if not programs:
        raise SynthError(f"run {run_id} has no programs to verify (a dry run, or no attempt produced one)")
    tasks = _run_tasks(db, run_id, {p["fn"] for p in programs}, lengths, notify)
    programs = [p for p in programs if p["fn"] in tasks]
    for task in tasks.values():
        if task.table:
            task.table(uci_dir)  # a missing source table: refused before any work
    size = test_size or config.test_size
    base_seed = sets.verify_seed(config.seed)
    pairs = sorted({(p["fn"], p["train_length"]) for p in programs})
    return RunScope(config, programs, tasks, size, *_lengths(tasks, pairs, lengths, size, base_seed, notify))


def _run_tasks(db, run_id: str, fns: set[str], lengths, notify) -> dict[str, Task]:
    """The tasks of a run's programs: built-in ones, and the run's own as it recorded
    them (label functions run again from the recorded text of their file; a table task
    reads its CSV again, and is skipped, said why, when that CSV is gone or changed)."""
    own, why = {}, {}
    for row in store.run_tasks(db, run_id):
        origin = Origin(row["file"], row["file_text"], row["task_sha256"], row["csv"], row["csv_sha256"])
        try:
            own[row["fn"]] = task_of(origin, row["fn"])
        except SynthError as e:
            why[row["fn"]] = (
                f"a table task has no other lengths, and checking every row of it needs the CSV "
                f"run {run_id} read: {e}"
                if row["kind"] == "tabular"
                else f"its definition, as run {run_id} recorded it, does not run now: {e}"
            )
    use_custom_tasks(own.values())  # for the balanced datasets' grid points
    tasks = {fn: own[fn] if fn in own else get_task(fn) for fn in sorted(fns) if fn not in why}
    if not tasks:
        raise SynthError(f"nothing of run {run_id} can be verified: {'; '.join(why.values())}")
    for fn in sorted(fns & set(why)):
        notify(f"Warning: skipped task {fn}: {why[fn]}")
    for task in tasks.values():
        if task.origin and task.table and lengths is not None:
            notify(
                f"{task.id} is a table task of one length ({task.fixed_length} features): --lengths does "
                f"not apply to it; every row of {task.origin.csv} is checked instead"
            )
    return tasks


def _plans(db, scope: RunScope, exhaustive_up_to: int, samples: int, uci_dir) -> list[Plan]:
    """Every program x evaluation set of one run, its balanced datasets built and stored."""
    config, size, wanted = scope.config, scope.size, scope.wanted
    stored = {
        (s.point.task.id, s.point.length): s.id for s in ensure_datasets(db, list(scope.points.values()))
    }
    balanced = {key: _split(load_examples(db, dataset_id)["test"]) for key, dataset_id in stored.items()}
    plans = []
    seen_of = _seen(db)
    # Made once per (task, training length, length): the programs checked on a set share
    # it, so the checks of one code on it are run once (see _run_checks).
    shared: dict[tuple, list[sets.EvalSet]] = {}
    for program in scope.programs:
        task = scope.tasks[program["fn"]]
        fn, train_length = program["fn"], program["train_length"]
        timeout, seen = config.eval_timeout, seen_of(program["dataset_id"])
        if task.table:
            key = (fn, program["derived_seed"])
            if key not in shared:
                shared[key] = [_population(task, program, uci_dir)]
            plans.append(Plan(program, task.kind, shared[key][0], seen, timeout))
        for length in wanted.get((fn, train_length), ()):
            key = (fn, train_length, length)
            if key not in shared:
                rules = readings(task, train_length, length)
                inputs, stored_labels = balanced[fn, length]
                # The split's stored labels are the task's (they were drawn so): the
                # "task" reading is not computed again (a prime test per row at L=100).
                label = functools.partial(sets.labelled, inputs, rules, known={"task": stored_labels})
                shared[key] = [
                    sets.listed(
                        "balanced",
                        f"balanced:{size}",
                        length,
                        len(inputs),
                        label,
                        dataset_id=stored[fn, length],
                    ),
                    sets.exhaustive(length, rules)
                    if task.kind == "binary" and length <= exhaustive_up_to
                    else sets.sample(
                        task.kind, length, samples, sets.verify_seed(config.seed, fn, length), rules
                    ),
                ]
            plans += [Plan(program, task.kind, e, seen, timeout) for e in shared[key]]
    return plans


def _split(rows: list[tuple[str, int]]) -> tuple[list[str], np.ndarray]:
    """A stored split as its inputs and their labels."""
    return [x for x, _ in rows], np.fromiter((y for _, y in rows), dtype=np.uint8, count=len(rows))


def _lengths(tasks, pairs, lengths, size: int, base_seed: int, notify):
    """The evaluation lengths of each (fn, training length) of a non-tabular task, and
    the balanced dataset's grid point of each (fn, length). A requested length no task
    of the run can serve is refused; one only some can serve is skipped for those, with
    a warning naming the rule."""
    wanted, points, refused = {}, {}, {}
    for fn, train_length in pairs:
        task = tasks[fn]
        if task.table:
            continue
        for length in lengths if lengths is not None else _default_lengths(task, train_length):
            if (fn, length) not in points:
                try:
                    (points[fn, length],) = plan_grid([fn], [length], Sizes(2, 2, size), base_seed)
                except InfeasibleError as e:
                    refused.setdefault(length, {})[str(e)] = None
                    continue
            wanted.setdefault((fn, train_length), []).append(length)
    if lengths is not None:
        for length, reasons in refused.items():
            if not any(L == length for _, L in points):
                raise SynthError(f"no task of the run can be verified at L={length}: {'; '.join(reasons)}")
            for reason in reasons:
                notify(f"Warning: skipped {reason}")
    return wanted, points


def _default_lengths(task, train_length: int) -> list[int]:
    wanted = dict.fromkeys([train_length * m for m in MULTIPLES] + sorted(task.default_lengths))
    cap = DECIMAL_DEFAULT_MAX if task.kind == "decimal" else None
    return [L for L in wanted if task.length_rule(L) is None and (cap is None or L <= cap)]


def _seen(db):
    """dataset id -> the set of its inputs (every split), read once per dataset."""
    cache: dict[int, frozenset[str]] = {}

    def seen(dataset_id: int) -> frozenset[str]:
        if dataset_id not in cache:
            splits = load_examples(db, dataset_id)
            cache[dataset_id] = frozenset(x for rows in splits.values() for x, _ in rows)
        return cache[dataset_id]

    return seen


def _population(task: Task, program: dict, uci_dir) -> sets.EvalSet:
    """Every row of the source table (a UCI table, or a table task's CSV), encoded with
    the affine maps of the run's dataset (the first draws of its seed)."""
    rows = len(task.table(uci_dir))
    encoded = functools.partial(_encoded_table, task, program["derived_seed"], uci_dir)
    return sets.listed("population", "population", task.fixed_length, rows, encoded)


@functools.lru_cache(maxsize=4)
def _encoded_table(task: Task, derived_seed: int, uci_dir) -> tuple[list[str], dict[str, np.ndarray]]:
    """A source table's every row as the dataset of ``derived_seed`` encodes rows (the
    trials of a run share one dataset: encoded once)."""
    table = task.table(uci_dir)
    params = tabular.affine_params(table, np.random.Generator(np.random.PCG64(derived_seed)))
    inputs = tabular.encode_rows(table, np.arange(len(table)), params)
    return inputs, {"task": np.asarray(table.labels, dtype=np.uint8)}


def _key(plan: Plan) -> tuple[int, int, str]:
    return plan.program["attempt_id"], plan.evalset.length, plan.evalset.key


def _run_checks(db, plans: list[Plan], notify) -> None:
    """Checks in worker threads (each waits on its sandboxed child), recorded by this
    thread as each ends. The plans of one code on one set (trials that proposed the same
    program) are one check; the largest sets start first, so that no long check is left
    for the end. Stopped (Ctrl-C, an error), the checks not started are dropped: what was
    recorded stays, the rest is for the next verify."""
    groups: dict[tuple, list[Plan]] = {}
    for p in plans:
        key = (p.program["program_hash"], p.program["func_name"], p.kind, p.timeout, id(p.evalset))
        groups.setdefault(key, []).append(p)
    checks = sorted(groups.values(), key=lambda group: -group[0].evalset.size)
    workers = max(1, min(len(checks), os.cpu_count() or 1))
    pool = ThreadPoolExecutor(workers)
    try:
        futures = {
            pool.submit(
                check,
                [(p.program, p.seen) for p in group],
                group[0].kind,
                group[0].evalset,
                timeout=group[0].timeout,
            ): group
            for group in checks
        }
        done = 0
        for future in as_completed(futures):
            rows = future.result()
            record_verification(db, rows)
            for p in futures[future]:
                done += 1
                notify(
                    f"[{done}/{len(plans)}] {p.program['fn']} trial {p.program['trial']} attempt "
                    f"{p.program['attempt']}: {p.evalset.kind} L={p.evalset.length} "
                    + ", ".join(
                        f"{r['rule']} {r['accuracy']:.3f}"
                        for r in rows
                        if r["attempt_id"] == p.program["attempt_id"]
                    )
                )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
