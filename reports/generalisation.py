"""The report's Generalisation section, from `synth verify`'s table ``verifications``:
how the trials' selected programs do beyond their training data, per proposer (so the
model and the offline baselines stand side by side).

- ``generalisation``: mean accuracy per task, rule reading, set, training length and
  evaluation length (the heatmap's cells);
- ``recovery``: per task and proposer, how many selected programs are the exact rule at
  their training length (every input, or the whole source table, right), of those
  checked on such a complete set;
- ``counterexamples``: the first wrong input of each refuted program and set.
"""

from __future__ import annotations

import sqlite_utils

from reports.scope import Scope, scoped

SELECTED = f"""
from verifications v join runs r on r.run_id = v.run_id
where v.selected and {scoped("v.run_id", "v.fn")}
"""


def generalisation(db: sqlite_utils.Database, scope: Scope) -> list[dict]:
    return _rows(
        db,
        f"""
        select r.provider, r.model, v.fn, v.rule, v.set_kind, v.train_length, v.eval_length,
          count(*) as programs, avg(v.accuracy) as accuracy_mean, min(v.accuracy) as accuracy_min,
          count(case when v.exact = 1 then 1 end) as exact,
          count(case when v.exact = 0 then 1 end) as refuted,
          count(case when v.status != 'ok' then 1 end) as failed
        {SELECTED}
        group by r.provider, r.model, v.fn, v.rule, v.set_kind, v.train_length, v.eval_length
        order by v.fn, r.provider, r.model, v.rule desc, v.set_kind, v.train_length, v.eval_length
        """,
        scope,
    )


def recovery(db: sqlite_utils.Database, scope: Scope) -> list[dict]:
    """Exact-rule recovery at the training length: a program counts as checked when an
    exhaustive or population set covered its training length."""
    rows = _rows(
        db,
        f"""
        select r.provider, r.model, v.fn, count(distinct v.attempt_id) as programs,
          count(distinct case when v.eval_length = v.train_length
            and v.set_kind in ('exhaustive', 'population') then v.attempt_id end) as checked,
          count(distinct case when v.eval_length = v.train_length
            and v.set_kind in ('exhaustive', 'population') and v.exact = 1
            then v.attempt_id end) as exact,
          count(distinct case when v.exact = 0 and v.rule = 'task' then v.attempt_id end) as refuted
        {SELECTED}
        group by r.provider, r.model, v.fn
        order by v.fn, r.provider, r.model
        """,
        scope,
    )
    for row in rows:
        row["exact_rate"] = row["exact"] / row["checked"] if row["checked"] else None
    return rows


def counterexamples(db: sqlite_utils.Database, scope: Scope) -> list[dict]:
    return _rows(
        db,
        f"""
        select v.run_id, r.provider, r.model, v.fn, v.trial, v.attempt, v.train_length,
          v.eval_length, v.set_kind, v.rule,
          json_extract(v.counterexample, '$.input') as input,
          json_extract(v.counterexample, '$.expected') as expected,
          json_extract(v.counterexample, '$.got') as got, v.status
        {SELECTED} and v.counterexample is not null
        order by v.fn, v.run_id, v.trial, v.eval_length, v.set_kind, v.rule
        """,
        scope,
    )


def _rows(db: sqlite_utils.Database, sql: str, scope: Scope) -> list[dict]:
    return [dict(r) for r in db.query(sql, scope.params)]
