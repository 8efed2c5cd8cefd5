"""`synth run` and its resume as library functions: check everything (preflight), record
the run, run it (loop), export. Nothing is written or paid for before every check passed."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import sqlite3
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import sqlite_utils

from synth import __version__
from synth.config import (
    OFFLINE_PROVIDERS,
    PROMPT_VERSIONS,
    RESUMABLE,
    RunConfig,
    environment_settings,
    unread_settings,
)
from synth.custom_tasks import check_unchanged, definition, load_tasks_files, recorded_task
from synth.datasets.cache import StoredDataset, ensure_datasets
from synth.datasets.grid import GridPoint, Sizes
from synth.engine import trials
from synth.engine.budget import Budget
from synth.engine.estimate import estimate
from synth.engine.loop import Runner, setup_frozen
from synth.engine.preflight import (
    API_KEY_ENV,
    check_cap,
    check_grid_size,
    check_out_dir,
    check_outputs,
    grid_jobs,
    plan,
    provider_for,
    recorded_settings,
    run_price,
    shard_record,
)
from synth.errors import RunFailed, RunInterrupted, SetupFailed, SynthError
from synth.progress import Progress
from synth.tasks import get_task, use_custom_tasks
from tracker import runs as store
from tracker.dataset_files import write_dataset_folders
from tracker.db import StoreError, check_writable, open_db, remove_if_empty
from tracker.db import db_path as resolve_db
from tracker.exports import ExportPaths, write_exports
from tracker.prices import ModelPrice, load_prices
from tracker.runs import RunStopped
from tracker.shards import merged_shards

BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str
    db_path: Path
    manifest: dict | None  # None: stopped at its cost cap, no exports yet
    message: str | None = None  # how to go on, when it stopped short
    estimate: list[dict] | None = None  # a dry run's cost estimate (synth.engine.estimate)


def start_run(
    config: RunConfig,
    *,
    db_path: Path | None = None,
    argv: list[str] | None = None,
    uci_dir: Path | None = None,
    progress_stream=None,
    notify=lambda message: None,
) -> RunResult:
    """A new run of ``config``; ``notify`` receives warnings meant for the user."""
    config.validate()
    use_custom_tasks(load_tasks_files(config.tasks_files or ()))
    recorded_settings(config)
    path = resolve_db(db_path)
    check_writable(path)
    provider = None if config.dry_run else provider_for(config)  # the key, before any download
    price = run_price(config)
    points = plan(config, uci_dir, notify)
    check_grid_size(len(points), config.num_trials)
    shard = shard_record(config, points, notify)
    check_outputs(config, path)
    created = not path.exists()
    # Closed at the end: the last connection to close folds the WAL into the file, so
    # the database file alone holds everything (as a copy or an archive of it will).
    with open_db(path) as db:
        try:
            if store.get_run(db, config.run_id):
                raise SynthError(
                    f"run {config.run_id!r} already exists in {path}; "
                    f"continue it with: synth resume {config.run_id}"
                )
            stored = ensure_datasets(db, points, uci_dir=uci_dir)
            jobs = grid_jobs(config, db, stored, created=created)  # before the run is recorded
        except BaseException:
            if created:  # refused before anything was recorded: leave no empty database behind
                remove_if_empty(db, path)
            raise
        if config.dataset_dir:
            _mirror(db, stored, Path(config.dataset_dir))
        try:
            store.create_run(
                db,
                run_record(config, path, argv, price),
                trials.grid_record(stored, config),
                tasks=[
                    definition(t)
                    for t in {s.point.task.id: s.point.task for s in stored}.values()
                    if t.origin
                ],
                shard=shard,
            )
        except KeyboardInterrupt:  # its transaction rolled back: no run to resume
            raise RunInterrupted(
                f"interrupted before run {config.run_id} was recorded; nothing of it was written"
            ) from None
        with _interruptible(db, path, config):
            store.record_event(
                db,
                config.run_id,
                "run_started",
                f"{len(stored)} grid points",
                data={"dry_run": config.dry_run},
            )
            return _execute(db, path, config, stored, jobs, provider, progress_stream, price)


def resume_run(
    run_id: str,
    *,
    db_path: Path | None = None,
    overrides: dict | None = None,
    progress_stream=None,
) -> RunResult:
    """Continue a stored run from the database alone; recorded attempts are never redone.

    ``overrides`` may hold the RESUMABLE settings (they do not change the experiment:
    concurrency, timeouts, retries, server, output paths, the cost cap), stored with the run's config;
    any other setting only with its stored value (a command line given again). The
    RESUMABLE settings not given are taken from their variables (ENV_VARS) where set."""
    path = resolve_db(db_path)
    if not path.exists():
        raise SynthError(f"no database at {path}")
    with open_db(path) as db:
        run = store.get_run(db, run_id)
        if run is None:
            raise SynthError(f"no run {run_id!r} in {path}")
        if merged_shards(db, run_id):
            raise SynthError(
                f"run {run_id!r} in {path} was merged from shards: resume each unfinished shard "
                "in its own database, then merge it again (synth merge)"
            )
        recorded = json.loads(run["config"])
        overrides = dict(overrides or {})
        own_tasks = store.run_tasks(db, run_id)
        if (given := overrides.pop("tasks_files", None)) is not None:
            check_unchanged(run_id, own_tasks, given)
        use_custom_tasks(recorded_task(r) for r in own_tasks)
        overrides = {**environment_settings(set(RESUMABLE) - set(overrides)), **overrides}
        changed = sorted(k for k, v in overrides.items() if k not in RESUMABLE and not _same(k, v, recorded))
        if changed:
            names = ", ".join("--" + k.removesuffix("_path").replace("_", "-") for k in changed)
            raise SynthError(f"a resume keeps the stored experiment; cannot change {names}")
        overrides = {k: v for k, v in overrides.items() if k in RESUMABLE}
        config = RunConfig.from_json({**recorded, **overrides})
        config.validate(new_run=False)
        if config.prompt_version not in (None, PROMPT_VERSIONS[config.prompt]):
            raise SynthError(
                f"run {run_id!r} was made with prompt {config.prompt} version {config.prompt_version}; "
                f"this llm-pv has version {PROMPT_VERSIONS[config.prompt]}, so its prompts would differ: "
                "resume it with the llm-pv that started it"
            )
        provider = None if config.dry_run else provider_for(config)
        price = recorded_price(run, config)
        check_cap(config, price)
        if config.max_cost is not None and store.run_cost(db, run_id) is None:
            raise SynthError(
                f"--max-cost cannot bound run {run_id}: the cost of some of its responses is unknown"
            )
        check_outputs(config, path)
        stored = recorded_grid(db, config)
        jobs = grid_jobs(config, db, stored)  # the stored template, before the run is touched
        owner = store.claim_run(db, run_id)
        if owner is not None:
            raise SynthError(
                f"run {run_id!r} is still running (process {owner} on this "
                "machine); stop it before resuming, or let it finish"
            )
        if config.dataset_dir:
            _mirror(db, stored, Path(config.dataset_dir))
        with _interruptible(db, path, config):
            store.set_run_config(db, run_id, config.to_json())
            if run["prices"] is None:
                store.set_run_prices(db, run_id, price.to_json())
            store.record_event(db, run_id, "resumed", f"resumed with {overrides or {}}", data=overrides)
            return _execute(db, path, config, stored, jobs, provider, progress_stream, price)


def recorded_price(run: dict, config: RunConfig) -> ModelPrice:
    """The price the run was started with; the package table's for a run recorded
    before runs stored theirs."""
    if run["prices"] is not None:
        return ModelPrice.from_json(json.loads(run["prices"]))
    return load_prices().for_model(config.model)


def _same(key: str, value, stored: dict) -> bool:
    """Whether a setting given to a resume is the stored one; a template by its text,
    whatever path names it now."""
    if key == "prompt_template_path" and value is not None:
        try:
            return Path(value).read_text(encoding="utf-8") == stored.get("prompt_template")
        except OSError:
            return False
    return stored.get(key) == value


def recorded_grid(db: sqlite_utils.Database, config: RunConfig) -> list[StoredDataset]:
    """The grid points of a stored run with the datasets it used, from the database."""
    sizes = Sizes(config.train_size, config.val_size, config.test_size)
    rows = db.query(
        "select rd.fn, rd.length, d.id, d.fingerprint, d.train_effective, d.val_effective, "
        "d.test_effective from run_datasets rd join datasets d on d.id = rd.dataset_id "
        "where rd.run_id = ? order by rd.rowid",
        [config.run_id],
    )
    return [
        StoredDataset(
            GridPoint(
                get_task(r["fn"]),
                r["length"],
                sizes,
                Sizes(r["train_effective"], r["val_effective"], r["test_effective"]),
                config.seed,
            ),
            r["id"],
            r["fingerprint"],
            built=False,
        )
        for r in rows
    ]


def export_run(run_id: str, *, db_path: Path | None = None, out_dir: Path | None = None) -> dict:
    """Write a stored run's exports again (to its own paths, or under ``out_dir``)."""
    with open_db(db_path, readonly=True) as db:
        run = store.get_run(db, run_id)
        if run is None:
            raise SynthError(f"no run {run_id!r} in {resolve_db(db_path)}")
        config = RunConfig.from_json(json.loads(run["config"]))
        if out_dir:
            config.out_dir, config.out_jsonl, config.out_csv, config.out_manifest = (
                str(out_dir),
                None,
                None,
                None,
            )
        check_out_dir(config, resolve_db(db_path))
        try:
            return write_exports(db, run_id, export_paths(config))
        except OSError as e:
            raise SynthError(f"cannot write the exports of run {run_id}: {e}") from None


