"""`synth study run` and `synth study resume`: every cell checked, its datasets built and
its prompts rendered before any run is recorded; then every cell's run in one event loop,
with one progress display, evaluations sharing one sandbox's cores, and the calls to
each endpoint (base URL and key) under that endpoint's own concurrency limit, so that a
slow local server does not hold back the API.

Running a study's file again under its name resumes it: finished cells are kept, the
others go on from what their runs recorded, and nothing paid for is asked again.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from synth.config import OFFLINE_PROVIDERS, RunConfig
from synth.custom_tasks import definition, load_tasks_files
from synth.datasets.cache import ensure_datasets
from synth.engine import trials
from synth.engine.budget import Budget, Pool
from synth.engine.entry import (
    BUDGET_EXHAUSTED,
    export_paths,
    recorded_grid,
    recorded_price,
    run_record,
    terminate_cancels,
)
from synth.engine.estimate import estimate
from synth.engine.loop import Runner, setup_frozen
from synth.engine.preflight import (
    check_cap,
    check_grid_size,
    check_outputs,
    grid_jobs,
    plan,
    provider_for,
    recorded_settings,
    run_price,
    shard_record,
)
from synth.errors import RunFailed, RunInterrupted, SynthError
from synth.progress import CellProgress, Progress
from synth.study.spec import Cell, Study, canonical, load_study
from synth.tasks import use_custom_tasks
from tracker import runs as store
from tracker import studies
from tracker.db import check_writable, open_db, remove_if_empty
from tracker.db import db_path as resolve_db
from tracker.exports import write_exports
from tracker.prices import ModelPrice

# A run of a study's cell that is over: it is not run again.
ENDED = ("completed",)


@dataclass(frozen=True)
class StudyResult:
    name: str
    db_path: Path
    statuses: dict[str, str]  # run id -> its status


@dataclass
class _Prepared:
    """One cell, ready to run: its config, proposer, jobs and trials."""

    cell: Cell
    config: RunConfig
    provider: object
    price: ModelPrice
    jobs: dict
    new: bool
    points: list | None = None
    shard: dict | None = None  # what create_run records of a sharded cell


def run_study(
    study: Study,
    *,
    db_path: Path | None = None,
    uci_dir: Path | None = None,
    argv: list[str] | None = None,
    progress_stream=None,
    notify=lambda message: None,
    max_cost: float | None = None,
    shard: str | None = None,
) -> StudyResult:
    """Run (or go on with) every cell of ``study``; see the module's docstring.
    ``max_cost``: USD the whole study may spend, its recorded spend included; ``shard``
    ("I/N"): each cell runs only its shard I of N of the grid's trials, as
    `synth run --shard` does (docs/scale.md)."""
    if max_cost is not None and not 0 < max_cost < math.inf:
        raise SynthError(f"--max-cost must be a positive number of USD, finite (got {max_cost})")
    path = resolve_db(db_path)
    check_writable(path)
    created = not path.exists()
    with open_db(path) as db:
        try:
            cells = _prepare(db, study, path, uci_dir, notify, created, max_cost, shard)
        except BaseException:
            if created:
                remove_if_empty(db, path)
            raise
        studies.record_study(db, study.name, canonical(study.spec), study.sha256, str(study.path))
        for c in cells:
            if c.new:
                store.create_run(
                    db,
                    run_record(c.config, path, argv, c.price),
                    trials.grid_record(c.points, c.config),
                    tasks=[
                        definition(t)
                        for t in {s.point.task.id: s.point.task for s in c.points}.values()
                        if t.origin
                    ],
                    study_cell={
                        "study": study.name,
                        "system": c.cell.system.name,
                        "prompt": c.cell.prompt_label,
                        "seed": c.cell.seed,
                    },
                    shard=c.shard,
                )
                store.record_event(db, c.config.run_id, "run_started", f"cell of study {study.name}")
            else:
                owner = store.claim_run(db, c.config.run_id)
                if owner is not None:
                    raise SynthError(
                        f"study {study.name}: run {c.config.run_id} is still running (process {owner})"
                        "; stop it before resuming the study"
                    )
                store.record_event(db, c.config.run_id, "resumed", f"cell of study {study.name}")
        pool = None
        if max_cost is not None:
            recorded = [store.run_cost(db, c.run_id) for c in study.cells if store.get_run(db, c.run_id)]
            pool = Pool(max_cost, sum(cost or 0.0 for cost in recorded))
        statuses = _execute(db, path, study, cells, progress_stream, notify, pool)
    return StudyResult(study.name, path, statuses)


def estimate_study(
    study: Study, *, db_path: Path | None = None, uci_dir: Path | None = None, notify=lambda message: None
) -> list[dict]:
    """What the study's cells not yet finished will cost, before any call and without
    recording a run (their datasets are built and stored, as a run's dry run does): one
    row per system, task and length, summed over its wordings and seeds, then a total."""
    path = resolve_db(db_path)
    check_writable(path)
    created = not path.exists()
    with open_db(path) as db:
        try:
            cells = _prepare(db, study, path, uci_dir, notify, created)
        except BaseException:
            if created:
                remove_if_empty(db, path)
            raise
        rows: dict[tuple, dict] = {}
        for c in cells:
            recorded = store.recorded_input_tokens(
                db, c.config.model, [j.prompt_hash for j in c.jobs.values()]
            )
            for r in estimate(c.config, c.jobs, c.price, recorded)[:-1]:  # its own total left out
                key = (c.cell.system.name, r["fn"], r["length"])
                rows[key] = _added(rows.get(key), {**r, "system": c.cell.system.name})
    total = None
    for row in rows.values():
        total = _added(total, {**row, "system": "total", "fn": "", "length": None})
    return [*rows.values(), *([total] if total else [])]


def _added(into: dict | None, row: dict) -> dict:
    """``row``'s counts and dollars added to ``into``'s (dollars None once one is unknown)."""
    if into is None:
        return dict(row)
    for key, value in row.items():
        if key.endswith(("_min", "_max")):
            into[key] = None if value is None or into[key] is None else into[key] + value
    return into


def resume_study(name: str, *, db_path: Path | None = None, **kwargs) -> StudyResult:
    """Go on with the stored study ``name``, from the file it was started with."""
    path = resolve_db(db_path)
    if not path.exists():
        raise SynthError(f"no database at {path}")
    with open_db(path, readonly=True) as db:
        row = studies.get_study(db, name)
    if row is None:
        raise SynthError(f"no study {name!r} in {path}")
    study = load_study(row["path"])
    if study.sha256 != row["sha256"]:
        raise SynthError(_changed(name, json.loads(row["spec"]), study.spec))
    return run_study(study, db_path=path, **kwargs)


def _check_stored(db, study: Study) -> dict[str, dict | None]:
    """Each cell's stored run (None: not started), every one checked to be this study's."""
    row = studies.get_study(db, study.name)
    if row is not None and row["sha256"] != study.sha256:
        raise SynthError(_changed(study.name, json.loads(row["spec"]), study.spec))
    runs = {}
    for cell in study.cells:
        runs[cell.run_id] = run = store.get_run(db, cell.run_id)
        linked = db.execute("select study from study_runs where run_id = ?", [cell.run_id]).fetchone()
        if run is not None and (linked is None or linked[0] != study.name):
            raise SynthError(
                f"run {cell.run_id} exists and is no cell of study {study.name}: rename the study"
            )
    return runs


def _changed(name: str, stored: dict, now: dict) -> str:
    where, before, after = _first_difference(stored, now)
    return (
        f"study {name!r} was started from another file: {where or 'the file'} was {before!r}, now {after!r}; "
        "give the study a new name, or put the file back"
    )


def _first_difference(a, b, where: str = ""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return where, a, b


def _prepare(
    db,
    study: Study,
    path: Path,
    uci_dir,
    notify,
    created: bool,
    max_cost: float | None = None,
    shard: str | None = None,
) -> list[_Prepared]:
    """Every cell's config, proposer (its key), datasets and prompts, before any is
    recorded: a cell that would fail refuses the whole study. Cells of one grid (the same
    tasks, lengths, sizes and seed) plan, build and load their datasets once. A stored
    cell keeps its shard; one of another shard than ``shard`` refuses it."""
    runs = _check_stored(db, study)
    files = sorted({f for cell in study.cells for f in cell.config().tasks_files or ()})
    use_custom_tasks(load_tasks_files(files))  # every cell's own tasks, one registry
    cells = []
    total = 0
    grids: dict[tuple, list] = {}
    for cell in study.cells:
        run = runs[cell.run_id]
        stored_shard = json.loads(run["config"]).get("shard") if run is not None else shard
        if shard is not None and stored_shard != shard:
            raise SynthError(
                f"study {study.name}: run {cell.run_id} is shard {stored_shard or 'none (a whole run)'} "
                f"in {path}, not {shard}; each shard of a study goes in its own database"
            )
        if run is not None and run["status"] in ENDED:
            continue
        if run is None:
            config = cell.config()
            config.shard = shard
            recorded_settings(config)
        else:
            config = RunConfig.from_json(json.loads(run["config"]))
        config.validate(new_run=run is None)
        check_outputs(config, path)
        try:
            provider = provider_for(config, cell.system.api_key_env)
        except SynthError as e:
            raise SynthError(f"study {study.name}, system {cell.system.name!r}: {e}") from None
        if run is None:
            price = run_price(config)
        else:
            price = recorded_price(run, config)
            check_cap(config, price)
        points = None
        if run is None:
            points = _once(grids, _grid(config), plan, config, uci_dir, notify)
        total += (len(points) if points is not None else 0) * config.num_trials
        cells.append(
            _Prepared(
                cell,
                config,
                provider,
                price,
                {},
                run is None,
                points,
                shard_record(config, points, notify) if run is None else None,
            )
        )
    check_grid_size(total, 1)
    if max_cost is not None:
        _check_priced(cells)
    built: dict[tuple, list] = {}
    made: dict = {}
    for c in cells:
        if c.new:
            stored = _once(built, _grid(c.config), ensure_datasets, db, c.points, uci_dir=uci_dir)
        else:
            stored = recorded_grid(db, c.config)
        c.jobs = grid_jobs(c.config, db, stored, created=created, made=made)
        c.points = stored
    return cells


def _once(cache: dict, key, make, *args, **kwargs):
    """``cache[key]``, made by ``make(*args, **kwargs)`` the first time it is asked for."""
    if key not in cache:
        cache[key] = make(*args, **kwargs)
    return cache[key]


def _grid(config: RunConfig) -> tuple:
    """What a cell's grid points and datasets depend on (the study's tasks are one registry)."""
    return (
        tuple(config.functions or ()),
        tuple(config.lengths or ()),
        config.train_size,
        config.val_size,
        config.test_size,
        config.seed,
        config.strict_sizes,
    )


def _check_priced(cells: list[_Prepared]) -> None:
    """A study's cap needs the price of every model it calls."""
    for c in cells:
        if c.config.provider not in OFFLINE_PROVIDERS and c.price.price is None:
            raise SynthError(
                f"--max-cost needs the price of model {c.config.model!r} (system {c.cell.system.name!r}), "
                "which the price table does not have: give one with prices_path in the study file"
            )


