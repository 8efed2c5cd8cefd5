"""Schema migrations, one function per step. Never edit a released step: add one."""

from sqlite_utils import Migrations

migrations = Migrations("llm-pv")
# The tables the migrations make: a database that says it has them all applied and lacks
# one was changed by hand (or by another program).
TABLES = (
    "datasets",
    "examples",
    "runs",
    "run_datasets",
    "trials",
    "prompts",
    "programs",
    "attempts",
    "responses",
    "evaluations",
    "events",
    "studies",
    "study_runs",
    "task_files",
    "run_tasks",
    "dataset_audits",
    "verifications",
    "batches",
    "run_shards",
)


@migrations()
def m001_datasets(db):
    """Datasets, stored once per content fingerprint, and their examples."""
    db["datasets"].create(
        {
            "id": int,
            "fingerprint": str,
            "fn": str,
            "target": str,
            "kind": str,
            "length": int,
            "train_size": int,
            "val_size": int,
            "test_size": int,
            "train_effective": int,
            "val_effective": int,
            "test_effective": int,
            "base_seed": int,
            "derived_seed": int,
            "generator_version": int,
            "created_at": str,
        },
        pk="id",
        not_null={"fingerprint", "fn", "length", "base_seed", "derived_seed"},
    )
    db["datasets"].create_index(["fingerprint"], unique=True)
    # The request a dataset answers: a second build of the same request is a cache hit.
    db["datasets"].create_index(
        ["fn", "length", "train_size", "val_size", "test_size", "base_seed", "generator_version"],
        unique=True,
        index_name="idx_datasets_request",
    )
    db["examples"].create(
        {"dataset_id": int, "split": str, "idx": int, "input": str, "label": int},
        pk=("dataset_id", "split", "idx"),
        foreign_keys=[("dataset_id", "datasets", "id")],
        not_null={"input", "label"},
    )