def export_paths(config: RunConfig) -> ExportPaths:
    return ExportPaths(config.jsonl_path, config.csv_path, config.manifest_path)


def _execute(db, path, config, stored, jobs, provider, progress_stream, price: ModelPrice) -> RunResult:
    total, done, todo = trials.unfinished(db, stored, config)
    budget = Budget(
        config.max_cost,
        price,
        config.max_output_tokens,
        spent=store.run_cost(db, config.run_id),
        recorded_inputs=store.recorded_input_tokens(db, config.model, [j.prompt_hash for j in jobs.values()]),
    )
    progress = Progress(
        total,
        len(done),
        progress_stream,
        solved_trials=sum(t["val_acc"] == 1.0 for t in done),
        spent=budget.spent,
    )
    runner = Runner(db, config, provider, progress, budget)
    try:
        with setup_frozen():
            asyncio.run(_run_and_close(runner, jobs, todo))
    except RunFailed as e:
        message = str(e)
        if isinstance(e, SetupFailed):
            message += f". Once fixed, continue with: synth resume {config.run_id} --db {path.resolve()}"
        store.stop_run(db, config.run_id, "failed", "run_failed", message, level="error", error=message)
        raise type(e)(message) from None
    if budget.exhausted:
        message = (
            f"run {config.run_id} stopped at its cost cap: ${budget.spent:.4f} spent of "
            f"${config.max_cost:g}, and the next call could cost up to ${budget.refused:.4f}. "
            f"Continue it with: synth resume {config.run_id} --max-cost HIGHER --db {path.resolve()}"
        )
        store.stop_run(db, config.run_id, BUDGET_EXHAUSTED, BUDGET_EXHAUSTED, message, level="warning")
        return RunResult(config.run_id, BUDGET_EXHAUSTED, path, None, message)
    status = "dry_run" if config.dry_run else "completed"
    costs = None
    if config.dry_run and config.provider not in OFFLINE_PROVIDERS:
        mine = {(fn, n): k for fn, n, _, k in trials.grid_record(stored, config)} if config.shard else None
        costs = estimate(config, jobs, price, budget.recorded_inputs, mine)
    try:
        manifest = store.end_run(
            db, config.run_id, status, lambda: write_exports(db, config.run_id, export_paths(config))
        )
    except OSError as e:  # a full disk, a folder gone meanwhile: every result is recorded
        raise SynthError(
            f"run {config.run_id}: every result is recorded, but the exports could "
            f"not be written ({e}); write them with: synth export {config.run_id} "
            f"--db {path.resolve()} --out-dir DIR"
        ) from None
    return RunResult(config.run_id, status, path, manifest, estimate=costs)


