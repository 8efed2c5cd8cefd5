"""The database as the dataset cache: build what is missing, reuse what is stored.

All missing datasets of a grid are built in memory first and written afterwards, so a
grid point that fails to build leaves nothing half-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from synth.datasets import SPLITS, GridPoint, build_dataset
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
    }


def ensure_datasets(
    db: sqlite_utils.Database, points: list[GridPoint], *, uci_dir: Path | None = None
) -> list[StoredDataset]:
    cached = {i: find_dataset(db, request_of(p)) for i, p in enumerate(points)}
    built = {i: build_dataset(p, uci_dir=uci_dir) for i, p in enumerate(points) if not cached[i]}
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