@migrations()
def m002_runs(db):
    """Runs and everything they record: trials, attempts, prompts, responses, programs,
    evaluations and events. Prompts and programs are stored once per content hash."""
    db["runs"].create(
        {
            "run_id": str,
            "created_at": str,
            "finished_at": str,
            "status": str,
            "provider": str,
            "model": str,
            "api_mode": str,
            "dry_run": int,
            "config": str,
            "argv": str,
            "versions": str,
            "environment": str,
            "error": str,
        },
        pk="run_id",
        not_null={"created_at", "status", "config"},
    )
    db["run_datasets"].create(
        {"run_id": str, "fn": str, "length": int, "dataset_id": int},
        pk=("run_id", "fn", "length"),
        foreign_keys=[("run_id", "runs", "run_id"), ("dataset_id", "datasets", "id")],
    )
    db["trials"].create(
        {
            "id": int,
            "run_id": str,
            "fn": str,
            "length": int,
            "trial": int,
            "dataset_id": int,
            "status": str,
            "stopped_early": int,
            "attempts_made": int,
            "selected_attempt": int,
            "val_acc": float,
            "test_acc": float,
            "oracle_attempt": int,
            "oracle_test_acc": float,
            "finished_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "run_id"), ("dataset_id", "datasets", "id")],
        not_null={"run_id", "fn", "length", "trial", "status"},
    )
    db["trials"].create_index(["run_id", "fn", "length", "trial"], unique=True)
    db["prompts"].create({"hash": str, "text": str}, pk="hash", not_null={"text"})
    db["programs"].create({"hash": str, "code": str}, pk="hash", not_null={"code"})
    db["attempts"].create(
        {
            "id": int,
            "trial_id": int,
            "attempt": int,
            "prompt_hash": str,
            "program_hash": str,
            "func_name": str,
            "extraction": str,
            "failure_class": str,
            "error": str,
            "status": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        foreign_keys=[
            ("trial_id", "trials", "id"),
            ("prompt_hash", "prompts", "hash"),
            ("program_hash", "programs", "hash"),
        ],
        not_null={"trial_id", "attempt", "status"},
    )
    db["attempts"].create_index(["trial_id", "attempt"], unique=True)
    db["responses"].create(
        {
            "attempt_id": int,
            "provider": str,
            "model": str,
            "status": str,
            "incomplete_reason": str,
            "text": str,
            "input_tokens": int,
            "cached_tokens": int,
            "output_tokens": int,
            "reasoning_tokens": int,
            "tool_calls": int,
            "tool_output_chars": int,
            "duration_ms": float,
            "response_id": str,
            "request_json": str,
            "raw_json": str,
            "created_at": str,
        },
        pk="attempt_id",
        foreign_keys=[("attempt_id", "attempts", "id")],
    )
    db["evaluations"].create(
        {
            "attempt_id": int,
            "status": str,
            "limit_hit": str,
            "val_acc": float,
            "val_correct": int,
            "val_total": int,
            "test_acc": float,
            "test_correct": int,
            "test_total": int,
            "row_errors": int,
            "errors": str,
            "duration_ms": float,
            "created_at": str,
        },
        pk="attempt_id",
        foreign_keys=[("attempt_id", "attempts", "id")],
    )
    db["events"].create(
        {
            "id": int,
            "run_id": str,
            "ts": str,
            "level": str,
            "kind": str,
            "trial_id": int,
            "message": str,
            "data": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "run_id"), ("trial_id", "trials", "id")],
    )
    for table, column in [
        ("run_datasets", "dataset_id"),
        ("trials", "dataset_id"),
        ("attempts", "prompt_hash"),
        ("attempts", "program_hash"),
        ("events", "run_id"),
        ("events", "trial_id"),
    ]:
        db[table].create_index([column])
    db.create_view(
        "attempt_rows",
        """
        select
          t.run_id, r.provider, r.model, t.fn, t.length, t.trial, a.attempt, t.dataset_id,
          a.status, a.failure_class, a.error, a.extraction, a.func_name,
          s.status as response_status, s.incomplete_reason, s.input_tokens, s.cached_tokens,
          s.output_tokens, s.reasoning_tokens, s.tool_calls, s.tool_output_chars,
          s.duration_ms, s.response_id,
          e.status as eval_status, e.limit_hit, e.val_acc, e.val_correct, e.val_total,
          e.test_acc, e.test_correct, e.test_total, e.row_errors,
          a.attempt = t.selected_attempt as selected,
          a.attempt = t.oracle_attempt as test_oracle,
          a.prompt_hash, a.program_hash, a.id as attempt_id, t.id as trial_id
        from attempts a
        join trials t on t.id = a.trial_id
        join runs r on r.run_id = t.run_id
        left join responses s on s.attempt_id = a.id
        left join evaluations e on e.attempt_id = a.id
        """,
    )
    db.create_view(
        "trial_results",
        """
        select t.run_id, r.provider, r.model, t.fn, t.length, t.trial, t.status,
          t.attempts_made, t.stopped_early, t.selected_attempt, t.val_acc, t.test_acc,
          t.oracle_attempt, t.oracle_test_acc, d.fingerprint as dataset_fingerprint
        from trials t join runs r on r.run_id = t.run_id
        join datasets d on d.id = t.dataset_id
        """,
    )


@migrations()
def m003_search(db):
    """Full-text search over prompt text, response text and program code (Datasette's
    search box); triggers keep each index in step with its table, existing rows included."""
    for table, column in [("prompts", "text"), ("responses", "text"), ("programs", "code")]:
        db[table].enable_fts([column], create_triggers=True)


@migrations()
def m004_isolation(db):
    """Which isolation layers the sandbox applied to each evaluation (e.g.
    "landlock:7 nocaps seccomp"; empty: rlimits only)."""
    db["evaluations"].add_column("isolation", str)
    view = db.execute("select sql from sqlite_master where name = 'attempt_rows'").fetchone()[0]
    db.execute("drop view attempt_rows")
    db.execute(view.replace("e.status as eval_status,", "e.status as eval_status, e.isolation,"))


@migrations()
def m005_studies(db):
    """Studies (systems x prompt wordings x seeds over one grid) and the run of each of
    their cells; ``study_cells`` is the flat view: one row per cell with its run's state."""
    db["studies"].create(
        {"name": str, "spec": str, "sha256": str, "path": str, "created_at": str},
        pk="name",
        not_null={"spec", "sha256", "created_at"},
    )
    db["study_runs"].create(
        {"run_id": str, "study": str, "system": str, "prompt": str, "seed": int},
        pk="run_id",
        foreign_keys=[("run_id", "runs", "run_id"), ("study", "studies", "name")],
        not_null={"study", "system", "prompt", "seed"},
    )
    db["study_runs"].create_index(["study"])
    db.create_view(
        "study_cells",
        """
        select c.study, c.system, c.prompt, c.seed, c.run_id, r.status, r.provider, r.model,
          (select count(*) from trials t where t.run_id = c.run_id) as trials,
          (select count(*) from trials t where t.run_id = c.run_id and t.status = 'done') as trials_done
        from study_runs c join runs r on r.run_id = c.run_id
        """,
    )


@migrations()
def m006_money_costs(db):
    """What each response cost, priced when it was recorded (USD; NULL: the model had no
    price), the price its run used (JSON: model, price, as_of, source, source_url), and
    each run's cost as one row."""
    for column in ("input_cost_usd", "cached_input_cost_usd", "output_cost_usd", "cost_usd"):
        db["responses"].add_column(column, float)
    db["runs"].add_column("prices", str)
    view = db.execute("select sql from sqlite_master where name = 'attempt_rows'").fetchone()[0]
    db.execute("drop view attempt_rows")
    db.execute(view.replace("s.duration_ms, s.response_id,", "s.duration_ms, s.response_id, s.cost_usd,"))
    db.create_view(
        "run_costs",
        """
        select r.run_id, r.model, r.status, count(s.attempt_id) as responses,
          coalesce(sum(s.input_tokens), 0) as input_tokens,
          coalesce(sum(s.cached_tokens), 0) as cached_tokens,
          coalesce(sum(s.output_tokens), 0) as output_tokens,
          case when count(s.attempt_id) = count(s.cost_usd) then coalesce(sum(s.cost_usd), 0) end as cost_usd,
          count(s.attempt_id) - count(s.cost_usd) as unpriced_responses,
          json_extract(r.prices, '$.as_of') as prices_as_of,
          json_extract(r.prices, '$.source') as prices_source
        from runs r
        left join trials t on t.run_id = r.run_id
        left join attempts a on a.trial_id = t.id
        left join responses s on s.attempt_id = a.id
        group by r.run_id
        """,
    )


# The request a dataset answers, unique in the datasets table from m007 on (and so what
# tracker.datasets looks a dataset up by): m001's key and what defines a custom task.
DATASET_REQUEST = (
    "fn",
    "length",
    "train_size",
    "val_size",
    "test_size",
    "base_seed",
    "generator_version",
    "task_sha256",
)


@migrations()
def m007_custom_tasks(db):
    """Researchers' own tasks: what defines one (the SHA-256 of its tasks file, or of its
    CSV and label rule; '' for a built-in task) is part of its datasets' key, and a run
    records each of its own tasks with the text of the file that declared it."""
    db["datasets"].add_column("task_sha256", str, not_null_default="")
    db.execute("drop index idx_datasets_request")
    db["datasets"].create_index(
        DATASET_REQUEST,
        unique=True,
        index_name="idx_datasets_task_request",
    )
    db["task_files"].create({"sha256": str, "text": str}, pk="sha256", not_null={"text"})
    db["run_tasks"].create(
        {
            "run_id": str,
            "fn": str,
            "kind": str,
            "file": str,
            "file_sha256": str,
            "csv": str,
            "csv_sha256": str,
            "task_sha256": str,
        },
        pk=("run_id", "fn"),
        foreign_keys=[("run_id", "runs", "run_id"), ("file_sha256", "task_files", "sha256")],
        not_null={"kind", "file", "file_sha256", "task_sha256"},
    )
    db["run_tasks"].create_index(["file_sha256"])
    db.create_view(
        "run_task_definitions",
        """
        select rt.run_id, rt.fn, rt.kind, rt.file, rt.csv, rt.csv_sha256, rt.task_sha256,
          rt.file_sha256, f.text as file_text
        from run_tasks rt join task_files f on f.sha256 = rt.file_sha256
        """,
    )


@migrations()
def m008_dataset_audits(db):
    """Each dataset's leakage audit (tracker.audits), kept once beside it: datasets never
    change, so a report reads these counts instead of every example. Datasets stored
    before are audited here, once."""
    from tracker.audits import COUNTS, audit_missing

    db["dataset_audits"].create(
        {"dataset_id": int, **dict.fromkeys(COUNTS, int), "clean": int},
        pk="dataset_id",
        foreign_keys=[("dataset_id", "datasets", "id")],
        not_null={"dataset_id", *COUNTS, "clean"},
    )
    audit_missing(db)


@migrations()
def m009_views_with_task_names(db):
    """The flat views name each task (its dataset's target) and show the program's code:
    attempt_rows the attempt's, trial_results the selected attempt's."""
    _rewrite_view(
        db,
        "attempt_rows",
        (
            "t.run_id, r.provider, r.model, t.fn, t.length,",
            "t.run_id, r.provider, r.model, t.fn, d.target as task, t.length,",
        ),
        ("a.prompt_hash, a.program_hash,", "a.prompt_hash, a.program_hash, p.code,"),
        (
            "left join evaluations e on e.attempt_id = a.id",
            "left join evaluations e on e.attempt_id = a.id\n"
            "        left join datasets d on d.id = t.dataset_id\n"
            "        left join programs p on p.hash = a.program_hash",
        ),
    )
    _rewrite_view(
        db,
        "trial_results",
        (
            "select t.run_id, r.provider, r.model, t.fn, t.length,",
            "select t.run_id, r.provider, r.model, t.fn, d.target as task, t.length,",
        ),
        (
            "d.fingerprint as dataset_fingerprint",
            "d.fingerprint as dataset_fingerprint, s.program_hash as selected_program_hash,\n"
            "          p.code as selected_code",
        ),
        (
            "join datasets d on d.id = t.dataset_id",
            "join datasets d on d.id = t.dataset_id\n"
            "        left join attempts s on s.trial_id = t.id and s.attempt = t.selected_attempt\n"
            "        left join programs p on p.hash = s.program_hash",
        ),
    )


def _rewrite_view(db, name: str, *changes: tuple[str, str]) -> None:
    """Recreate view ``name`` with each (old, new) text replaced, once; a view whose text
    lacks one (changed since) stops the migration rather than lose that change."""
    (sql,) = db.execute("select sql from sqlite_master where type = 'view' and name = ?", [name]).fetchone()
    for old, new in changes:
        if sql.count(old) != 1:
            raise RuntimeError(f"view {name} is not as expected: {old!r}")
        sql = sql.replace(old, new)
    db.execute(f"drop view {name}")
    db.execute(sql)


@migrations()
def m010_verify_generalisation(db):
    """`synth verify`: each recorded program re-checked on an evaluation set (balanced
    data, every input, a uniform sample or the whole source table) at a length, read
    against a rule (the task's, or the training rule extended), one row each."""
    db["verifications"].create(
        {
            "id": int,
            "run_id": str,
            "attempt_id": int,
            "program_hash": str,
            "fn": str,
            "trial": int,
            "attempt": int,
            "selected": int,
            "train_length": int,
            "eval_length": int,
            "set_kind": str,
            "set_key": str,
            "rule": str,
            "dataset_id": int,
            "n": int,
            "correct": int,
            "accuracy": float,
            "positives": int,
            "exact": int,
            "counterexample": str,
            "seen": int,
            "unseen_n": int,
            "unseen_correct": int,
            "status": str,
            "errors": str,
            "duration_ms": float,
            "isolation": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[
            ("run_id", "runs", "run_id"),
            ("attempt_id", "attempts", "id"),
            ("program_hash", "programs", "hash"),
            ("dataset_id", "datasets", "id"),
        ],
        not_null={"run_id", "attempt_id", "fn", "eval_length", "set_kind", "set_key", "rule", "n", "status"},
    )
    db["verifications"].create_index(["attempt_id", "eval_length", "set_key", "rule"], unique=True)
    for column in ("run_id", "program_hash", "dataset_id"):
        db["verifications"].create_index([column])
    db.create_view(
        "verification_rows",
        """
        select v.run_id, r.provider, r.model, v.fn, v.trial, v.attempt, v.selected,
          v.train_length, v.eval_length, v.set_kind, v.rule, v.n, v.correct, v.accuracy,
          v.exact, v.counterexample, v.seen, v.unseen_n, v.unseen_correct, v.status,
          v.duration_ms, v.isolation, v.program_hash, v.dataset_id, v.attempt_id, v.created_at
        from verifications v join runs r on r.run_id = v.run_id
        """,
    )


@migrations()
def m011_batches(db):
    """`synth run --batch`: every Batch API batch a run submits, recorded the moment its
    input file exists, then its batch id, status, counts and result files, so that a
    resume polls it rather than submit its wave again."""
    db["batches"].create(
        {
            "id": int,
            "run_id": str,
            "wave": int,
            "key": str,
            "endpoint": str,
            "input_file_id": str,
            "batch_id": str,
            "status": str,
            "requests": int,
            "completed": int,
            "failed": int,
            "custom_ids": str,
            "output_file_id": str,
            "error_file_id": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "run_id")],
        not_null={"run_id", "wave", "key", "endpoint", "input_file_id", "status", "requests", "custom_ids"},
    )
    db["batches"].create_index(["run_id", "wave"])
    db["batches"].create_index(["key"], unique=True)
    db["batches"].create_index(["batch_id"], unique=True)
    db.create_view(
        "batch_waves",
        """
        select run_id, wave, count(*) as batches, sum(requests) as requests,
          sum(coalesce(completed, 0)) as completed, sum(coalesce(failed, 0)) as failed,
          group_concat(distinct status) as statuses, min(created_at) as created_at,
          max(updated_at) as updated_at
        from batches group by run_id, wave
        """,
    )


@migrations()
def m012_shards(db):
    """Runs split across machines (`synth run --shard I/N`) and folded back together
    (`synth merge`): one row per shard a run holds (``source``: the database a merge
    took it from; NULL in the shard's own database, whose runs row has its status), and
    the shard each trial and event belongs to (NULL: an unsharded run's)."""
    db["run_shards"].create(
        {
            "run_id": str,
            "shard": int,
            "shards": int,
            "settings_sha256": str,
            "status": str,
            "created_at": str,
            "finished_at": str,
            "host": str,
            "config": str,
            "source": str,
            "merged_at": str,
        },
        pk=("run_id", "shard"),
        foreign_keys=[("run_id", "runs", "run_id")],
        not_null={"shards", "settings_sha256", "created_at", "config"},
    )
    db["trials"].add_column("shard", int)
    db["events"].add_column("shard", int)
    db["trials"].create_index(["run_id", "shard"])
    db.create_view(
        "shard_progress",
        """
        select s.run_id, s.shard, s.shards, s.status, s.host, s.created_at, s.finished_at,
          s.source, s.merged_at,
          (select count(*) from trials t where t.run_id = s.run_id and t.shard = s.shard) as trials,
          (select count(*) from trials t where t.run_id = s.run_id and t.shard = s.shard
            and t.status = 'done') as trials_done
        from run_shards s
        """,
    )


@migrations()
def m013_lazy_trials(db):
    """Trial rows are written as each trial starts, so each grid point of a run records
    how many trials the run covers there (run_datasets.trials): the count of a run not
    finished, its trials not started included. Runs recorded before wrote every trial
    when they were recorded, so their count is their rows."""
    db["run_datasets"].add_column("trials", int)
    db.execute(
        "update run_datasets set trials = (select count(*) from trials t "
        "where t.run_id = run_datasets.run_id and t.fn = run_datasets.fn and t.length = run_datasets.length)"
    )
    _rewrite_view(
        db,
        "study_cells",
        (
            "(select count(*) from trials t where t.run_id = c.run_id) as trials,",
            "(select coalesce(sum(d.trials), 0) from run_datasets d where d.run_id = c.run_id) as trials,",
        ),
    )
