"""The leakage audit of every dataset a report covers, from the stored examples.

Per dataset: rows and duplicate inputs (rows minus distinct inputs) of each split, and
the overlap of each pair of splits, by input and by whole line (input and label). A
dataset is clean when no input is in two splits; duplicates within a split are allowed
(some generators draw them by design, and the splitter keeps copies together).

This is the one analysis done in Python: it must read every example, and SQLite has
no hash aggregation, so a GROUP BY sorts them all (16 s for 10 million rows, measured)
where per-dataset sets take 6 s. Each dataset is read by its primary-key range.
"""

from __future__ import annotations

import json

import sqlite_utils

from reports.scope import Scope, scoped

SPLITS = ("train", "val", "test")
PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))


def leakage_audit(db: sqlite_utils.Database, scope: Scope) -> list[dict]:
    datasets = db.query(
        f"""
        select d.id as dataset_id, d.fn, d.target, d.length, d.fingerprint, d.base_seed, d.derived_seed,
          json_group_array(rd.run_id) as runs
        from run_datasets rd join datasets d on d.id = rd.dataset_id
        where {scoped("rd.run_id", "rd.fn")}
        group by d.id order by d.fn, d.length, d.base_seed, d.id
        """,
        scope.params,
    )
    return [{**d, "runs": json.loads(d["runs"]), **audit_dataset(db, d["dataset_id"])} for d in datasets]


def audit_dataset(db: sqlite_utils.Database, dataset_id: int) -> dict:
    lines, inputs, row = {}, {}, {}
    for split in SPLITS:
        rows = db.execute(
            "select input, label from examples where dataset_id = ? and split = ?", [dataset_id, split]
        ).fetchall()
        lines[split] = set(rows)
        inputs[split] = {x for x, _ in lines[split]}
        row[f"{split}_rows"] = len(rows)
        row[f"{split}_duplicates"] = len(rows) - len(inputs[split])
    for a, b in PAIRS:
        row[f"input_{a}_{b}"] = len(inputs[a] & inputs[b])
        row[f"line_{a}_{b}"] = len(lines[a] & lines[b])
    row["input_overlap"] = sum(row[f"input_{a}_{b}"] for a, b in PAIRS)
    row["clean"] = row["input_overlap"] == 0
    return row
