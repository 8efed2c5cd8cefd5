"""The batches a `--batch` run submits: each recorded the moment its input file exists,
then its batch id and every status it reaches, so a run killed at any moment is resumed
by polling what it submitted, never by submitting a wave again."""

from __future__ import annotations

import json

import sqlite_utils

from tracker.runs import _insert, _recording, _run_id, _update, list_runs, now, translated


def _run_of_batch(db: sqlite_utils.Database, row_id: int, *args) -> str | None:
    row = db.conn.execute("select run_id from batches where id = ?", [row_id]).fetchone()
    return row[0] if row else None


@_recording(_run_id)
def record_batch(
    db: sqlite_utils.Database,
    run_id: str,
    *,
    wave: int,
    key: str,
    endpoint: str,
    input_file_id: str,
    custom_ids: list[str],
) -> int:
    """A batch whose input file was uploaded, before the batch is created; its row id."""
    with db.conn:
        return _insert(
            db.conn,
            "batches",
            {
                "run_id": run_id,
                "wave": wave,
                "key": key,
                "endpoint": endpoint,
                "input_file_id": input_file_id,
                "status": "uploaded",
                "requests": len(custom_ids),
                "custom_ids": json.dumps(custom_ids),
                "created_at": now(),
                "updated_at": now(),
            },
        )


@_recording(_run_of_batch)
def update_batch(db: sqlite_utils.Database, row_id: int, batch: dict) -> None:
    """What the server said of a batch: its id, status, counts and result files."""
    counts = batch.get("request_counts") or {}
    fields = {
        "batch_id": batch["id"],
        "status": batch["status"],
        "completed": counts.get("completed"),
        "failed": counts.get("failed"),
        "output_file_id": batch.get("output_file_id"),
        "error_file_id": batch.get("error_file_id"),
    }
    with db.conn:
        _update(db.conn, "batches", "id", row_id, {**fields, "updated_at": now()})


@translated
def run_batches(db: sqlite_utils.Database, run_id: str) -> list[dict]:
    """A run's batches, oldest first, their custom ids as a list."""
    rows = [dict(r) for r in db.query("select * from batches where run_id = ? order by id", [run_id])]
    for r in rows:
        r["custom_ids"] = json.loads(r["custom_ids"])
    return rows


@translated
def waves(db: sqlite_utils.Database, run_ids: list[str]) -> dict[str, list[dict]]:
    """Each run's waves (batch_waves), in order: its batches' statuses and request counts."""
    marks = ", ".join("?" * len(run_ids))
    found: dict[str, list[dict]] = {}
    for r in db.query(f"select * from batch_waves where run_id in ({marks}) order by run_id, wave", run_ids):
        found.setdefault(r["run_id"], []).append(dict(r))
    return found


def runs_with_waves(db: sqlite_utils.Database) -> list[dict]:
    """list_runs, each run with its waves (empty unless it ran with --batch)."""
    rows = list_runs(db)
    found = waves(db, [r["run_id"] for r in rows])
    for r in rows:
        r["waves"] = found.get(r["run_id"], [])
    return rows
