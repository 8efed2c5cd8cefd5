"""The accuracy analyses: the finished trials of a scope, read once, grouped in Python.

Six analyses group the same finished trials by different keys (per grid point, per run,
per proposer and setting, per seed, raw against leakage-clean, by the attempt that
solved); as six GROUP BYs they read the ten-run report's 34,000 trials six times, ~1.5 s.
One read and six passes over its rows give the same rows: each summary is computed from
the same per-trial values (reports.stats), in the order the queries gave them. The
progression reads each finished trial's attempt scores once too: its window query took
~1 s of the same report.

"Finished" is what the report scores: trials done, of runs that called a proposer (a dry
run has no results); an attempt with no evaluation scores 0, as in selection.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from operator import itemgetter

import sqlite_utils

from reports.scope import Scope, scoped
from reports.stats import means, summaries

# The reasoning effort a run asked for; none for offline proposers, which have no such
# setting (their config keeps the flag's default).
EFFORT = "case when r.provider = 'openai' then json_extract(r.config, '$.reasoning_effort') end"
# What a leaderboard row's proposer was set to: the reasoning effort, or an offline
# proposer's settings as its run recorded them (config.proposer_setting).
SETTING = f"coalesce({EFFORT}, json_extract(r.config, '$.proposer_setting'))"
# Attempts of a trial that an offline proposer's safety cap on the clock stopped (their
# response's incomplete_reason, synth.config.TIME_CAP): results that depend on the
# machine. The API has no such cap, so its trials are not looked into (a lookup per
# trial made the leaderboard 4x slower on 100,000).
CAPPED = """case when r.provider = 'openai' then 0 else (
  select count(*) from attempts a join responses s on s.attempt_id = a.id
  where a.trial_id = t.id and s.incomplete_reason = 'time_cap') end"""
FINISHED = f"""
from trials t
join runs r on r.run_id = t.run_id
join datasets d on d.id = t.dataset_id
where t.status = 'done' and not r.dry_run and {scoped()}
"""


def finished_trials(db: sqlite_utils.Database, scope: Scope) -> list[dict]:
    """Every finished trial of the scope with its run's proposer and settings, its
    dataset's sizes and seed, and ``scores``: its attempts' (attempt, val, test)
    accuracies in order (attempt 1's test is ``first_test``); in report order (the runs
    as created, then task, length and trial). A run's settings are read once per run, not
    once per trial from its config's JSON."""
    settings = {
        run_id: (setting, attempts)
        for run_id, setting, attempts in db.execute(
            f"""
            select r.run_id, {SETTING}, json_extract(r.config, '$.attempts') from runs r
            where r.run_id in (select value from json_each(:runs))
            """,
            scope.params,
        )
    }
    trials = []
    for row in db.query(
        f"""
        select t.id, t.run_id, r.provider, r.model, d.train_size, d.val_size, d.test_size,
          d.base_seed as seed, t.fn, d.target, t.length, t.trial, t.dataset_id, t.stopped_early,
          t.selected_attempt, t.attempts_made, t.test_acc, t.val_acc, t.oracle_test_acc,
          {CAPPED} as capped
        {FINISHED}
        order by r.created_at, t.run_id, t.fn, t.length, t.trial
        """,
        scope.params,
    ):
        row["setting"], row["attempts"] = settings[row["run_id"]]
        row["scores"], row["first_test"] = [], 0.0
        trials.append(row)
    of_id = {t["id"]: t for t in trials}
    for trial_id, attempt, val, test in db.execute(
        f"""
        select a.trial_id, a.attempt, coalesce(e.val_acc, 0), coalesce(e.test_acc, 0)
        from attempts a join trials t on t.id = a.trial_id join runs r on r.run_id = t.run_id
        left join evaluations e on e.attempt_id = a.id
        where t.status = 'done' and not r.dry_run and {scoped()}
        order by a.trial_id, a.attempt
        """,
        scope.params,
    ):
        trial = of_id[trial_id]
        trial["scores"].append((attempt, val, test))
        if attempt == 1:
            trial["first_test"] = test
    return trials


