"""Which trials a run covers, and which of them a run or a resume still has to make.

This is the one place that says which trials a run covers: every grid point's trials
1..num_trials, in grid order, or with --shard I/N shard I's share of them
(tracker.shards.assign: the same split on every machine). Trial rows are written as each trial starts
(tracker.runs.start_trial), not when the run is recorded, so a grid of 100,000 trials
costs nothing before its first call; what a run covers is counted per grid point instead
(run_datasets.trials), for the counts of a run not finished.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import sqlite_utils

from synth.config import RunConfig, parse_shard
from synth.datasets.cache import StoredDataset
from tracker import runs as store
from tracker.shards import assign


def covered(
    points: list[StoredDataset], config: RunConfig
) -> Iterator[tuple[str, int, int, int, int | None]]:
    """(fn, length, trial, dataset_id, shard) of every trial the run covers, in order."""
    shard = parse_shard(config.shard) if config.shard else None
    keys = [(s.point.task.id, s.point.length) for s in points]
    owner = assign(keys, config.num_trials, shard[1]) if shard else None
    for (fn, length), s in zip(keys, points):
        for trial in range(1, config.num_trials + 1):
            if owner is None or owner[fn, length, trial] == shard[0]:
                yield fn, length, trial, s.id, shard and shard[0]


def grid_record(points: list[StoredDataset], config: RunConfig) -> list[tuple[str, int, int, int]]:
    """The grid as store.create_run records it: (fn, length, dataset_id, trials covered)."""
    counts = Counter((fn, length) for fn, length, *_ in covered(points, config))
    return [(s.point.task.id, s.point.length, s.id, counts[s.point.task.id, s.point.length]) for s in points]


def unfinished(
    db: sqlite_utils.Database, points: list[StoredDataset], config: RunConfig
) -> tuple[int, list[dict], Iterator[dict]]:
    """(trials covered, the finished ones' rows, the others in order): a trial started
    before as its row (its attempts are read again), one not started as its key, with no
    ``id`` yet. The last is lazy: nothing is held per trial not started."""
    run_id = config.run_id
    recorded = {(t["fn"], t["length"], t["trial"]): t for t in store.trials_of(db, run_id)}
    done = [t for t in recorded.values() if t["status"] == "done"]
    total = sum(trials for *_, trials in grid_record(points, config))

    def rest() -> Iterator[dict]:
        for fn, length, trial, dataset_id, shard in covered(points, config):
            row = recorded.get((fn, length, trial))
            if row is None:
                yield {
                    "run_id": run_id,
                    "fn": fn,
                    "length": length,
                    "trial": trial,
                    "dataset_id": dataset_id,
                    "shard": shard,
                }
            elif row["status"] != "done":
                yield row

    return total, done, rest()