def _execute(
    db, path: Path, study: Study, cells: list[_Prepared], progress_stream, notify, pool
) -> dict[str, str]:
    cell_trials = {c.config.run_id: trials.unfinished(db, c.points, c.config) for c in cells}
    done = [t for _, finished, _ in cell_trials.values() for t in finished]
    progress = Progress(
        sum(total for total, _, _ in cell_trials.values()),
        len(done),
        progress_stream,
        solved_trials=sum(t["val_acc"] == 1.0 for t in done),
    )
    try:
        todo = {run_id: rest for run_id, (_, _, rest) in cell_trials.items()}
        with setup_frozen():
            asyncio.run(_run_all(db, path, cells, todo, progress, notify, pool))
    except KeyboardInterrupt:
        for c in cells:
            run = store.get_run(db, c.config.run_id)
            if run["status"] == "running":
                store.stop_run(
                    db, c.config.run_id, "interrupted", "interrupted", "stopped by the user", level="warning"
                )
        raise RunInterrupted(
            f"study {study.name} interrupted; nothing recorded is lost. Resume it with: "
            f"synth study resume {study.name} --db {path.resolve()}"
        ) from None
    return {r["run_id"]: r["status"] for r in studies.study_cells(db, study.name)}


def _end(db, path: Path, c: _Prepared, notify) -> None:
    """A cell whose trials are all done ends there and then, its exports written while
    the other cells' calls go on. Exports that cannot be written leave the run open
    (end_run's transaction), and a resume of the study writes them."""
    run_id = c.config.run_id
    try:
        store.end_run(db, run_id, "completed", lambda: write_exports(db, run_id, export_paths(c.config)))
    except OSError as e:
        notify(
            f"Warning: {run_id}: every result is recorded, but the exports could not be written "
            f"({e}); write them with: synth study resume {c.cell.study} --db {path.resolve()}"
        )


