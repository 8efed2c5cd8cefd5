"""Sharded runs: which trials of a grid each of N shards runs, and what a database says
of a run's shards. The split depends on the grid alone, so every machine given the
same grid and the same --shard N runs its own share and no trial twice."""

from __future__ import annotations

import sqlite_utils

Trial = tuple[str, int, int]  # (fn, length, trial)


def assign(points: list[tuple[str, int]], num_trials: int, shards: int) -> dict[Trial, int]:
    """Each trial's shard (1..N): the grid's trials in canonical order (task, length,
    trial), dealt in turn, so the shards differ in size by one trial at most and each
    covers every grid point it can."""
    trials = sorted((fn, length, t) for fn, length in points for t in range(1, num_trials + 1))
    return {trial: k % shards + 1 for k, trial in enumerate(trials)}


def shard_states(db: sqlite_utils.Database, run_ids: list[str] | None = None) -> dict[str, dict]:
    """Per sharded run: its shard count, the shards it holds with their status, and the
    missing ones. Unsharded runs are absent."""
    out: dict[str, dict] = {}
    rows = db.execute(
        "select s.run_id, s.shard, s.shards, coalesce(s.status, r.status) from run_shards s "
        "join runs r on r.run_id = s.run_id order by s.run_id, s.shard"
    ).fetchall()
    for run_id, shard, shards, status in rows:
        if run_ids is not None and run_id not in run_ids:
            continue
        state = out.setdefault(run_id, {"shards": shards, "present": {}, "missing": []})
        state["present"][shard] = status
    for state in out.values():
        state["missing"] = [i for i in range(1, state["shards"] + 1) if i not in state["present"]]
    return out


def describe(state: dict) -> str:
    """A sharded run's shards in one phrase: "shards 1/3, 3/3 (2/3 missing)"."""
    n = state["shards"]
    held = ", ".join(f"{i}/{n}" for i in state["present"])
    missing = ", ".join(f"{i}/{n}" for i in state["missing"])
    return f"shard{'s' if len(state['present']) > 1 else ''} {held}" + (
        f" ({missing} missing)" if missing else ""
    )


def merged_shards(db: sqlite_utils.Database, run_id: str) -> int:
    """How many shards a merge brought into this database's run ``run_id`` (0: it is a
    whole run, or a shard in its own database)."""
    return db.execute(
        "select count(*) from run_shards where run_id = ? and source is not null", [run_id]
    ).fetchone()[0]
