"""The leakage audit of every dataset a report covers: the counts kept when each dataset
was stored (tracker.audits), read in one query; a dataset stored without them (a
database filled by hand) is audited from its examples here."""

from __future__ import annotations

import json

import sqlite_utils

from reports.scope import Scope, scoped
from tracker.audits import COUNTS, audit_stored


def leakage_audit(db: sqlite_utils.Database, scope: Scope) -> list[dict]:
    counts = ", ".join(f"a.{c}" for c in COUNTS)
    datasets = db.query(
        f"""
        select d.id as dataset_id, d.fn, d.target, d.length, d.fingerprint, d.base_seed,
          d.derived_seed, json_group_array(rd.run_id) as runs, a.dataset_id is not null as audited,
          {counts}, a.clean
        from run_datasets rd join datasets d on d.id = rd.dataset_id
        left join dataset_audits a on a.dataset_id = d.id
        where {scoped("rd.run_id", "rd.fn")}
        group by d.id order by d.fn, d.length, d.base_seed, d.id
        """,
        scope.params,
    )
    return [_audited(db, d) for d in datasets]


def _audited(db: sqlite_utils.Database, row: dict) -> dict:
    audited = row.pop("audited")
    row = {**row, "runs": json.loads(row["runs"])}
    return (
        {**row, **audit_stored(db, row["dataset_id"])}
        if not audited
        else {**row, "clean": bool(row["clean"])}
    )
