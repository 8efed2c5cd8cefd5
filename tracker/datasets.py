"""Datasets in the store: saved once per fingerprint, found again by the request they answer."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime

import sqlite_utils

from tracker.audits import audit, save_audit
from tracker.migrations import DATASET_REQUEST as REQUEST_KEY


def find_dataset(db: sqlite_utils.Database, request: dict) -> dict | None:
    """The stored dataset that answers this request, if any."""
    where = " and ".join(f"[{k}] = ?" for k in REQUEST_KEY)
    rows = list(db["datasets"].rows_where(where, [request[k] for k in REQUEST_KEY]))
    return rows[0] if rows else None


def save_dataset(db: sqlite_utils.Database, meta: dict, examples: Iterable[tuple[str, int, str, int]]) -> int:
    """Store a dataset and its (split, idx, input, label) rows in one transaction; a
    dataset whose fingerprint is already stored is not written again. Its leakage audit
    is kept with it (tracker.audits), in the same transaction. The check is made
    inside that write transaction (BEGIN IMMEDIATE: one writer at a time), so that when
    two processes build the same dataset the second returns the one the first stored."""
    record = {**meta, "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    examples = list(examples)
    with db.conn:
        db.conn.execute("begin immediate")
        existing = db.conn.execute(
            "select id from datasets where fingerprint = ?", [meta["fingerprint"]]
        ).fetchone()
        if existing:
            return existing[0]
        cur = db.conn.execute(
            f"insert into datasets ({', '.join(record)}) values ({', '.join('?' * len(record))})",
            list(record.values()),
        )
        dataset_id = cur.lastrowid
        db.conn.executemany(
            "insert into examples (dataset_id, split, idx, input, label) values (?, ?, ?, ?, ?)",
            ((dataset_id, s, i, x, y) for s, i, x, y in examples),
        )
        save_audit(db, dataset_id, audit((s, x, y) for s, _, x, y in examples))
    return dataset_id


def load_examples(db: sqlite_utils.Database, dataset_id: int) -> dict[str, list[tuple[str, int]]]:
    """The splits of a stored dataset, each in its stored order."""
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for split, x, y in db.execute(
        "select split, input, label from examples where dataset_id = ? order by split, idx",
        [dataset_id],
    ):
        splits[split].append((x, y))
    return splits


def list_datasets(db: sqlite_utils.Database) -> list[dict]:
    return list(db["datasets"].rows_where(order_by="fn, length desc, id"))


def forget_new_datasets(db: sqlite_utils.Database, ids: list[int]) -> bool:
    """Deletes datasets a refused command built into a database it created, so that the
    file can be removed again; only while no run was recorded there (another process may
    have started to use the new file meanwhile). Returns whether they were deleted."""
    marks = ", ".join("?" * len(ids))
    try:
        with db.conn:
            db.conn.execute("begin immediate")
            if db.conn.execute("select 1 from runs limit 1").fetchone() is not None:
                return False
            db.conn.execute(f"delete from examples where dataset_id in ({marks})", ids)
            db.conn.execute(f"delete from dataset_audits where dataset_id in ({marks})", ids)
            db.conn.execute(f"delete from datasets where id in ({marks})", ids)
    except sqlite3.Error:
        return False
    return True
