"""Which runs and tasks a report covers.

Run ids name runs; filters (model, provider, task) select among them, or among all runs
when no id is given; with neither, the report covers the latest run. A task filter
also narrows every analysis to those tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlite_utils

from reports.errors import ReportError

FILTERS = ("model", "provider", "task")


@dataclass(frozen=True)
class Scope:
    run_ids: tuple[str, ...]
    tasks: tuple[str, ...] | None
    filters: dict[str, tuple[str, ...]]

    @property
    def params(self) -> dict:
        """The named parameters every scoped query takes (see :func:`scoped`)."""
        tasks = json.dumps(self.tasks) if self.tasks else None
        return {"runs": json.dumps(self.run_ids), "tasks": tasks}


def scoped(run_col: str = "t.run_id", fn_col: str = "t.fn") -> str:
    """The SQL condition "this row belongs to the report": its run and its task."""
    return (
        f"{run_col} in (select value from json_each(:runs)) "
        f"and (:tasks is null or {fn_col} in (select value from json_each(:tasks)))"
    )


def resolve_scope(db: sqlite_utils.Database, run_ids: list[str] | None, filters: dict | None) -> Scope:
    filters = _normalise(filters or {})
    runs = {r["run_id"]: r for r in db.query("select run_id, provider, model, created_at from runs")}
    if not runs:
        raise ReportError("the database has no runs yet")
    if run_ids:
        missing = [r for r in run_ids if r not in runs]
        if missing:
            raise ReportError(f"no run {missing[0]!r} in the database")
        chosen = list(dict.fromkeys(run_ids))
    elif filters:
        chosen = sorted(runs, key=lambda r: (runs[r]["created_at"], r))
    else:
        chosen = [max(runs, key=lambda r: (runs[r]["created_at"], r))]
    for key in ("model", "provider"):
        if key in filters:
            chosen = [r for r in chosen if runs[r][key] in filters[key]]
    tasks = filters.get("task")
    if tasks:
        with_task = {
            r["run_id"]
            for r in db.query(
                "select distinct run_id from run_datasets where fn in (select value from json_each(?))",
                [json.dumps(tasks)],
            )
        }
        chosen = [r for r in chosen if r in with_task]
    if not chosen:
        described = ", ".join(f"{k}={'|'.join(v)}" for k, v in filters.items())
        raise ReportError(f"no run matches {described}")
    return Scope(tuple(chosen), tasks, filters)


def _normalise(filters: dict) -> dict[str, tuple[str, ...]]:
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise ReportError(f"unknown report filter {sorted(unknown)[0]!r}: use {', '.join(FILTERS)}")
    out = {}
    for key, value in filters.items():
        values = (value,) if isinstance(value, str) else tuple(value or ())
        if values:
            out[key] = values
    return out
