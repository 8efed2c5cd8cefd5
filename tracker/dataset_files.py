"""The published dataset folder layout, written from the database:
``<dir>/<target>/L<length>/seed<derived>/{train,val,test}.txt`` and ``meta.json``."""

from __future__ import annotations

import json
from pathlib import Path

import sqlite_utils

from tracker.datasets import load_examples
from tracker.db import StoreError
from tracker.files import write_atomic


def dataset_folder(root: Path, row: dict) -> Path:
    return Path(root) / row["target"] / f"L{row['length']}" / f"seed{row['derived_seed']}"


def meta_of(row: dict) -> dict:
    return {
        "fn": row["fn"],
        "target_name": row["target"],
        "kind": row["kind"],
        "length": row["length"],
        "sizes": {
            "requested": {s: row[f"{s}_size"] for s in ("train", "val", "test")},
            "effective": {s: row[f"{s}_effective"] for s in ("train", "val", "test")},
        },
        "base_seed": row["base_seed"],
        "derived_seed": row["derived_seed"],
        "fingerprint": row["fingerprint"],
        "generator_version": row["generator_version"],
    }


def write_dataset_folders(db: sqlite_utils.Database, rows: list[dict], root: Path) -> list[Path]:
    """Write datasets in the published layout; StoreError in one line when one cannot be
    (a file where a folder goes, a full disk): what that dataset's folder got is undone."""
    try:
        return [write_dataset_folder(db, row, root) for row in rows]
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise StoreError(f"cannot write datasets to {root}: {where}{e.strerror or e}") from None


def write_dataset_folder(db: sqlite_utils.Database, row: dict, root: Path) -> Path:
    """Write one dataset's split files and meta.json, each replaced atomically; on a
    failure, the files and folders this call created are removed again, so a folder never
    holds splits without their meta.json."""
    folder = dataset_folder(root, row)
    made = [p for p in (folder, *folder.parents) if not p.exists()][::-1]  # outermost first
    files = {
        f"{s}.txt": "".join(f"{x} -> {y}\n" for x, y in rows)
        for s, rows in load_examples(db, row["id"]).items()
    }
    files["meta.json"] = json.dumps(meta_of(row), indent=2) + "\n"
    new = [folder / name for name in files if not (folder / name).exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            write_atomic(folder / name, text)
    except BaseException:
        for path in new:
            path.unlink(missing_ok=True)
        for path in reversed(made):
            try:
                path.rmdir()
            except OSError:
                pass
        raise
    return folder
