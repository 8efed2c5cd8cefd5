"""The published dataset folder layout, written from the database:
``<dir>/<target>/L<length>/seed<derived>/{train,val,test}.txt`` and ``meta.json``."""

from __future__ import annotations

import json
from pathlib import Path

import sqlite_utils

from tracker.datasets import load_examples
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


def write_dataset_folder(db: sqlite_utils.Database, row: dict, root: Path) -> Path:
    """Write one dataset's split files and meta.json; each file replaced atomically."""
    folder = dataset_folder(root, row)
    folder.mkdir(parents=True, exist_ok=True)
    files = {f"{s}.txt": "".join(f"{x} -> {y}\n" for x, y in rows)
             for s, rows in load_examples(db, row["id"]).items()}  # fmt: skip
    files["meta.json"] = json.dumps(meta_of(row), indent=2) + "\n"
    for name, text in files.items():
        write_atomic(folder / name, text)
    return folder
