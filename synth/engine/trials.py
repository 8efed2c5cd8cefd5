"""Which trials a run covers, and which of them a run or a resume still has to make.

This is the one place that says which trials a run covers: every grid point's trials
1..num_trials, in grid order. Trial rows are written as each trial starts
(tracker.runs.start_trial), not when the run is recorded, so a grid of 100,000 trials
costs nothing before its first call; what a run covers is counted per grid point instead
(run_datasets.trials), for the counts of a run not finished.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import sqlite_utils

from synth.datasets.cache import StoredDataset
from tracker import runs as store


def covered(points: list[StoredDataset], num_trials: int) -> Iterator[tuple[str, int, int, int]]:
    """(fn, length, trial, dataset_id) of every trial the run covers, in order."""
    for s in points:
        for trial in range(1, num_trials + 1):
            yield s.point.task.id, s.point.length, trial, s.id


def grid_record(points: list[StoredDataset], num_trials: int) -> list[tuple[str, int, int, int]]:
    """The grid as store.create_run records it: (fn, length, dataset_id, trials covered)."""
    counts = Counter((fn, length) for fn, length, _, _ in covered(points, num_trials))
    return [(s.point.task.id, s.point.length, s.id, counts[s.point.task.id, s.point.length]) for s in points]


def unfinished(
    db: sqlite_utils.Database, run_id: str, points: list[StoredDataset], num_trials: int
) -> tuple[int, list[dict], Iterator[dict]]:
    """(trials covered, the finished ones' rows, the others in order): a trial started
    before as its row (its attempts are read again), one not started as its key, with no
    ``id`` yet. The last is lazy: nothing is held per trial not started."""
    recorded = {(t["fn"], t["length"], t["trial"]): t for t in store.trials_of(db, run_id)}
    done = [t for t in recorded.values() if t["status"] == "done"]
    total = sum(trials for *_, trials in grid_record(points, num_trials))

    def rest() -> Iterator[dict]:
        for fn, length, trial, dataset_id in covered(points, num_trials):
            row = recorded.get((fn, length, trial))
            if row is None:
                yield {"run_id": run_id, "fn": fn, "length": length, "trial": trial, "dataset_id": dataset_id}
            elif row["status"] != "done":
                yield row

    return total, done, rest()