def grid_points(trials: list[dict]) -> list[dict]:
    """Per run and grid point: selected test and val accuracy over trials, the gap, and
    attempt 1 and the test-oracle choice for comparison."""
    return [
        {**_first(group, "run_id", "provider", "model", "seed", "fn", "target", "length"), **_accuracy(group)}
        for group in _groups(trials, ("run_id", "fn", "length"))
    ]


def run_results(trials: list[dict]) -> list[dict]:
    """The same over every trial of a run: attempt 1 -> selected -> test-oracle."""
    return [
        {**_first(group, "run_id", "provider", "model"), **_accuracy(group)}
        for group in _groups(trials, ("run_id",))
    ]


# What the leaderboard pools: one proposer and setting, under every seed.
SETTING_KEYS = ("provider", "model", "setting", "attempts", "train_size", "val_size", "test_size")


def leaderboard(trials: list[dict]) -> list[dict]:
    """Per task and length, each proposer and setting (reasoning effort or an offline
    proposer's settings, attempts, split sizes) over all its runs, best first: runs of one
    setting under several seeds pool. ``capped`` counts attempts stopped by a clock."""
    rows = [
        {
            **_first(group, *SETTING_KEYS, "fn", "target", "length"),
            "runs": len({t["run_id"] for t in group}),
            **_accuracy(group, capped=sum(t["capped"] for t in group)),
        }
        for group in _groups(trials, (*SETTING_KEYS, "fn", "length"))
    ]
    best_first = lambda r: (r["test_mean"] is None, -(r["test_mean"] or 0))  # noqa: E731 (NULLs last)
    return sorted(rows, key=lambda r: (r["fn"], r["length"], *best_first(r), *_order(r, *SETTING_KEYS[:4])))


def seed_spread(trials: list[dict]) -> list[dict]:
    """Across global seeds: runs of one proposer and setting that share a grid point,
    each run's mean selected test accuracy as one value. Only points with 2+ seeds."""
    per_run = [
        {**_first(group, *SETTING_KEYS, "fn", "length", "seed"), "test": _mean(_of(group, "test_acc"))}
        for group in _groups(trials, ("run_id", "fn", "length"))
    ]
    rows = []
    for group in _groups(per_run, (*SETTING_KEYS, "fn", "length")):
        seeds = list(dict.fromkeys(r["seed"] for r in group if r["seed"] is not None))
        if len(seeds) < 2:
            continue
        tests = _of(group, "test")
        rows.append(
            {
                **_first(group, *SETTING_KEYS, "fn", "length"),
                "runs": len(group),
                "seeds": len(seeds),
                "seed_list": ",".join(map(str, seeds)),
                "test_min": min(tests),
                "test_max": max(tests),
                **summaries(test=tests),
            }
        )
    return sorted(rows, key=lambda r: (r["fn"], r["length"], *_order(r, "provider", "model")))


def raw_vs_clean(trials: list[dict], audit: list[dict]) -> list[dict]:
    """Per proposer and grid point (task and length): mean selected test accuracy over all
    trials (raw) and over the trials whose dataset is leakage-clean (no input shared
    between splits). Per length, as accuracy depends on it: a mean across lengths would
    mix a hard point's leak with an easy point's result."""
    clean = {d["dataset_id"] for d in audit if d["clean"]}
    rows = []
    for group in _groups(trials, ("provider", "model", "fn", "length")):
        kept = [t for t in group if t["dataset_id"] in clean]
        rows.append(
            {
                **_first(group, "provider", "model", "fn", "target", "length"),
                "trials": len(group),
                "raw_test_mean": _mean(_of(group, "test_acc")),
                "clean_trials": len(kept),
                "clean_test_mean": _mean(_of(kept, "test_acc")),
            }
        )
    return sorted(rows, key=lambda r: (r["fn"], r["length"], *_order(r, "provider", "model")))


