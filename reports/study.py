"""A study's tables, from the runs of its cells: the paper's table (task x length by
system), robustness over prompt wordings, spread over seeds, paired comparisons of two
systems on identical datasets, and tokens and cost per system.

Every figure is a statistic of finished trials' selected test accuracy (the trials
table): a cell of the study table pools a system's trials over its prompts and seeds.
Where `synth verify` has checked the selected programs (the verifications table), each
cell adds their generalisation: how many are the exact rule at the training length, and
their mean accuracy on the balanced set at the longest length verified.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

import sqlite_utils

from reports.stats import summary
from tracker.exports import summarise

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0  # the same database gives the same intervals


@dataclass(frozen=True)
class StudyReport:
    name: str
    systems: list[str]
    table: list[dict]  # per task and length: {"cells": {system: summary}, "best": [systems]}
    robustness: list[dict]  # per system, task and length: mean and std over prompt wordings
    seeds: list[dict]  # the same over seeds
    paired: list[dict]  # per pair of systems, task and length: mean difference, bootstrap CI
    duels: list[dict]  # per pair of systems: wins, ties and losses over paired trials
    costs: list[dict]  # per system: calls, tokens and cost
    generalisation: list[dict]  # per system, task, length, evaluation length and set (synth verify)


def study_runs(db: sqlite_utils.Database, name: str) -> list[str]:
    return [r[0] for r in db.execute("select run_id from study_runs where study = ? order by rowid", [name])]


def analyse_study(db: sqlite_utils.Database, name: str, tokens_runs: list[dict]) -> StudyReport:
    """The study ``name``'s tables; ``tokens_runs``: the report's tokens and cost per run."""
    trials = [
        dict(r)
        for r in db.query(
            """
            select c.system, c.prompt, c.seed, c.run_id, t.fn, t.length, t.trial, t.test_acc,
              t.val_acc
            from study_runs c join trials t on t.run_id = c.run_id
            where c.study = ? and t.status = 'done' and t.test_acc is not null
            order by c.rowid, t.fn, t.length, t.trial
            """,
            [name],
        )
    ]
    systems = list(
        dict.fromkeys(r[0] for r in db.execute("select system from study_runs where study = ?", [name]))
    )
    table = _table(trials, systems)
    generalisation = _generalisation(db, name)
    _add_verified(table, generalisation)
    pairs = {(a, b): _pairs(trials, a, b) for a, b in combinations(systems, 2)}
    return StudyReport(
        name=name,
        systems=systems,
        table=table,
        robustness=_spread(trials, "prompt"),
        seeds=_spread(trials, "seed"),
        paired=_paired(pairs),
        duels=_duels(pairs),
        costs=_costs(db, name, tokens_runs, systems),
        generalisation=generalisation,
    )


def _points(trials: list[dict]) -> list[tuple[str, int]]:
    return sorted({(t["fn"], t["length"]) for t in trials})


def _table(trials: list[dict], systems: list[str]) -> list[dict]:
    grouped = defaultdict(list)
    for t in trials:
        grouped[(t["fn"], t["length"], t["system"])].append(t)
    rows = []
    for fn, length in _points(trials):
        cells = {}
        for system in systems:
            own = grouped.get((fn, length, system), [])
            if own:
                cells[system] = {
                    **summary([t["test_acc"] for t in own]),
                    "solved": sum(t["val_acc"] == 1.0 for t in own),
                    "trials": len(own),
                }
        top = max((c["mean"] for c in cells.values()), default=None)
        rows.append(
            {
                "fn": fn,
                "length": length,
                "cells": cells,
                "best": [s for s, c in cells.items() if abs(c["mean"] - top) < 1e-9],  # sums round apart
            }
        )
    return rows


def _spread(trials: list[dict], axis: str) -> list[dict]:
    """Per system, task and length: each value of ``axis`` (a prompt, a seed) gives the
    mean of its trials; their mean and population std say how much the axis moves it."""
    means = defaultdict(lambda: defaultdict(list))
    for t in trials:
        means[(t["system"], t["fn"], t["length"])][t[axis]].append(t["test_acc"])
    rows = []
    for (system, fn, length), by_value in means.items():
        values = [statistics.fmean(v) for v in by_value.values()]
        mean, std = summarise(values)
        rows.append(
            {"system": system, "fn": fn, "length": length, axis + "s": len(values), "mean": mean, "std": std}
        )
    return rows


def _pairs(trials: list[dict], a: str, b: str) -> dict[tuple[str, int], list[float]]:
    """``a``'s minus ``b``'s test accuracy over trials on identical datasets (the same
    task, length, seed and trial) and the same prompt, per task and length."""
    keyed = {
        (t["system"], t["prompt"], t["seed"], t["fn"], t["length"], t["trial"]): t["test_acc"] for t in trials
    }
    diffs = defaultdict(list)
    for (system, prompt, seed, fn, length, trial), acc in keyed.items():
        if system == a and (b, prompt, seed, fn, length, trial) in keyed:
            diffs[(fn, length)].append(acc - keyed[(b, prompt, seed, fn, length, trial)])
    return diffs


def bootstrap_ci(diffs: list[float], rng: random.Random) -> tuple[float, float]:
    """The 95% percentile interval of the mean difference, over BOOTSTRAP_SAMPLES resamples
    of the pairs."""
    n = len(diffs)
    means = sorted(statistics.fmean(rng.choices(diffs, k=n)) for _ in range(BOOTSTRAP_SAMPLES))
    return means[int(0.025 * BOOTSTRAP_SAMPLES)], means[int(0.975 * BOOTSTRAP_SAMPLES) - 1]


def _paired(pairs: dict[tuple[str, str], dict]) -> list[dict]:
    rows = []
    for (a, b), by_point in pairs.items():
        rng = random.Random(BOOTSTRAP_SEED)
        for (fn, length), diffs in sorted(by_point.items()):
            low, high = bootstrap_ci(diffs, rng)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "fn": fn,
                    "length": length,
                    "pairs": len(diffs),
                    "diff_mean": statistics.fmean(diffs),
                    "diff_ci_low": low,
                    "diff_ci_high": high,
                }
            )
    return rows


def _duels(pairs: dict[tuple[str, str], dict]) -> list[dict]:
    rows = []
    for (a, b), by_point in pairs.items():
        diffs = [d for ds in by_point.values() for d in ds]
        if diffs:
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "pairs": len(diffs),
                    "wins": sum(d > 0 for d in diffs),
                    "ties": sum(d == 0 for d in diffs),
                    "losses": sum(d < 0 for d in diffs),
                }
            )
    return rows


def _costs(db, name: str, tokens_runs: list[dict], systems: list[str]) -> list[dict]:
    system_of = dict(db.execute("select run_id, system from study_runs where study = ?", [name]).fetchall())
    totals = {
        s: {"system": s, "runs": 0, "calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
        for s in systems
    }
    for r in tokens_runs:
        if r["run_id"] not in system_of:
            continue
        total = totals[system_of[r["run_id"]]]
        total["runs"] += 1
        for key in ("calls", "input_tokens", "output_tokens"):
            total[key] += r[key] or 0
        total["cost"] = None if total["cost"] is None or r["cost"] is None else total["cost"] + r["cost"]
    return list(totals.values())


def _generalisation(db, name: str) -> list[dict]:
    """The selected programs' `synth verify` figures (the task's own rule at each
    length), per system, task, training length, evaluation length and set."""
    return [
        dict(r)
        for r in db.query(
            """
            select c.system, v.fn, v.train_length as length, v.eval_length, v.set_kind,
              count(*) as programs, avg(v.accuracy) as accuracy,
              count(case when v.exact = 1 then 1 end) as exact,
              count(case when v.exact = 0 then 1 end) as refuted
            from study_runs c join verifications v on v.run_id = c.run_id
            where c.study = ? and v.selected and v.rule = 'task'
            group by c.system, v.fn, v.train_length, v.eval_length, v.set_kind
            order by v.fn, v.train_length, min(c.rowid), v.eval_length, v.set_kind
            """,
            [name],
        )
    ]


def _add_verified(table: list[dict], generalisation: list[dict]) -> None:
    """Each table cell's ``verified``: of its selected programs checked on every input of
    the training length (exhaustive or population), how many are exact; and the mean
    accuracy on the balanced set at the longest length verified beyond it."""
    found = defaultdict(dict)
    for g in generalisation:
        own = found[(g["fn"], g["length"], g["system"])]
        if g["eval_length"] == g["length"] and g["set_kind"] in ("exhaustive", "population"):
            own["checked"], own["exact"] = g["programs"], g["exact"]
        elif g["eval_length"] > g["length"] and g["set_kind"] == "balanced":
            if g["eval_length"] > own.get("longest_length", 0):
                own["longest_length"], own["longest_accuracy"] = g["eval_length"], g["accuracy"]
    for row in table:
        for system, cell in row["cells"].items():
            if verified := found.get((row["fn"], row["length"], system)):
                cell["verified"] = verified
