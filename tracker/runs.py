"""Writing and reading run records. Every record is committed when it happens, in one
transaction per event, so a crash loses at most the model calls in flight."""

from __future__ import annotations

import functools
import json
import os
import platform
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import sqlite_utils

from tracker.db import DamagedDatabase, StoreError, StoreFault, explain
from tracker.shards import describe, shard_states

T = TypeVar("T")


class RunExists(StoreError):
    """A run of that id is stored already (found inside the transaction that would have
    created it, so two runs started together with one --run-id cannot both create it)."""


class RunStopped(StoreFault):
    """A run could not record what it did (a full disk, a lock held past the busy
    timeout, a read-only or damaged file): it stops, marked failed where it still can."""


def _path(db: sqlite_utils.Database) -> str:
    """The database's path as open_db was given it, else the file SQLite has open."""
    path = getattr(db, "store_path", None)
    if path is None:
        try:
            path = db.conn.execute("PRAGMA database_list").fetchone()[2] or None
        except sqlite3.Error:
            path = None
    return str(path) if path is not None else "the database"


def _on_sqlite_error(handle):
    """Decorates a store function: when SQLite fails it, ``handle(db, args, error)``
    gives the one-line StoreError to raise instead; a constraint violated is a bug, and
    stays as it is."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(db, *args, **kwargs):
            try:
                return fn(db, *args, **kwargs)
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
                raise
            except sqlite3.DatabaseError as e:
                raise handle(db, args, e) from None

        return wrapper

    return decorate


# Reads and writes: a one-line StoreError naming the file (tracker.db.explain).
translated = _on_sqlite_error(lambda db, args, error: explain(error, _path(db)))


def _recording(run_of: Callable[..., str | None]):
    """A write made while a run goes on. When SQLite refuses it (the disk full, a lock
    held past the busy timeout, a read-only file), the run stops: it is marked failed
    with the reason, unless that write fails too or the file is damaged (then it is not
    written further), and RunStopped says which, and how to continue the run.
    ``run_of(db, *args)`` names the run."""
    return _on_sqlite_error(lambda db, args, error: _stopped(db, _run_of(run_of, db, *args), error))


def _run_of(run_of, db, *args) -> str | None:
    try:
        return run_of(db, *args)
    except sqlite3.Error:
        return None


def _stopped(db: sqlite_utils.Database, run_id: str | None, error: sqlite3.DatabaseError) -> StoreError:
    reason = explain(error, _path(db))
    if run_id is None:
        return reason
    if isinstance(reason, DamagedDatabase):
        marked = "it was not marked failed: a damaged database is not written further"
    else:
        try:
            if db.conn.in_transaction:
                db.conn.rollback()
            with db.conn:
                _ended(db.conn, run_id, "failed", str(reason))
            marked = "the run is marked failed"
        except sqlite3.Error:
            marked = (
                "it could not be marked failed either, so it reads as running (`synth runs`: process gone)"
            )
    where = _path(db)
    resume = f"synth resume {run_id} --db {Path(where).resolve() if where != 'the database' else 'DB'}"
    return RunStopped(
        f"run {run_id} stopped: {reason}; {marked}; nothing recorded before is lost. "
        f"Once that is fixed, continue it with: {resume}"
    )


def _run_of_trial(db: sqlite_utils.Database, trial_id: int, *args) -> str | None:
    row = db.conn.execute("select run_id from trials where id = ?", [trial_id]).fetchone()
    return row[0] if row else None


def _run_of_attempt(db: sqlite_utils.Database, attempt_id: int, *args) -> str | None:
    row = db.conn.execute(
        "select t.run_id from attempts a join trials t on t.id = a.trial_id where a.id = ?",
        [attempt_id],
    ).fetchone()
    return row[0] if row else None


def _run_id(db: sqlite_utils.Database, run_id: str, *args) -> str:
    return run_id


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def run_tasks(db: sqlite_utils.Database, run_id: str) -> list[dict]:
    """The run's own tasks (none for a run of built-in tasks only), each with the text of
    the file that declared it, in the order recorded."""
    return list(
        db.query(
            "select rt.*, f.text as file_text from run_tasks rt join task_files f on f.sha256 = rt.file_sha256 "
            "where rt.run_id = ? order by rt.rowid",
            [run_id],
        )
    )


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


@translated
def create_run(
    db: sqlite_utils.Database,
    run: dict,
    grid: list[tuple[str, int, int, int]],
    *,
    tasks: list[dict] = (),
    study_cell: dict | None = None,
    shard: dict | None = None,
) -> None:
    """The run, each grid point's dataset and how many trials the run covers there
    (``grid``: fn, length, dataset_id, trials; the trials' rows are written as each
    starts, see start_trial), each of its own
    tasks (``tasks``: a run_tasks row with ``file_text``, the text of the file that
    declared it) and, for a study's cell, its link to the study (study_runs),
    atomically. A shard's run (``shard``: its ``shard``, ``shards`` and
    ``settings_sha256``) records every grid point, counting only its own trials there,
    and its run_shards row. Whether the run id is free is checked inside that write
    transaction: of two runs started together with one id, the second raises RunExists,
    as a later one would."""
    with db.conn:
        db.conn.execute("begin immediate")
        if db.conn.execute("select 1 from runs where run_id = ?", [run["run_id"]]).fetchone():
            raise _exists(db, run["run_id"])
        try:
            _insert(db.conn, "runs", {**run, "created_at": now(), "status": "running"})
        except sqlite3.IntegrityError as e:
            if "runs.run_id" not in str(e):
                raise
            raise _exists(db, run["run_id"]) from None
        _own(db.conn, run["run_id"])
        if shard is not None:
            _insert(
                db.conn,
                "run_shards",
                {
                    **shard,
                    "run_id": run["run_id"],
                    "created_at": now(),
                    "host": platform.node(),
                    "config": run["config"],
                },
            )
        if study_cell is not None:
            _insert(db.conn, "study_runs", {**study_cell, "run_id": run["run_id"]})
        for task in tasks:
            row = {k: v for k, v in task.items() if k != "file_text"}
            _insert(
                db.conn,
                "task_files",
                {"sha256": task["file_sha256"], "text": task["file_text"]},
                or_ignore=True,
            )
            _insert(db.conn, "run_tasks", {"run_id": run["run_id"], **row})
        # Read now, in this transaction, though the trials' rows come as each starts: a
        # damaged table refuses the run before anything of it is recorded.
        db.conn.execute("select max(id) from trials").fetchone()
        for fn, length, dataset_id, trials in grid:
            _insert(
                db.conn,
                "run_datasets",
                {
                    "run_id": run["run_id"],
                    "fn": fn,
                    "length": length,
                    "dataset_id": dataset_id,
                    "trials": trials,
                },
            )


@_recording(_run_id)
def start_trial(db: sqlite_utils.Database, run_id: str, key: dict) -> dict:
    """The row of a trial that starts now (``key``: its fn, length, trial, dataset_id and
    shard), pending until its first attempt is recorded."""
    row = {k: key[k] for k in ("fn", "length", "trial", "dataset_id")} | {"shard": key.get("shard")}
    row |= {"run_id": run_id, "status": "pending", "attempts_made": 0}
    with db.conn:
        row["id"] = _insert(db.conn, "trials", row)
    return row


def _exists(db: sqlite_utils.Database, run_id: str) -> RunExists:
    return RunExists(f"run {run_id!r} already exists in {_path(db)}; continue it with: synth resume {run_id}")


@translated
def get_run(db: sqlite_utils.Database, run_id: str) -> dict | None:
    rows = list(db["runs"].rows_where("run_id = ?", [run_id]))
    return rows[0] if rows else None


@_recording(_run_id)
def set_run_config(db: sqlite_utils.Database, run_id: str, config: dict) -> None:
    """The config a resumed run goes on with (its settings, never its experiment)."""
    with db.conn:
        _update(db.conn, "runs", "run_id", run_id, {"config": json.dumps(config)})


@_recording(_run_id)
def set_run_status(db: sqlite_utils.Database, run_id: str, status: str, error: str | None = None):
    """The status a run ended with (completed, failed, interrupted, dry_run)."""
    with db.conn:
        _ended(db.conn, run_id, status, error)


@_recording(_run_id)
def stop_run(
    db: sqlite_utils.Database,
    run_id: str,
    status: str,
    kind: str,
    message: str,
    *,
    level: str,
    error: str | None = None,
) -> None:
    """Mark the run stopped (failed, interrupted) with the event that says why, in one
    transaction, as end_run marks it ended."""
    with db.conn:
        _ended(db.conn, run_id, status, error)
        _event(db.conn, run_id, kind, message, level=level)


@_recording(_run_id)
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


@translated
def claim_run(db: sqlite_utils.Database, run_id: str) -> int | None:
    """Mark a stored run running again, owned by this process; unless a live process on
    this machine still runs it: then nothing changes and that process's pid is returned.
    Checked and claimed in one write transaction, so two resumes cannot both claim it."""
    with db.conn:
        db.conn.execute("begin immediate")
        status, environment = db.conn.execute(
            "select status, environment from runs where run_id = ?", [run_id]
        ).fetchone()
        owner = json.loads(environment or "{}").get("pid")
        if status == "running" and owner != os.getpid() and process_alive(environment):
            return owner
        _update(db.conn, "runs", "run_id", run_id, {"status": "running", "error": None, "finished_at": None})
        _own(db.conn, run_id)
    return None


def _own(conn, run_id: str) -> None:
    """Record this process (pid, host) as the run's: creating or resuming a run claims
    it, so that later a reader can tell whether it still runs (process_alive)."""
    conn.execute(
        "update runs set environment = json_set(coalesce(environment, '{}'), "
        "'$.pid', ?, '$.host', ?) where run_id = ?",
        [os.getpid(), platform.node(), run_id],
    )


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


@_recording(_run_id)
def record_event(db: sqlite_utils.Database, run_id: str, kind: str, message: str, **details) -> None:
    """One event in its own transaction; ``details`` as _event takes them."""
    with db.conn:
        _event(db.conn, run_id, kind, message, **details)


def _event(
    conn,
    run_id: str,
    kind: str,
    message: str,
    *,
    level: str = "info",
    trial_id: int | None = None,
    data: dict | None = None,
) -> None:
    _insert(
        conn,
        "events",
        {
            "run_id": run_id,
            "ts": now(),
            "level": level,
            "kind": kind,
            "trial_id": trial_id,
            "message": message,
            "data": json.dumps(data) if data is not None else None,
            "shard": _own_shard(conn, run_id),
        },
    )


def _own_shard(conn, run_id: str) -> int | None:
    """The shard a run in its own database is (None: unsharded), which its events carry
    so that a merge can tell whose they are."""
    row = conn.execute(
        "select shard from run_shards where run_id = ? and source is null", [run_id]
    ).fetchone()
    return row[0] if row else None


@_recording(_run_of_trial)
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
        attempt_id = _insert(
            db.conn,
            "attempts",
            {
                **attempt,
                "trial_id": trial_id,
                "prompt_hash": prompt[0],
                "program_hash": program[0] if program else None,
                "finished_at": now(),
            },
        )
        if response is not None:
            _insert(db.conn, "responses", {**response, "attempt_id": attempt_id, "created_at": now()})
        db.conn.execute(
            "update trials set attempts_made = attempts_made + 1, status = 'running' where id = ?",
            [trial_id],
        )
    return attempt_id


@_recording(_run_of_attempt)
def record_evaluation(db: sqlite_utils.Database, attempt_id: int, evaluation: dict) -> None:
    with db.conn:
        _insert(db.conn, "evaluations", {**evaluation, "attempt_id": attempt_id, "created_at": now()})
        _update(db.conn, "attempts", "id", attempt_id, {"status": "evaluated"})


@_recording(_run_of_trial)
def finish_trial(db: sqlite_utils.Database, trial_id: int, result: dict) -> None:
    with db.conn:
        _update(db.conn, "trials", "id", trial_id, {**result, "status": "done", "finished_at": now()})


@_recording(_run_id)
def discard_attempts(db: sqlite_utils.Database, run_id: str, attempt_ids: list[int], why: str) -> None:
    """Take back attempts that only met a set-up fault (calls that all failed alike, no
    answer, no program): their trials reopen, so a resume after the fix makes them.
    The events of their failed calls stay; one more says what was taken back."""
    with db.conn:
        marks = ", ".join("?" * len(attempt_ids))
        counts = db.conn.execute(
            f"select trial_id, count(*) from attempts where id in ({marks}) group by trial_id",
            attempt_ids,
        ).fetchall()
        db.conn.execute(f"delete from attempts where id in ({marks})", attempt_ids)
        for trial_id, n in counts:
            _update(db.conn, "trials", "id", trial_id, dict.fromkeys(_TRIAL_RESULT) | {"status": "running"})
            db.conn.execute("update trials set attempts_made = attempts_made - ? where id = ?", [n, trial_id])
        _event(
            db.conn,
            run_id,
            "attempts_discarded",
            f"{len(attempt_ids)} attempts taken back: {why}",
            level="warning",
            data={"attempt_ids": attempt_ids},
        )


# What finish_trial sets from a trial's attempts: cleared when a trial reopens.
_TRIAL_RESULT = (
    "stopped_early",
    "selected_attempt",
    "val_acc",
    "test_acc",
    "oracle_attempt",
    "oracle_test_acc",
    "finished_at",
)


@translated
def trials_of(db: sqlite_utils.Database, run_id: str) -> list[dict]:
    return list(db["trials"].rows_where("run_id = ?", [run_id], order_by="id"))


@translated
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


@translated
def run_cost(db: sqlite_utils.Database, run_id: str) -> float | None:
    """What the run's recorded responses cost in all (USD); None when one's is unknown."""
    row = db.execute("select cost_usd from run_costs where run_id = ?", [run_id]).fetchone()
    return row[0] if row else 0.0


@translated
def point_costs(db: sqlite_utils.Database, run_id: str) -> dict[tuple[str, int], float | None]:
    """What each grid point's recorded responses cost (USD; None: one's is unknown)."""
    rows = db.execute(
        "select t.fn, t.length, case when count(s.attempt_id) = count(s.cost_usd) "
        "then coalesce(sum(s.cost_usd), 0) end from trials t "
        "join attempts a on a.trial_id = t.id join responses s on s.attempt_id = a.id "
        "where t.run_id = ? group by 1, 2",
        [run_id],
    )
    return {(fn, length): cost for fn, length, cost in rows.fetchall()}


@translated
def recorded_input_tokens(db: sqlite_utils.Database, model: str, prompt_hashes: list[str]) -> dict[str, int]:
    """The most input tokens any recorded call of each prompt to ``model`` took."""
    marks = ", ".join("?" * len(prompt_hashes))
    rows = db.execute(
        f"select a.prompt_hash, max(s.input_tokens) from responses s join attempts a on a.id = s.attempt_id "
        f"where s.model = ? and a.prompt_hash in ({marks}) and s.input_tokens > 0 group by 1",
        [model, *prompt_hashes],
    )
    return dict(rows.fetchall())


@_recording(_run_id)
def set_run_prices(db: sqlite_utils.Database, run_id: str, prices: dict) -> None:
    """The price a run prices its responses at (a run recorded before prices were)."""
    with db.conn:
        _update(db.conn, "runs", "run_id", run_id, {"prices": json.dumps(prices)})


@translated
def attempts_of(db: sqlite_utils.Database, trial_id: int) -> list[dict]:
    """A trial's recorded attempts with their response text, program and evaluation."""
    return [
        dict(r)
        for r in db.query(
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
    ]


@translated
def list_runs(db: sqlite_utils.Database) -> list[dict]:
    """Every run with its status and counts, newest first. ``alive`` says, for a run
    marked running, whether its process still is (None: unknown, e.g. another machine);
    ``shards``, for a sharded run, which shards it holds ("" for a whole run)."""
    rows = [
        dict(r)
        for r in db.query(
            """
            select r.run_id, r.status, r.provider, r.model, r.created_at, r.finished_at,
              r.environment,
              (select count(*) from run_datasets d where d.run_id = r.run_id) as grid_points,
              (select coalesce(sum(d.trials), 0) from run_datasets d where d.run_id = r.run_id) as trials,
              coalesce(sum(t.status = 'done'), 0) as trials_done,
              coalesce(sum(t.status = 'done' and t.val_acc = 1.0), 0) as trials_solved,
              coalesce(sum(t.attempts_made), 0) as attempts,
              (select c.cost_usd from run_costs c where c.run_id = r.run_id) as cost_usd
            from runs r left join trials t on t.run_id = r.run_id
            group by r.run_id order by r.created_at desc
            """
        )
    ]
    states = shard_states(db)
    for r in rows:
        environment = r.pop("environment")
        r["alive"] = process_alive(environment) if r["status"] == "running" else None
        r["shards"] = describe(states[r["run_id"]]) if r["run_id"] in states else ""
    return rows