def attempts_to_solve(trials: list[dict]) -> list[dict]:
    """Per run: how many trials reached validation accuracy 1.0 (and stopped) at each
    attempt; ``solved_at`` is None for trials that never did."""
    rows = []
    for run in _groups(trials, ("run_id",)):
        solved_at = [t["selected_attempt"] if t["stopped_early"] else None for t in run]
        counts = {a: solved_at.count(a) for a in dict.fromkeys(solved_at)}
        for at in sorted(counts, key=lambda a: (a is None, a or 0)):
            rows.append({**_first(run, "run_id", "provider", "model"), "solved_at": at, "trials": counts[at]})
    return rows


def progression(trials: list[dict]) -> list[dict]:
    """Per proposer, task and k: mean val and test accuracy of the attempt selection
    would have chosen had trials stopped after k attempts (early stops carry forward).

    Selection after k keeps the best attempt so far (ties: the earlier), so each trial's
    choice changes only at a record, an attempt better than all before it; k runs over
    every attempt number the scope's trials made."""
    ks = sorted({attempt for t in trials for attempt, _, _ in t["scores"]})
    chosen: dict[tuple, list[tuple]] = {}
    for trial in trials:
        records, best = [], None
        for attempt, val, test in trial["scores"]:
            if best is None or val > best:
                records.append((attempt, val, test, trial["target"]))
                best = val
        if not records:
            continue
        key, at = (trial["provider"], trial["model"], trial["fn"]), 0
        for k in ks:
            while at + 1 < len(records) and records[at + 1][0] <= k:
                at += 1
            if records[at][0] <= k:
                chosen.setdefault((*key, k), []).append(records[at])
    rows = []
    for (provider, model, fn, k), picked in sorted(chosen.items(), key=lambda item: _sorting(item[0])):
        known = [target for *_, target in picked if target is not None]
        rows.append(
            {
                "provider": provider,
                "model": model,
                "fn": fn,
                "target": min(known) if known else None,
                "attempt": k,
                "trials": len(picked),
                "val_mean": statistics.fmean(r[1] for r in picked),
                "test_mean": statistics.fmean(r[2] for r in picked),
            }
        )
    return rows


def _groups(rows: list[dict], keys: tuple[str, ...]) -> Iterable[list[dict]]:
    """The rows of each value of ``keys``, in the order each value first comes."""
    groups: dict[tuple, list[dict]] = {}
    key = itemgetter(*keys)
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups.values()


def _first(group: list[dict], *keys: str) -> dict:
    return {k: group[0][k] for k in keys}


def _of(rows: list[dict], key: str) -> list:
    """The values of ``key`` that are not None (as SQL's aggregates skip NULL)."""
    return [r[key] for r in rows if r[key] is not None]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _order(row: dict, *keys: str) -> tuple:
    return _sorting(row[k] for k in keys)


def _sorting(values: Iterable) -> tuple:
    """A sort key of ``values`` that puts None first, as SQLite orders NULL."""
    return tuple((v is not None, v if v is not None else 0) for v in values)


def _accuracy(group: list[dict], **extra) -> dict:
    """Selected (by validation) accuracies over the group's trials, with attempt 1 and
    the test-oracle choice beside them, and the improvements from attempt 1; ``extra``
    fields before the summaries, where the query that came before put them."""
    tests, vals = _of(group, "test_acc"), _of(group, "val_acc")
    row = {
        "trials": len(group),
        "solved": sum(t["stopped_early"] for t in group),
        "attempts_mean": _mean(_of(group, "attempts_made")),
        "test_min": min(tests, default=None),
        "test_max": max(tests, default=None),
        "val_min": min(vals, default=None),
        "val_max": max(vals, default=None),
        **extra,
        **summaries(test=tests, val=vals),
        **means(
            gap=[t["val_acc"] - t["test_acc"] for t in group if None not in (t["val_acc"], t["test_acc"])],
            first_test=_of(group, "first_test"),
            oracle_test=_of(group, "oracle_test_acc"),
        ),
    }
    row["improvement_selected"] = row["test_mean"] - row["first_test_mean"]
    row["improvement_oracle"] = row["oracle_test_mean"] - row["first_test_mean"]
    return row
