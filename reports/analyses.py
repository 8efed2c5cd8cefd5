"""The report's analyses: SQL over the runs of a scope, aggregated in SQLite.

Each function takes the database and a :class:`Scope` and returns rows (dicts);
:func:`analyse` runs them all in one read transaction, so a report is one consistent
snapshot even while a run writes. Accuracy analyses count finished trials of runs that
called a proposer (a dry run has no results); an attempt with no evaluation scores 0,
as in selection. "Proposer" is a run's provider and model, so offline proposers are
rows of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlite_utils

from reports.generalisation import counterexamples, generalisation, recovery
from reports.leakage import leakage_audit
from reports.scope import Scope, scoped
from reports.stats import add_means, add_summaries
from reports.study import StudyReport, analyse_study
from tracker.prices import PriceTable

GATE_COMPILE_OK = 0.99
# Evaluation statuses that mean the program never ran: it did not compile or define f.
NOT_COMPILED = ("compile_error", "no_function")
TOP_ERRORS = 10

# The reasoning effort a run asked for; none for offline proposers, which have no such
# setting (their config keeps the flag's default).
EFFORT = "case when r.provider = 'openai' then json_extract(r.config, '$.reasoning_effort') end"
# What a leaderboard row's proposer was set to: the reasoning effort, or an offline
# proposer's settings as its run recorded them (config.proposer_setting).
SETTING = f"coalesce({EFFORT}, json_extract(r.config, '$.proposer_setting'))"
# Attempts of a trial that an offline proposer's safety cap on the clock stopped (their
# response's incomplete_reason, synth.config.TIME_CAP): results that depend on the machine.
# Attempts an offline proposer's clock cap stopped; the API has no such cap, so its trials
# are not looked into (a lookup per trial made the leaderboard 4x slower on 100,000).
CAPPED = """case when r.provider = 'openai' then 0 else (
  select count(*) from attempts a join responses s on s.attempt_id = a.id
  where a.trial_id = t.id and s.incomplete_reason = 'time_cap') end"""
DONE_TRIALS = f"""
from trials t
join runs r on r.run_id = t.run_id
join datasets d on d.id = t.dataset_id
left join attempts a1 on a1.trial_id = t.id and a1.attempt = 1
left join evaluations e1 on e1.attempt_id = a1.id
where t.status = 'done' and not r.dry_run and {scoped()}
"""


def values(expr: str, name: str) -> str:
    """Every value of ``expr`` in the group, for stats.add_summaries and add_means: 17
    significant digits, so each float comes back exactly (json_group_array keeps 15)."""
    return f"group_concat(printf('%!.17g', {expr}), ' ') as {name}_values"


# Selected (by validation) accuracies over trials, as per-trial values; attempt 1 and the
# test-oracle choice beside them.
ACCURACY = f"""
count(*) as trials, sum(t.stopped_early) as solved, avg(t.attempts_made) as attempts_mean,
{values("t.test_acc", "test")}, min(t.test_acc) as test_min, max(t.test_acc) as test_max,
{values("t.val_acc", "val")}, min(t.val_acc) as val_min, max(t.val_acc) as val_max,
{values("t.val_acc - t.test_acc", "gap")},
{values("coalesce(e1.test_acc, 0)", "first_test")},
{values("t.oracle_test_acc", "oracle_test")}
"""
# Every attempt of the scope with its evaluation. Responses are joined only where tokens
# are counted: looking up 100,000 wide rows for nothing cost each query ~0.15 s.
ATTEMPTS = f"""
from attempts a
join trials t on t.id = a.trial_id
join runs r on r.run_id = t.run_id
left join evaluations e on e.attempt_id = a.id
where {scoped()}
"""
WITH_RESPONSES = ATTEMPTS.replace(
    "left join evaluations", "left join responses s on s.attempt_id = a.id\nleft join evaluations"
)
TOKENS = """
count(s.attempt_id) as calls, coalesce(sum(s.input_tokens), 0) as input_tokens,
coalesce(sum(s.cached_tokens), 0) as cached_tokens,
coalesce(sum(s.output_tokens), 0) as output_tokens,
coalesce(sum(s.reasoning_tokens), 0) as reasoning_tokens
"""


@dataclass
class Report:
    """Everything a report shows, computed once; the HTML and text renderers read it."""

    database: str
    scope: Scope
    prices: PriceTable
    repriced: bool  # True: every cost from ``prices`` (--prices); else as recorded
    runs: list[dict]
    gate: dict
    grid_points: list[dict]
    run_results: list[dict]
    leaderboard: list[dict]
    seed_spread: list[dict]
    leakage: list[dict]
    raw_vs_clean: list[dict]
    compile: list[dict]
    failure_classes: list[dict]
    errors: list[dict]
    attempts_to_solve: list[dict]
    progression: list[dict]
    tokens_runs: list[dict]
    tokens_points: list[dict]
    programs: list[dict]
    # From `synth verify` (empty when no program was verified).
    generalisation: list[dict]
    recovery: list[dict]
    counterexamples: list[dict]
    study: StudyReport | None = None  # a study's tables (synth report --study)
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def price_note(self) -> str:
        """Where the costs shown come from."""
        table = f"{self.prices.source}, as of {self.prices.as_of}"
        if self.repriced:
            return f"re-priced at {table}, not as recorded"
        return f"as recorded with each response; responses recorded without a cost priced at {table}"


def analyse_scope(
    db: sqlite_utils.Database,
    scope: Scope,
    prices: PriceTable,
    database: str,
    repriced: bool = False,
    study: str | None = None,
) -> Report:
    """Every analysis of the scope (and of the ``study`` whose runs it is), from one
    snapshot of the database."""
    db.execute("begin")
    try:
        audit = leakage_audit(db, scope)
        compile_rows = compile_stats(db, scope)
        runs = runs_overview(db, scope)
        tokens_runs = tokens(db, scope, prices, repriced, by_point=False)
        return Report(
            database=database,
            scope=scope,
            prices=prices,
            repriced=repriced,
            runs=runs,
            gate=gate(runs, compile_rows, audit),
            grid_points=grid_points(db, scope),
            run_results=run_results(db, scope),
            leaderboard=leaderboard(db, scope),
            seed_spread=seed_spread(db, scope),
            leakage=audit,
            raw_vs_clean=raw_vs_clean(db, scope, audit),
            compile=compile_rows,
            failure_classes=failure_classes(db, scope),
            errors=common_errors(db, scope),
            attempts_to_solve=attempts_to_solve(db, scope),
            progression=progression(db, scope),
            tokens_runs=tokens_runs,
            tokens_points=tokens(db, scope, prices, repriced, by_point=True),
            programs=programs(db, scope),
            generalisation=generalisation(db, scope),
            recovery=recovery(db, scope),
            counterexamples=counterexamples(db, scope),
            study=analyse_study(db, study, tokens_runs) if study else None,
        )
    finally:
        db.execute("rollback")


def _query(db: sqlite_utils.Database, sql: str, scope: Scope, **params) -> list[dict]:
    return [dict(r) for r in db.query(sql, {**scope.params, **params})]


def task_label(row: dict) -> str:
    """How a task is named in charts and tables: ``fn_e · parity_rand_3`` (its id alone
    when the stored dataset names it no better)."""
    target = row.get("target")
    return row["fn"] if not target or target == row["fn"] else f"{row['fn']} · {target}"


def proposer(row: dict) -> str:
    """How a provider and model are named in charts: ``openai/gpt-5``, ``tree``."""
    model = row.get("model")
    return row["provider"] if not model or model == row["provider"] else f"{row['provider']}/{model}"


# A run's grid points in the report's task scope: they count its trials, those not
# started (whose rows are written as each starts) included.
POINTS_IN_SCOPE = "(:tasks is null or d.fn in (select value from json_each(:tasks)))"


def runs_overview(db, scope: Scope) -> list[dict]:
    return _query(
        db,
        f"""
        select r.run_id, r.status, r.provider, r.model, r.api_mode, r.dry_run, r.created_at,
          r.finished_at, r.error, json_extract(r.versions, '$."llm-pv"') as version,
          json_extract(r.config, '$.seed') as seed,
          {EFFORT} as reasoning_effort,
          json_extract(r.config, '$.attempts') as attempts_requested,
          json_extract(r.config, '$.num_trials') as num_trials,
          json_extract(r.config, '$.train_size') as train_size,
          json_extract(r.config, '$.val_size') as val_size,
          json_extract(r.config, '$.test_size') as test_size,
          (select count(*) from run_datasets d where d.run_id = r.run_id and {POINTS_IN_SCOPE}) as grid_points,
          (select coalesce(sum(d.trials), 0) from run_datasets d where d.run_id = r.run_id
            and {POINTS_IN_SCOPE}) as trials,
          coalesce(sum(t.status = 'done'), 0) as trials_done,
          coalesce(sum(t.attempts_made), 0) as attempts
        from runs r left join trials t on t.run_id = r.run_id
          and (:tasks is null or t.fn in (select value from json_each(:tasks)))
        where r.run_id in (select value from json_each(:runs))
        group by r.run_id order by r.created_at, r.run_id
        """,
        scope,
    )


def _accuracy(rows: list[dict]) -> list[dict]:
    for row in rows:
        add_summaries(row, "test", "val")
        add_means(row, "gap", "first_test", "oracle_test")
        row["improvement_selected"] = row["test_mean"] - row["first_test_mean"]
        row["improvement_oracle"] = row["oracle_test_mean"] - row["first_test_mean"]
    return rows


def grid_points(db, scope: Scope) -> list[dict]:
    """Per run and grid point: selected test and val accuracy over trials, the gap, and
    attempt 1 and the test-oracle choice for comparison."""
    return _accuracy(
        _query(
            db,
            f"""
        select t.run_id, r.provider, r.model, d.base_seed as seed, t.fn, d.target, t.length,
          {ACCURACY}
        {DONE_TRIALS}
        group by t.run_id, t.fn, t.length order by r.created_at, t.run_id, t.fn, t.length
        """,
            scope,
        )
    )


def run_results(db, scope: Scope) -> list[dict]:
    """The same over every trial of a run: attempt 1 -> selected -> test-oracle."""
    return _accuracy(
        _query(
            db,
            f"""
        select t.run_id, r.provider, r.model, {ACCURACY} {DONE_TRIALS}
        group by t.run_id order by r.created_at, t.run_id
        """,
            scope,
        )
    )


def leaderboard(db, scope: Scope) -> list[dict]:
    """Per task and length, each proposer and setting (reasoning effort or an offline
    proposer's settings, attempts, split sizes) over all its runs, best first: runs of one
    setting under several seeds pool. ``capped`` counts attempts stopped by a clock."""
    return _accuracy(
        _query(
            db,
            f"""
        select r.provider, r.model, {SETTING} as setting,
          json_extract(r.config, '$.attempts') as attempts, d.train_size, d.val_size,
          d.test_size, t.fn, d.target, t.length, count(distinct t.run_id) as runs, {ACCURACY},
          sum({CAPPED}) as capped
        {DONE_TRIALS}
        group by r.provider, r.model, setting, attempts, d.train_size, d.val_size, d.test_size,
          t.fn, t.length
        order by t.fn, t.length, avg(t.test_acc) desc, r.provider, r.model, setting, attempts
        """,
            scope,
        )
    )


def seed_spread(db, scope: Scope) -> list[dict]:
    """Across global seeds: runs of one proposer and setting that share a grid point,
    each run's mean selected test accuracy as one value. Only points with 2+ seeds."""
    rows = _query(
        db,
        f"""
        with per_run as (
          select r.provider, r.model, {SETTING} as setting,
            json_extract(r.config, '$.attempts') as attempts, d.train_size, d.val_size,
            d.test_size, t.fn, t.length, d.base_seed as seed, avg(t.test_acc) as test
          {DONE_TRIALS}
          group by t.run_id, t.fn, t.length
        )
        select provider, model, setting, attempts, train_size, val_size, test_size, fn, length,
          count(*) as runs, count(distinct seed) as seeds, group_concat(distinct seed) as seed_list,
          {values("test", "test")}, min(test) as test_min, max(test) as test_max
        from per_run
        group by provider, model, setting, attempts, train_size, val_size, test_size, fn, length
        having count(distinct seed) > 1
        order by fn, length, provider, model
        """,
        scope,
    )
    return [add_summaries(r, "test") for r in rows]


def raw_vs_clean(db, scope: Scope, audit: list[dict]) -> list[dict]:
    """Per proposer and grid point (task and length): mean selected test accuracy over all
    trials (raw) and over the trials whose dataset is leakage-clean (no input shared
    between splits). Per length, as accuracy depends on it: a mean across lengths would
    mix a hard point's leak with an easy point's result."""
    clean = json.dumps([d["dataset_id"] for d in audit if d["clean"]])
    return _query(
        db,
        f"""
        select r.provider, r.model, t.fn, d.target, t.length, count(*) as trials,
          avg(t.test_acc) as raw_test_mean,
          sum(t.dataset_id in (select value from json_each(:clean))) as clean_trials,
          avg(case when t.dataset_id in (select value from json_each(:clean))
              then t.test_acc end) as clean_test_mean
        {DONE_TRIALS}
        group by r.provider, r.model, t.fn, t.length order by t.fn, t.length, r.provider, r.model
        """,
        scope,
        clean=clean,
    )


def compile_stats(db, scope: Scope) -> list[dict]:
    """Per run: what became of the attempts. The compile-ok rate is over attempts the
    proposer answered (call failures are not the program's fault): a program was
    extracted and it compiled and defined the function."""
    not_compiled = ", ".join(f"'{s}'" for s in NOT_COMPILED)
    rows = _query(
        db,
        f"""
        select t.run_id, r.provider, r.model, count(*) as attempts,
          coalesce(sum(a.status = 'call_failed'), 0) as call_failed,
          coalesce(sum(a.status = 'extract_failed'), 0) as extract_failed,
          coalesce(sum(a.status = 'pending_eval'), 0) as pending,
          coalesce(sum(a.status = 'evaluated'), 0) as evaluated,
          coalesce(sum(a.status = 'evaluated' and e.status not in ({not_compiled})), 0) as compile_ok,
          coalesce(sum(e.status = 'ok'), 0) as ran_ok,
          coalesce(sum(e.row_errors > 0), 0) as with_row_errors
        {ATTEMPTS} and not r.dry_run
        group by t.run_id order by r.created_at, t.run_id
        """,
        scope,
    )
    for row in rows:
        answered = row["evaluated"] + row["extract_failed"]
        row["answered"] = answered
        row["compile_ok_rate"] = row["compile_ok"] / answered if answered else None
    return rows


def failure_classes(db, scope: Scope) -> list[dict]:
    """Per run: how attempts failed, by stage (call, extraction, evaluation)."""
    return _query(
        db,
        f"""
        select run_id, provider, model, stage, class, count(*) as attempts from (
          select t.run_id, r.provider, r.model,
            case when a.failure_class like 'call_%' then 'call'
                 when a.failure_class is not null then 'extraction' else 'evaluation' end as stage,
            coalesce(a.failure_class, e.status) as class, r.created_at
          {ATTEMPTS} and (a.failure_class is not null or e.status != 'ok')
        )
        group by run_id, stage, class order by created_at, run_id, attempts desc, class
        """,
        scope,
    )


def common_errors(db, scope: Scope) -> list[dict]:
    """The most frequent error messages: failed calls and extractions (attempts.error)
    and the first distinct errors each evaluation kept (evaluations.errors)."""
    return _query(
        db,
        f"""
        select message, source, count(*) as occurrences, count(distinct run_id) as runs from (
          select t.run_id, a.error as message, 'attempt' as source
          {ATTEMPTS} and a.error is not null
          union all
          select t.run_id, j.value, 'evaluation'
          from evaluations e join attempts a on a.id = e.attempt_id
          join trials t on t.id = a.trial_id, json_each(e.errors) j
          where {scoped()}
        )
        group by message, source order by occurrences desc, message limit :top
        """,
        scope,
        top=TOP_ERRORS,
    )


def attempts_to_solve(db, scope: Scope) -> list[dict]:
    """Per run: how many trials reached validation accuracy 1.0 (and stopped) at each
    attempt; ``solved_at`` is None for trials that never did."""
    return _query(
        db,
        f"""
        select t.run_id, r.provider, r.model,
          case when t.stopped_early then t.selected_attempt end as solved_at, count(*) as trials
        {DONE_TRIALS}
        group by t.run_id, solved_at order by r.created_at, t.run_id, solved_at is null, solved_at
        """,
        scope,
    )


def progression(db, scope: Scope) -> list[dict]:
    """Per proposer, task and k: mean val and test accuracy of the attempt selection
    would have chosen had trials stopped after k attempts (early stops carry forward).

    Selection after k keeps the best attempt so far (ties: the earlier), so it changes
    only at a record, an attempt better than all before it; each record holds from its
    attempt to the next record's (the last, to every larger k). Ranking every trial's
    attempts anew for each k took 1.5 s of a ten-run report."""
    return _query(
        db,
        f"""
        with scored as (
          select a.trial_id, a.attempt, coalesce(e.val_acc, 0) as val, coalesce(e.test_acc, 0) as test
          {ATTEMPTS} and t.status = 'done' and not r.dry_run
        ),
        ks as (select distinct attempt as k from scored),
        records as (
          select *, lead(attempt) over (partition by trial_id order by attempt) as until
          from (
            select *, max(val) over (
              partition by trial_id order by attempt
              rows between unbounded preceding and 1 preceding) as before
            from scored
          )
          where before is null or val > before
        )
        select r.provider, r.model, t.fn, min(d.target) as target, k as attempt, count(*) as trials,
          avg(val) as val_mean, avg(test) as test_mean
        from records join ks on ks.k >= records.attempt and (until is null or ks.k < until)
        join trials t on t.id = records.trial_id
        join runs r on r.run_id = t.run_id
        join datasets d on d.id = t.dataset_id
        group by r.provider, r.model, t.fn, k order by r.provider, r.model, t.fn, k
        """,
        scope,
    )


def tokens(db, scope: Scope, prices: PriceTable, repriced: bool, *, by_point: bool) -> list[dict]:
    """Token sums per run (or per run and grid point) and their cost: as recorded with
    each response, unless ``repriced`` (or some response was recorded without a cost:
    then from the price table). ``cost`` is None when the model has no price."""
    point = ", t.fn, t.length" if by_point else ""
    rows = _query(
        db,
        f"""
        select t.run_id, r.provider, r.model{point}, count(*) as attempts, {TOKENS},
          coalesce(sum(s.cost_usd), 0) as recorded_cost,
          count(s.attempt_id) - count(s.cost_usd) as unpriced
        {WITH_RESPONSES}
        group by t.run_id{point} order by r.created_at, t.run_id{point}
        """,
        scope,
    )
    for r in rows:
        recorded, unpriced = r.pop("recorded_cost"), r.pop("unpriced")
        r["cost"] = (
            prices.cost(r["model"], r["input_tokens"], r["cached_tokens"], r["output_tokens"])
            if repriced or unpriced
            else recorded
        )
    return rows


def programs(db, scope: Scope) -> list[dict]:
    """Each finished trial's selected attempt and its program (None: no program)."""
    return _query(
        db,
        f"""
        select t.run_id, r.provider, r.model, t.fn, t.length, t.trial, t.selected_attempt,
          t.attempts_made, t.val_acc, t.test_acc, t.stopped_early, a.failure_class,
          e.status as eval_status, p.code
        from trials t
        join runs r on r.run_id = t.run_id
        left join attempts a on a.trial_id = t.id and a.attempt = t.selected_attempt
        left join evaluations e on e.attempt_id = a.id
        left join programs p on p.hash = a.program_hash
        where t.status = 'done' and not r.dry_run and {scoped()}
        order by r.created_at, t.run_id, t.fn, t.length, t.trial
        """,
        scope,
    )


def gate(runs: list[dict], compile_rows: list[dict], audit: list[dict]) -> dict:
    """The research-standard gate, per run and overall: no input shared between the
    splits of any dataset the run used, and a compile-ok rate of at least 0.99.
    A run with no answered attempt (a dry run) has no verdict ("n/a")."""
    rates = {r["run_id"]: r["compile_ok_rate"] for r in compile_rows}
    verdicts = []
    for run in runs:
        leaked = sum(d["input_overlap"] for d in audit if run["run_id"] in d["runs"])
        rate = rates.get(run["run_id"])
        reasons = []
        if leaked:
            reasons.append(f"{leaked} inputs shared between splits")
        if rate is None:
            reasons.append("no answered attempt to judge")
        elif rate < GATE_COMPILE_OK:
            reasons.append(f"compile-ok rate {rate:.3f} < {GATE_COMPILE_OK}")
        failed = leaked > 0 or (rate is not None and rate < GATE_COMPILE_OK)
        verdict = "fail" if failed else "n/a" if rate is None else "pass"
        verdicts.append(
            {
                "run_id": run["run_id"],
                "verdict": verdict,
                "input_leakage": leaked,
                "compile_ok_rate": rate,
                "reasons": reasons,
            }
        )
    kinds = {v["verdict"] for v in verdicts}
    overall = "fail" if "fail" in kinds else "pass" if "pass" in kinds else "n/a"
    return {"verdict": overall, "runs": verdicts, "threshold": GATE_COMPILE_OK}
