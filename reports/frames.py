"""The run database's main tables as pandas DataFrames, for a notebook: one flat frame
each, every row naming its task (its dataset's target) beside the task id. pandas is an
optional extra (``pip install 'llm-pv[analysis]'``): only calling :func:`frames` needs it."""

from __future__ import annotations

import json
import os

from reports.errors import ReportError
from tracker.audits import COUNTS
from tracker.db import StoreError, open_db
from tracker.db import db_path as resolve_db

IN_RUNS = "run_id in (select value from json_each(:runs))"
# Each frame's query: the flat views (tracker/migrations.py), a run's seed and settings
# out of its config, each dataset with its stored leakage audit.
QUERIES = {
    "runs": f"""
        select run_id, status, provider, model, api_mode, dry_run, created_at, finished_at,
          json_extract(config, '$.seed') as seed,
          json_extract(config, '$.reasoning_effort') as reasoning_effort,
          json_extract(config, '$.attempts') as attempts, error
        from runs where {IN_RUNS} order by created_at, run_id""",
    "trials": f"select * from trial_results where {IN_RUNS} order by run_id, fn, length, trial",
    "attempts": f"select * from attempt_rows where {IN_RUNS} order by run_id, fn, length, trial, attempt",
    "datasets": f"""
        select d.id as dataset_id, d.fn, d.target as task, d.kind, d.length, d.train_size,
          d.val_size, d.test_size, d.base_seed, d.fingerprint,
          {", ".join(f"a.{c}" for c in (*COUNTS, "clean"))}
        from datasets d left join dataset_audits a on a.dataset_id = d.id
        where d.id in (select dataset_id from run_datasets where {IN_RUNS})
        order by d.fn, d.length, d.id""",
}


def frames(db_path: str | os.PathLike | None = None, run_ids: list[str] | None = None) -> dict:
    """``{"runs", "trials", "attempts", "datasets"}`` as DataFrames, of ``run_ids`` (none:
    every run). ``trials`` is the trial_results view (the selected attempt's accuracies
    and code), ``attempts`` attempt_rows (one flat row per attempt); both carry ``task``."""
    try:
        import pandas as pd
    except ImportError:
        raise ReportError("reports.frames needs pandas: pip install 'llm-pv[analysis]'") from None
    try:
        db = open_db(resolve_db(db_path), readonly=True)
    except StoreError as e:
        raise ReportError(str(e)) from None
    with db:
        stored = [r["run_id"] for r in db.query("select run_id from runs")]
        missing = [r for r in run_ids or () if r not in stored]
        if missing:
            raise ReportError(f"no run {missing[0]!r} in the database")
        params = {"runs": json.dumps(list(run_ids or stored))}
        db.execute("begin")  # one snapshot for every frame
        try:
            return {name: pd.read_sql_query(sql, db.conn, params=params) for name, sql in QUERIES.items()}
        finally:
            db.execute("rollback")
