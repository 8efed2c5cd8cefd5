"""The database as the dataset cache: build what is missing, reuse what is stored.

All missing datasets of a grid are built in memory first and written afterwards, so a
grid point that fails to build leaves nothing half-written.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import sqlite_utils

from synth.custom_tasks import task_of
from synth.datasets.grid import SPLITS, GridPoint
from synth.datasets.splits import Dataset, build_dataset
from synth.tasks import get_task
from tracker.datasets import find_dataset, save_dataset


@dataclass(frozen=True)
class StoredDataset:
    point: GridPoint
    id: int
    fingerprint: str
    built: bool  # False when it came from the cache


def request_of(point: GridPoint) -> dict:
    return {
        "fn": point.task.id,
        "length": point.length,
        "train_size": point.sizes.train,
        "val_size": point.sizes.val,
        "test_size": point.sizes.test,
        "base_seed": point.seed,
        "generator_version": point.task.version,
        # What defines a researcher's task (its file, or its CSV): a changed one is a new request.
        "task_sha256": point.task.origin.key if point.task.origin else "",
    }


def ensure_datasets(
    db: sqlite_utils.Database, points: list[GridPoint], *, uci_dir: Path | None = None
) -> list[StoredDataset]:
    cached = {i: find_dataset(db, request_of(p)) for i, p in enumerate(points)}
    missing = [i for i in cached if not cached[i]]
    built = dict(zip(missing, build_all([points[i] for i in missing], uci_dir)))
    out = []
    for i, point in enumerate(points):
        if cached[i]:
            out.append(StoredDataset(point, cached[i]["id"], cached[i]["fingerprint"], False))
            continue
        ds = built[i]
        meta = {
            **request_of(point),
            "fingerprint": ds.fingerprint,
            "target": point.task.target,
            "kind": point.task.kind,
            "train_effective": point.effective.train,
            "val_effective": point.effective.val,
            "test_effective": point.effective.test,
            "derived_seed": point.derived_seed,
        }
        rows = ((s, j, x, y) for s in SPLITS for j, (x, y) in enumerate(ds.splits[s]))
        out.append(StoredDataset(point, save_dataset(db, meta, rows), ds.fingerprint, True))
    return out


def build_all(points: list[GridPoint], uci_dir: Path | None) -> list[Dataset]:
    """Build datasets, in worker processes when there are several: generation is CPU
    bound (primes at L=100 take seconds each) and every dataset is independent."""
    workers = min(len(points), os.cpu_count() or 1)
    if workers < 2:
        return [build_dataset(p, uci_dir=uci_dir) for p in points]
    # Costliest first so that no worker is left with a long job at the end.
    order = sorted(range(len(points)), key=lambda i: -_cost(points[i]))
    with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
        futures = {i: pool.submit(_build_by_id, _spec(points[i]), uci_dir) for i in order}
        return [Dataset(points[i], *futures[i].result()) for i in range(len(points))]


def _spec(point: GridPoint) -> tuple:
    """A grid point as plain values: tasks hold closures, which do not pickle; a
    researcher's task travels as its origin, its tasks file's text, run again there."""
    return point.task.id, point.task.origin, point.length, point.sizes, point.effective, point.seed


def _build_by_id(spec: tuple, uci_dir: Path | None) -> tuple[dict, str]:
    fn, origin, length, sizes, effective, seed = spec
    task = task_of(origin, fn) if origin else get_task(fn)
    dataset = build_dataset(GridPoint(task, length, sizes, effective, seed), uci_dir=uci_dir)
    return dataset.splits, dataset.fingerprint


def _cost(point: GridPoint) -> int:
    """A rough relative cost: primality tests grow fast with the number of digits."""
    scale = point.length**2 if point.task.kind == "decimal" else point.length
    return scale * point.effective.total
