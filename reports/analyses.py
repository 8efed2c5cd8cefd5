"""The report's analyses: SQL over the runs of a scope, aggregated in SQLite; the accuracy
analyses pool the per-trial values one query gathers per grid point (reports.accuracy).

Each function takes the database and a :class:`Scope` and returns rows (dicts);
:func:`analyse_scope` runs them all in one read transaction, so a report is one
consistent snapshot even while a run writes. Accuracy analyses count finished trials of
runs that called a proposer (a dry run has no results); an attempt with no evaluation
scores 0, as in selection. "Proposer" is a run's provider and model, so offline
proposers are rows of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter

import sqlite_utils

from reports.accuracy import (
    EFFORT,
    attempts_to_solve,
    finished_points,
    leaderboard,
    point_results,
    progression,
    raw_vs_clean,
    run_results,
    seed_spread,
)
from reports.generalisation import counterexamples, generalisation, recovery
from reports.leakage import leakage_audit
from reports.scope import Scope, scoped
from reports.study import StudyReport, analyse_study
from tracker.prices import PriceTable

GATE_COMPILE_OK = 0.99
# Evaluation statuses that mean the program never ran: it did not compile or define f.
NOT_COMPILED = ("compile_error", "no_function")
TOP_ERRORS = 10

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
        tokens_runs, tokens_points = tokens(db, scope, prices, repriced)
        points = finished_points(db, scope)
        return Report(
            database=database,
            scope=scope,
            prices=prices,
            repriced=repriced,
            runs=runs,
            gate=gate(runs, compile_rows, audit),
            grid_points=point_results(points),
            run_results=run_results(points),
            leaderboard=leaderboard(points),
            seed_spread=seed_spread(points),
            leakage=audit,
            raw_vs_clean=raw_vs_clean(points, audit),
            compile=compile_rows,
            failure_classes=failure_classes(db, scope),
            errors=common_errors(db, scope),
            attempts_to_solve=attempts_to_solve(points),
            progression=progression(db, scope),
            tokens_runs=tokens_runs,
            tokens_points=tokens_points,
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


# What a run's token row sums over its grid points' rows.
SUMMED = (
    "attempts",
    "calls",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "recorded_cost",
    "unpriced",
)


def tokens(db, scope: Scope, prices: PriceTable, repriced: bool) -> tuple[list[dict], list[dict]]:
    """Token sums per run, and per run and grid point, and their cost: as recorded with
    each response, unless ``repriced`` (or some response was recorded without a cost:
    then from the price table). ``cost`` is None when the model has no price. One query
    per grid point, the runs' rows summed from them (two queries cost 0.2 s more)."""
    points = _query(
        db,
        f"""
        select t.run_id, r.provider, r.model, t.fn, t.length, count(*) as attempts, {TOKENS},
          coalesce(sum(s.cost_usd), 0) as recorded_cost,
          count(s.attempt_id) - count(s.cost_usd) as unpriced
        {WITH_RESPONSES}
        group by t.run_id, t.fn, t.length order by r.created_at, t.run_id, t.fn, t.length
        """,
        scope,
    )
    runs: dict[str, dict] = {}
    for point in points:
        run = runs.setdefault(
            point["run_id"],
            {k: point[k] for k in ("run_id", "provider", "model")} | dict.fromkeys(SUMMED, 0),
        )
        for k in SUMMED:
            run[k] += point[k]
    for r in [*runs.values(), *points]:
        recorded, unpriced = r.pop("recorded_cost"), r.pop("unpriced")
        r["cost"] = (
            prices.cost(r["model"], r["input_tokens"], r["cached_tokens"], r["output_tokens"])
            if repriced or unpriced
            else recorded
        )
    return list(runs.values()), points


def programs(db, scope: Scope) -> list[dict]:
    """Each finished trial's selected attempt and its program (None: no program), in
    report order (sorted here: SQLite sorted the rows with their programs' text)."""
    rows = _query(
        db,
        f"""
        select r.created_at, t.run_id, r.provider, r.model, t.fn, t.length, t.trial,
          t.selected_attempt, t.attempts_made, t.val_acc, t.test_acc, t.stopped_early,
          a.failure_class, e.status as eval_status, p.code
        from trials t
        join runs r on r.run_id = t.run_id
        left join attempts a on a.trial_id = t.id and a.attempt = t.selected_attempt
        left join evaluations e on e.attempt_id = a.id
        left join programs p on p.hash = a.program_hash
        where t.status = 'done' and not r.dry_run and {scoped()}
        """,
        scope,
    )
    rows.sort(key=itemgetter("created_at", "run_id", "fn", "length", "trial"))
    for row in rows:
        del row["created_at"]
    return rows


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