@contextmanager
def _interruptible(db, path: Path, config: RunConfig):
    """Ctrl-C (or SIGTERM) at any moment of a recorded run, the exports included: the run
    is marked interrupted, and one line says how to resume it. A store that fails it
    otherwise (a table dropped by hand) marks it failed where it still can."""
    try:
        yield
    except Exception as e:
        first = e
        while isinstance(first, BaseExceptionGroup):  # from the runner's tasks
            first = first.exceptions[0]
        if isinstance(first, StoreError | sqlite3.DatabaseError) and not isinstance(first, RunStopped):
            try:
                store.set_run_status(db, config.run_id, "failed", error=str(first))
            except (StoreError, sqlite3.Error):
                pass  # the error raised says what is wrong with the database
        raise
    except KeyboardInterrupt:
        store.stop_run(
            db, config.run_id, "interrupted", "interrupted", "stopped by the user", level="warning"
        )
        raise RunInterrupted(
            f"run {config.run_id} interrupted; nothing recorded is lost. Resume it with: "
            f"synth resume {config.run_id} --db {path.resolve()}"
        ) from None


async def _run_and_close(runner: Runner, jobs, trials) -> None:
    with terminate_cancels(asyncio.current_task()) as terminated:
        try:
            await runner.run(jobs, trials)
        except asyncio.CancelledError:
            if terminated:
                raise KeyboardInterrupt from None  # handled as Ctrl-C is
            raise
        finally:
            if runner.provider is not None:
                await runner.provider.aclose()


