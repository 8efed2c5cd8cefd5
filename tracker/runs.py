"""Writing and reading run records. Every record is committed when it happens, in one
transaction per event, so a crash loses at most the model calls in flight."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

import sqlite_utils

T = TypeVar("T")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _insert(conn, table: str, record: dict, *, or_ignore: bool = False) -> int:
    columns = ", ".join(f"[{k}]" for k in record)
    marks = ", ".join("?" * len(record))
    verb = "insert or ignore" if or_ignore else "insert"
    return conn.execute(
        f"{verb} into [{table}] ({columns}) values ({marks})", list(record.values())
    ).lastrowid


def _update(conn, table: str, pk: str, key, record: dict) -> None:
    sets = ", ".join(f"[{k}] = ?" for k in record)
    conn.execute(f"update [{table}] set {sets} where [{pk}] = ?", [*record.values(), key])


def create_run(
    db: sqlite_utils.Database,
    run: dict,
    grid: list[tuple[str, int, int]],
    num_trials: int,
) -> None:
    """The run, the dataset of each grid point, and every trial (pending), atomically."""
    with db.conn:
        _insert(db.conn, "runs", {**run, "created_at": now(), "status": "running"})
        _own(db.conn, run["run_id"])
        for fn, length, dataset_id in grid:
            _insert(db.conn, "run_datasets",
                    {"run_id": run["run_id"], "fn": fn, "length": length, "dataset_id": dataset_id})  # fmt: skip
            for trial in range(1, num_trials + 1):
                _insert(db.conn, "trials", {
                    "run_id": run["run_id"], "fn": fn, "length": length, "trial": trial,
                    "dataset_id": dataset_id, "status": "pending", "attempts_made": 0,
                })  # fmt: skip


def get_run(db: sqlite_utils.Database, run_id: str) -> dict | None:
    rows = list(db["runs"].rows_where("run_id = ?", [run_id]))
    return rows[0] if rows else None


def set_run_config(db: sqlite_utils.Database, run_id: str, config: dict) -> None:
    """The config a resumed run goes on with (its settings, never its experiment)."""
    with db.conn:
        _update(db.conn, "runs", "run_id", run_id, {"config": json.dumps(config)})


def set_run_status(db: sqlite_utils.Database, run_id: str, status: str, error: str | None = None):
    """The status a run ended with (completed, failed, interrupted, dry_run)."""
    with db.conn:
        _ended(db.conn, run_id, status, error)


def end_run(db: sqlite_utils.Database, run_id: str, status: str, exports: Callable[[], T]) -> T:
    """Mark the run ended (its status and a run_finished event) and write its exports
    with ``exports()``, in one transaction: a run killed while its exports are written
    was never marked ended, so it reads as stopped mid-run and a resume writes them."""
    with db.conn:
        _ended(db.conn, run_id, status)
        _event(db.conn, run_id, "run_finished", status)
        return exports()


def _ended(conn, run_id: str, status: str, error: str | None = None) -> None:
    _update(conn, "runs", "run_id", run_id, {"status": status, "error": error, "finished_at": now()})


def claim_run(db: sqlite_utils.Database, run_id: str) -> int | None:
    """Mark a stored run running again, owned by this process; unless a live process on
    this machine still runs it: then nothing changes and that process's pid is returned.
    Checked and claimed in one write transaction, so two resumes cannot both claim it."""
    with db.conn:
        db.conn.execute("begin immediate")
        status, environment = db.conn.execute(
            "select status, environment from runs where run_id = ?", [run_id]).fetchone()  # fmt: skip
        owner = json.loads(environment or "{}").get("pid")
        if status == "running" and owner != os.getpid() and process_alive(environment):
            return owner
        _update(db.conn, "runs", "run_id", run_id,
                {"status": "running", "error": None, "finished_at": None})  # fmt: skip
        _own(db.conn, run_id)
    return None


def _own(conn, run_id: str) -> None:
    """Record this process (pid, host) as the run's: creating or resuming a run claims
    it, so that later a reader can tell whether it still runs (process_alive)."""
    conn.execute(
        "update runs set environment = json_set(coalesce(environment, '{}'), "
        "'$.pid', ?, '$.host', ?) where run_id = ?", [os.getpid(), platform.node(), run_id])


def process_alive(environment: str | None) -> bool | None:
    """Whether the process a run's environment names is alive: None when it ran on
    another machine or named none (a pid reused since may read as alive)."""
    env = json.loads(environment or "{}")
    if env.get("host") != platform.node() or not env.get("pid"):
        return None
    try:
        os.kill(env["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def record_event(
    db: sqlite_utils.Database, run_id: str, kind: str, message: str, *,
    level: str = "info", trial_id: int | None = None, data: dict | None = None,
) -> None:  # fmt: skip
    with db.conn:
        _event(db.conn, run_id, kind, message, level=level, trial_id=trial_id, data=data)


def _event(conn, run_id: str, kind: str, message: str, *, level: str = "info",
           trial_id: int | None = None, data: dict | None = None) -> None:  # fmt: skip
    _insert(conn, "events", {
        "run_id": run_id, "ts": now(), "level": level, "kind": kind, "trial_id": trial_id,
        "message": message, "data": json.dumps(data) if data is not None else None,
    })  # fmt: skip


def record_attempt(
    db: sqlite_utils.Database,
    trial_id: int,
    attempt: dict,
    *,
    prompt: tuple[str, str],
    response: dict | None,
    program: tuple[str, str] | None,
) -> int:
    """One attempt with its prompt, response and program (deduplicated by hash)."""
    with db.conn:
        _insert(db.conn, "prompts", {"hash": prompt[0], "text": prompt[1]}, or_ignore=True)
        if program:
            _insert(db.conn, "programs", {"hash": program[0], "code": program[1]}, or_ignore=True)
        attempt_id = _insert(db.conn, "attempts", {
            **attempt, "trial_id": trial_id, "prompt_hash": prompt[0],
            "program_hash": program[0] if program else None, "finished_at": now(),
        })  # fmt: skip
        if response is not None:
            _insert(db.conn, "responses", {**response, "attempt_id": attempt_id, "created_at": now()})
        db.conn.execute(
            "update trials set attempts_made = attempts_made + 1, status = 'running' where id = ?",
            [trial_id],
        )
    return attempt_id


def record_evaluation(db: sqlite_utils.Database, attempt_id: int, evaluation: dict) -> None:
    with db.conn:
        _insert(db.conn, "evaluations", {**evaluation, "attempt_id": attempt_id, "created_at": now()})
        _update(db.conn, "attempts", "id", attempt_id, {"status": "evaluated"})


def finish_trial(db: sqlite_utils.Database, trial_id: int, result: dict) -> None:
    with db.conn:
        _update(db.conn, "trials", "id", trial_id, {**result, "status": "done", "finished_at": now()})


def trials_of(db: sqlite_utils.Database, run_id: str) -> list[dict]:
    return list(db["trials"].rows_where("run_id = ?", [run_id], order_by="id"))


def failed_calls(db: sqlite_utils.Database, run_id: str) -> tuple[int, dict[str, int]]:
    """How many attempts the run made, and those whose model call still failed after its
    retries, by failure class (most first): they score as wrong programs."""
    made = db.execute(
        "select count(*) from attempts a join trials t on t.id = a.trial_id where t.run_id = ?",
        [run_id],
    ).fetchone()[0]
    failed = db.execute(
        "select a.failure_class, count(*) from attempts a join trials t on t.id = a.trial_id "
        "where t.run_id = ? and a.status = 'call_failed' group by 1 order by 2 desc, 1",
        [run_id],
    ).fetchall()
    return made, dict(failed)


def attempts_of(db: sqlite_utils.Database, trial_id: int) -> list[dict]:
    """A trial's recorded attempts with their response text, program and evaluation."""
    return [
        dict(r) for r in db.query(
            """
            select a.*, p.code, s.text, e.val_acc, e.test_acc, e.status as eval_status
            from attempts a
            left join programs p on p.hash = a.program_hash
            left join responses s on s.attempt_id = a.id
            left join evaluations e on e.attempt_id = a.id
            where a.trial_id = ? order by a.attempt
            """,
            [trial_id],
        )
    ]  # fmt: skip


def list_runs(db: sqlite_utils.Database) -> list[dict]:
    """Every run with its status and counts, newest first. ``alive`` says, for a run
    marked running, whether its process still is (None: unknown, e.g. another machine)."""
    rows = [
        dict(r) for r in db.query(
            """
            select r.run_id, r.status, r.provider, r.model, r.created_at, r.finished_at,
              r.environment,
              (select count(*) from run_datasets d where d.run_id = r.run_id) as grid_points,
              count(t.id) as trials,
              coalesce(sum(t.status = 'done'), 0) as trials_done,
              coalesce(sum(t.status = 'done' and t.val_acc = 1.0), 0) as trials_solved,
              coalesce(sum(t.attempts_made), 0) as attempts
            from runs r left join trials t on t.run_id = r.run_id
            group by r.run_id order by r.created_at desc
            """
        )
    ]  # fmt: skip
    for r in rows:
        environment = r.pop("environment")
        r["alive"] = process_alive(environment) if r["status"] == "running" else None
    return rows
