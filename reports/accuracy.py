"""The accuracy analyses: the finished trials of a scope, gathered per grid point once,
then pooled in Python.

Six analyses group the same finished trials by different keys (per grid point, per run,
per proposer and setting, per seed, raw against leakage-clean, by the attempt that
solved), and every one of those groups is a union of grid points (a run's task and
length, whose trials share one dataset). So one query gathers each grid point's per-trial
values, and each analysis pools the points' values: as six GROUP BYs over the trials they
took ~1.5 s of a ten-run report (34,000 trials), and reading every trial into Python
costs more than the GROUP BY it replaces. Each summary is computed from the same
per-trial values (reports.stats). The progression reads each finished trial's attempt
scores once: its window query took ~1 s of the same report.

"Finished" is what the report scores: trials done, of runs that called a proposer (a dry
run has no results); an attempt with no evaluation scores 0, as in selection.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from itertools import chain, groupby
from operator import itemgetter

import sqlite_utils

from reports.scope import Scope, scoped
from reports.stats import mean, means, summaries

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
# The per-trial values a grid point gathers: each analysis pools them.
VALUES = {
    "test": "t.test_acc",
    "val": "t.val_acc",
    "gap": "t.val_acc - t.test_acc",
    "first_test": "coalesce(e1.test_acc, 0)",
    "oracle_test": "t.oracle_test_acc",
}
# What the leaderboard pools: one proposer and setting, under every seed.
SETTING_KEYS = ("provider", "model", "setting", "attempts", "train_size", "val_size", "test_size")


def finished_points(db: sqlite_utils.Database, scope: Scope) -> list[dict]:
    """Every grid point of the scope with finished trials: its run's proposer and
    settings (read once per run, not from its config's JSON once per trial), its
    dataset, and its trials' values (``VALUES``, as lists; a NULL one counts as 0, as
    printf writes it) and ``solved_at``; in report order (the runs as created, then task
    and length)."""
    gathered = ",\n".join(
        # 17 significant digits: each float comes back exactly.
        f"group_concat(printf('%!.17g', {expr}), ' ') as {name}"
        for name, expr in VALUES.items()
    )
    # The attempt that solved each trial stopped early (NULL, left out, for the others).
    gathered += ",\ngroup_concat(case when t.stopped_early then t.selected_attempt end, ' ') as solved_at"
    points = list(
        db.query(
            f"""
            with settings as materialized (
              select r.run_id, {SETTING} as setting, json_extract(r.config, '$.attempts') as attempts
              from runs r where r.run_id in (select value from json_each(:runs))
            )
            select t.run_id, r.provider, r.model, s.setting, s.attempts, d.train_size,
              d.val_size, d.test_size, d.base_seed as seed, t.fn, d.target, t.length,
              t.dataset_id, count(*) as trials, coalesce(sum(t.stopped_early), 0) as solved,
              coalesce(sum(t.attempts_made), 0) as attempts_made,
              count(t.attempts_made) as attempts_counted, sum({CAPPED}) as capped, {gathered}
            from trials t
            join runs r on r.run_id = t.run_id
            join settings s on s.run_id = t.run_id
            join datasets d on d.id = t.dataset_id
            left join attempts a1 on a1.trial_id = t.id and a1.attempt = 1
            left join evaluations e1 on e1.attempt_id = a1.id
            where t.status = 'done' and not r.dry_run and {scoped()}
            group by t.run_id, t.fn, t.length, t.dataset_id
            order by r.created_at, t.run_id, t.fn, t.length
            """,
            scope.params,
        )
    )
    for point in points:
        for name in VALUES:
            point[name] = list(map(float, (point[name] or "").split()))
        point["solved_at"] = list(map(int, (point["solved_at"] or "").split()))
    return points


def point_results(points: list[dict]) -> list[dict]:
    """Per run and grid point: selected test and val accuracy over trials, the gap, and
    attempt 1 and the test-oracle choice for comparison."""
    return [
        {**_first([p], "run_id", "provider", "model", "seed", "fn", "target", "length"), **_accuracy([p])}
        for p in points
    ]


def run_results(points: list[dict]) -> list[dict]:
    """The same over every trial of a run: attempt 1 -> selected -> test-oracle."""
    return [
        {**_first(group, "run_id", "provider", "model"), **_accuracy(group)}
        for group in _groups(points, ("run_id",))
    ]


def leaderboard(points: list[dict]) -> list[dict]:
    """Per task and length, each proposer and setting (reasoning effort or an offline
    proposer's settings, attempts, split sizes) over all its runs, best first: runs of one
    setting under several seeds pool. ``capped`` counts attempts stopped by a clock."""
    rows = [
        {
            **_first(group, *SETTING_KEYS, "fn", "target", "length"),
            "runs": len({p["run_id"] for p in group}),
            **_accuracy(group, capped=sum(p["capped"] for p in group)),
        }
        for group in _groups(points, (*SETTING_KEYS, "fn", "length"))
    ]
    # Best first, a point with no test accuracy last (as SQLite puts NULL in descending order).
    return sorted(
        rows,
        key=lambda r: (
            r["fn"],
            r["length"],
            r["test_mean"] is None,
            -(r["test_mean"] or 0),
            *_order(r, *SETTING_KEYS[:4]),
        ),
    )


def seed_spread(points: list[dict]) -> list[dict]:
    """Across global seeds: runs of one proposer and setting that share a grid point,
    each run's mean selected test accuracy as one value. Only points with 2+ seeds."""
    rows = []
    for group in _groups(points, (*SETTING_KEYS, "fn", "length")):
        seeds = list(dict.fromkeys(p["seed"] for p in group if p["seed"] is not None))
        if len(seeds) < 2:
            continue
        tests = [mean(p["test"]) for p in group if p["test"]]
        rows.append(
            {
                **_first(group, *SETTING_KEYS, "fn", "length"),
                "runs": len(group),
                "seeds": len(seeds),
                "seed_list": ",".join(map(str, seeds)),
                "test_min": min(tests, default=None),
                "test_max": max(tests, default=None),
                **summaries(test=tests),
            }
        )
    return sorted(rows, key=lambda r: (r["fn"], r["length"], *_order(r, "provider", "model")))


def raw_vs_clean(points: list[dict], audit: list[dict]) -> list[dict]:
    """Per proposer and grid point (task and length): mean selected test accuracy over all
    trials (raw) and over the trials whose dataset is leakage-clean (no input shared
    between splits). Per length, as accuracy depends on it: a mean across lengths would
    mix a hard point's leak with an easy point's result."""
    clean = {d["dataset_id"] for d in audit if d["clean"]}
    rows = []
    for group in _groups(points, ("provider", "model", "fn", "length")):
        kept = [p for p in group if p["dataset_id"] in clean]
        rows.append(
            {
                **_first(group, "provider", "model", "fn", "target", "length"),
                "trials": sum(p["trials"] for p in group),
                "raw_test_mean": mean(_pooled(group, "test")),
                "clean_trials": sum(p["trials"] for p in kept),
                "clean_test_mean": mean(_pooled(kept, "test")),
            }
        )
    return sorted(rows, key=lambda r: (r["fn"], r["length"], *_order(r, "provider", "model")))


def attempts_to_solve(points: list[dict]) -> list[dict]:
    """Per run: how many trials reached validation accuracy 1.0 (and stopped) at each
    attempt; ``solved_at`` is None for trials that never did."""
    rows = []
    for run in _groups(points, ("run_id",)):
        solved_at = _pooled(run, "solved_at")
        counts = {at: solved_at.count(at) for at in sorted(set(solved_at))}
        if unsolved := sum(p["trials"] for p in run) - len(solved_at):
            counts[None] = unsolved
        rows.extend(
            {**_first(run, "run_id", "provider", "model"), "solved_at": at, "trials": n}
            for at, n in counts.items()
        )
    return rows


def progression(db: sqlite_utils.Database, scope: Scope) -> list[dict]:
    """Per proposer, task and k: mean val and test accuracy of the attempt selection
    would have chosen had trials stopped after k attempts (early stops carry forward).

    Selection after k keeps the best attempt so far (ties: the earlier), so each trial's
    choice changes only at a record, an attempt better than all before it; k runs over
    every attempt number the scope's trials made."""
    scores = db.execute(
        f"""
        select a.trial_id, a.attempt, coalesce(e.val_acc, 0), coalesce(e.test_acc, 0),
          r.provider, r.model, t.fn, d.target
        from attempts a join trials t on t.id = a.trial_id join runs r on r.run_id = t.run_id
        join datasets d on d.id = t.dataset_id
        left join evaluations e on e.attempt_id = a.id
        where t.status = 'done' and not r.dry_run and {scoped()}
        order by a.trial_id, a.attempt
        """,
        scope.params,
    ).fetchall()
    ks = sorted({score[1] for score in scores})
    chosen: dict[tuple, list[tuple]] = {}
    for _, attempts in groupby(scores, key=itemgetter(0)):
        records, best = [], None
        for _, attempt, val, test, *key in attempts:
            if best is None or val > best:
                records.append((attempt, val, test, key[3]))
                best = val
        at = 0
        for k in ks:
            while at + 1 < len(records) and records[at + 1][0] <= k:
                at += 1
            if records[at][0] <= k:
                chosen.setdefault((*key[:3], k), []).append(records[at])
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


def _pooled(points: list[dict], name: str) -> list:
    """The per-trial values ``name`` of every point of the group."""
    return list(chain.from_iterable(p[name] for p in points))


def _order(row: dict, *keys: str) -> tuple:
    return _sorting(row[k] for k in keys)


def _sorting(values: Iterable) -> tuple:
    """A sort key of ``values`` that puts None first, as SQLite orders NULL."""
    return tuple((v is not None, v if v is not None else 0) for v in values)


def _accuracy(points: list[dict], **extra) -> dict:
    """Selected (by validation) accuracies over the trials of ``points``, with attempt 1
    and the test-oracle choice beside them, and the improvements from attempt 1;
    ``extra`` fields before the summaries, where the query that came before put them."""
    tests, vals = _pooled(points, "test"), _pooled(points, "val")
    counted = sum(p["attempts_counted"] for p in points)
    row = {
        "trials": sum(p["trials"] for p in points),
        "solved": sum(p["solved"] for p in points),
        "attempts_mean": sum(p["attempts_made"] for p in points) / counted if counted else None,
        "test_min": min(tests, default=None),
        "test_max": max(tests, default=None),
        "val_min": min(vals, default=None),
        "val_max": max(vals, default=None),
        **extra,
        **summaries(test=tests, val=vals),
        **means(**{name: _pooled(points, name) for name in ("gap", "first_test", "oracle_test")}),
    }
    row["improvement_selected"] = row["test_mean"] - row["first_test_mean"]
    row["improvement_oracle"] = row["oracle_test_mean"] - row["first_test_mean"]
    return row