async def _run_all(
    db, path: Path, cells: list[_Prepared], todo: dict, progress: Progress, notify, pool
) -> None:
    """Every cell's trials in this one event loop; a cell whose calls all fail (a bad key,
    an unknown model) stops alone, marked failed, and the others go on."""
    eval_slots = asyncio.Semaphore(os.cpu_count() or 1)
    limits: dict[tuple, int] = {}
    for c in cells:
        endpoint = c.cell.system.endpoint
        limits[endpoint] = max(limits.get(endpoint, 0), c.config.concurrency)
    call_slots = {endpoint: asyncio.Semaphore(n) for endpoint, n in limits.items()}

    async def one(c: _Prepared) -> None:
        run_id = c.config.run_id
        budget = Budget(
            c.config.max_cost,
            c.price,
            c.config.max_output_tokens,
            spent=store.run_cost(db, run_id),
            recorded_inputs=store.recorded_input_tokens(
                db, c.config.model, [j.prompt_hash for j in c.jobs.values()]
            ),
            pool=pool,
        )
        label = f"{c.cell.system.name}/{c.cell.prompt_label}/s{c.cell.seed}"
        runner = Runner(
            db,
            c.config,
            c.provider,
            CellProgress(progress, label, budget.spent),
            budget,
            call_slots=call_slots[c.cell.system.endpoint],
            eval_slots=eval_slots,
        )
        try:
            await runner.run(c.jobs, todo[run_id])
            if budget.exhausted:
                message = (
                    f"{run_id} stopped at a cost cap (its own, or the study's): ${budget.spent:.4f} "
                    f"spent; go on with a higher one: synth study resume {c.cell.study} --max-cost USD "
                    f"--db {path.resolve()}"
                )
                store.stop_run(db, run_id, BUDGET_EXHAUSTED, BUDGET_EXHAUSTED, message, level="warning")
                notify(f"Warning: {message}")
            else:
                _end(db, path, c, notify)
        except RunFailed as e:
            store.stop_run(db, run_id, "failed", "run_failed", str(e), level="error", error=str(e))
            notify(f"Warning: {run_id} failed: {e}")
        finally:
            await c.provider.aclose()

    with terminate_cancels(asyncio.current_task()) as terminated:
        try:
            async with asyncio.TaskGroup() as group:
                for c in cells:
                    group.create_task(one(c))
        except asyncio.CancelledError:
            if terminated:
                raise KeyboardInterrupt from None
            raise