@contextmanager
def terminate_cancels(task: asyncio.Task):
    """SIGTERM (`kill`, `docker stop`, a scheduler's time limit) cancels the run, which
    then stops as on Ctrl-C: marked interrupted, the resume command printed; not a
    silent exit. Yields a list that is non-empty once it did. Signals are the main
    thread's only: from another thread nothing changes. The handler in place before is
    put back."""
    terminated: list[bool] = []
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, lambda: (terminated.append(True), task.cancel()))
    except (RuntimeError, ValueError):
        yield terminated
        return
    try:
        yield terminated
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)


def _mirror(db, stored: list[StoredDataset], root: Path) -> None:
    rows = {
        r["id"]: r
        for r in db["datasets"].rows_where(f"id in ({', '.join('?' * len(stored))})", [s.id for s in stored])
    }
    write_dataset_folders(db, [rows[s.id] for s in stored], root)


def run_record(config: RunConfig, path: Path, argv: list[str] | None, price: ModelPrice) -> dict:
    return {
        "prices": json.dumps(price.to_json()),
        "run_id": config.run_id,
        "provider": config.provider,
        "model": config.model,
        # An offline proposer calls no API: no mode, as its exports say.
        "api_mode": None if "api_mode" in unread_settings(config.provider) else config.api_mode,
        "dry_run": int(config.dry_run),
        "config": json.dumps(config.to_json()),
        "argv": json.dumps(argv or sys.argv),
        "versions": json.dumps(_versions()),
        "environment": json.dumps(
            {
                "python_executable": sys.executable,
                "python_version": platform.python_version(),
                "openai_api_key_set": bool(os.environ.get(API_KEY_ENV)),
                "database": str(path.resolve()),
                "platform": platform.platform(),
            }
        ),
    }


def _versions() -> dict:
    out = {"llm-pv": __version__, "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for dist in ("openai", "numpy", "sqlite-utils", "gmpy2"):
        out[dist] = version(dist)
    return out
