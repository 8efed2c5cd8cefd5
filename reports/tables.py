"""The report's tables: their columns, headings and how each value is written.

The HTML page and the text readout both use these, so they say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reports.analyses import proposer, task_label

NUMERIC = ("int", "acc", "delta", "cost", "ci")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # text, long (wraps), time, int, acc, delta, cost, ci, bool
    help: str = ""
    get: Callable[[dict], object] | None = None
    show: Callable[[dict], str] | None = None  # the text, when it says more than the value

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC

    def value(self, row: dict):
        if self.get:
            return self.get(row)
        if self.kind == "ci":
            return row[f"{self.key}_ci_low"], row[f"{self.key}_ci_high"]
        return row[self.key]

    def sort_key(self, row: dict):
        """What the HTML table sorts by: the number itself, not its text."""
        value = self.value(row)
        return value[0] if self.kind == "ci" else value

    def text(self, row: dict) -> str:
        return self.show(row) if self.show else fmt(self.value(row), self.kind)


def fmt(value, kind: str = "text") -> str:
    if kind == "ci":
        low, high = value
        return "n/a" if low is None else f"[{low:.3f}, {high:.3f}]"
    if value is None:
        return "unknown" if kind == "cost" else ""
    if kind == "int":
        return f"{value:,}"
    if kind == "acc":
        return f"{value:.3f}"
    if kind == "delta":
        return f"{value:+.3f}"
    if kind == "cost":
        return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "time":
        return value[:19].replace("T", " ")
    return str(value)


def sizes(row: dict) -> str:
    return f"{row['train_size']}/{row['val_size']}/{row['test_size']}"


def setting(row: dict) -> str:
    """A leaderboard row's setting in a few words: what sets apart runs of one proposer."""
    return f"{row['setting'] or '-'}, {row['attempts']} attempts, {sizes(row)}"


def _spread(split: str, label: str = "", **helps: str) -> list[Column]:
    """The mean, std, min, max and 95% CI of a split's accuracy (``{split}_mean``...),
    headed ``label`` and the statistic; ``helps`` gives a statistic its tooltip."""
    stats = [
        Column(f"{split}_{s}", f"{label}{s}", "acc", helps.get(s, "")) for s in ("mean", "std", "min", "max")
    ]
    return [*stats, Column(split, f"{label}95% CI", "ci", helps.get("ci", ""))]


PROPOSER = Column("proposer", "proposer", get=proposer, help="provider/model")
RUN = Column("run_id", "run")
TASK = Column("fn", "task", get=task_label, help="task id and name")
LENGTH = Column("length", "L", "int")
TRIALS = Column("trials", "trials", "int", "finished trials")

RUNS = [
    RUN,
    Column("status", "status"),
    PROPOSER,
    Column("seed", "seed"),
    Column("reasoning_effort", "effort"),
    Column("sizes", "train/val/test", get=sizes),
    Column("attempts_requested", "attempts", "int"),
    Column("num_trials", "trials/point", "int"),
    Column("grid_points", "grid points", "int"),
    Column("trials_done", "trials done", "int"),
    Column("attempts", "attempts made", "int"),
    Column("created_at", "started (UTC)", "time"),
    Column("finished_at", "finished", "time"),
    Column("version", "llm-pv"),
]
GATE = [
    RUN,
    Column("verdict", "verdict"),
    Column("input_leakage", "inputs shared", "int", "inputs found in two splits, all datasets"),
    Column("compile_ok_rate", "compile-ok rate", "acc"),
    Column("reasons", "why", "long", get=lambda r: "; ".join(r["reasons"])),
]
GRID_POINTS = [
    RUN,
    PROPOSER,
    Column("seed", "seed"),
    TASK,
    LENGTH,
    TRIALS,
    *_spread(
        "test",
        "test ",
        mean="selected (by val) test accuracy, mean over trials",
        std="population std over trials",
        ci="t interval of the mean, clipped to [0, 1]",
    ),
    *_spread("val", "val "),
    Column("gap_mean", "val-test gap", "delta", "mean of val minus test accuracy"),
    Column("solved", "solved", "int", "trials that reached val accuracy 1.0"),
    Column("attempts_mean", "attempts", "acc", "mean attempts made per trial"),
]
# What a leaderboard row is of: a task, a length and a proposer's setting.
SETTING = [
    TASK,
    LENGTH,
    PROPOSER,
    Column("setting", "setting", "long", "reasoning effort, or an offline proposer's settings"),
    Column("attempts", "attempts", "int"),
    Column("sizes", "train/val/test", get=sizes),
]
LEADERBOARD = [
    *SETTING,
    Column("runs", "runs", "int"),
    TRIALS,
    Column("test_mean", "test mean", "acc"),
    Column("test_std", "test std", "acc"),
    Column("test", "test 95% CI", "ci"),
    Column("val_mean", "val mean", "acc"),
    Column("gap_mean", "val-test gap", "delta"),
    Column("solved", "solved", "int"),
    Column(
        "capped",
        "clock-capped",
        "int",
        "attempts an offline proposer's safety cap on the clock stopped: they depend on the machine",
    ),
]
SEED_SPREAD = [
    *SETTING,
    Column("seeds", "seeds", "int"),
    Column("seed_list", "seed values"),
    *_spread(
        "test", mean="mean over seeds of each run's mean test accuracy", std="population std over seeds"
    ),
]
LEAKAGE = [
    TASK,
    LENGTH,
    Column("base_seed", "seed"),
    Column("fingerprint", "fingerprint", get=lambda r: r["fingerprint"][:12]),
    *[Column(f"{s}_rows", f"{s} rows", "int") for s in ("train", "val", "test")],
    *[
        Column(f"{s}_duplicates", f"dup {s}", "int", f"rows minus distinct inputs in {s}")
        for s in ("train", "val", "test")
    ],
    *[
        Column(f"input_{a}_{b}", f"input {a}/{b}", "int", f"distinct inputs in both {a} and {b}")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test"))
    ],
    *[
        Column(f"line_{a}_{b}", f"line {a}/{b}", "int", f"identical input and label in {a} and {b}")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test"))
    ],
    Column("clean", "clean", "bool", "no input shared between splits"),
]
RAW_VS_CLEAN = [
    TASK,
    LENGTH,
    PROPOSER,
    TRIALS,
    Column("raw_test_mean", "raw test mean", "acc", "every trial"),
    Column("clean_trials", "clean trials", "int", "trials on leakage-clean datasets"),
    Column("clean_test_mean", "clean test mean", "acc"),
]
COMPILE = [
    RUN,
    PROPOSER,
    Column("attempts", "attempts", "int"),
    Column("call_failed", "call failed", "int"),
    Column("answered", "answered", "int", "the proposer replied"),
    Column("extract_failed", "no program", "int", "no program could be extracted"),
    Column("evaluated", "evaluated", "int"),
    Column("compile_ok", "compiled", "int"),
    Column("compile_ok_rate", "compile-ok rate", "acc", "compiled / answered"),
    Column("ran_ok", "ran every row", "int"),
    Column("with_row_errors", "with row errors", "int", "some rows raised"),
    Column("pending", "not yet evaluated", "int"),
]
FAILURES = [
    RUN,
    PROPOSER,
    Column("stage", "stage"),
    Column("class", "failure class"),
    Column("attempts", "attempts", "int"),
]
ERRORS = [
    Column("message", "message", "long"),
    Column("source", "source"),
    Column("occurrences", "times", "int"),
    Column("runs", "runs", "int"),
]
IMPROVEMENT = [
    RUN,
    PROPOSER,
    TRIALS,
    Column("first_test_mean", "attempt 1 test", "acc"),
    Column("test_mean", "selected test", "acc", "chosen by validation accuracy"),
    Column("improvement_selected", "gain (selected)", "delta"),
    Column(
        "oracle_test_mean",
        "test-oracle test",
        "acc",
        "chosen with the test labels: an upper bound, not a result",
    ),
    Column("improvement_oracle", "gain (test-oracle)", "delta"),
    Column("gap_mean", "val-test gap", "delta"),
]
SOLVE = [
    RUN,
    PROPOSER,
    Column(
        "solved_at",
        "solved at attempt",
        get=lambda r: r["solved_at"] if r["solved_at"] is not None else "unsolved",
    ),
    TRIALS,
]
_TOKEN_COLUMNS = [
    Column("calls", "calls", "int", "attempts with a reply"),
    Column("input_tokens", "input", "int", "includes cached"),
    Column("cached_tokens", "cached", "int"),
    Column("output_tokens", "output", "int", "includes reasoning"),
    Column("reasoning_tokens", "reasoning", "int"),
    Column("cost", "cost (USD)", "cost", "from the price table; unknown when the model has no price"),
]
TOKENS_RUNS = [RUN, PROPOSER, Column("attempts", "attempts", "int"), *_TOKEN_COLUMNS]
TOKENS_POINTS = [RUN, PROPOSER, TASK, LENGTH, *_TOKEN_COLUMNS]
RULE = Column(
    "rule", "rule", help="task: the task's rule at the evaluation length; extended: the training rule kept"
)
SET = Column(
    "set_kind",
    "set",
    help="balanced, exhaustive (every input), sample (uniform) or population (source table)",
)
TRAIN_LENGTH = Column("train_length", "train L", "int")
EVAL_LENGTH = Column("eval_length", "eval L", "int")
GENERALISATION = [
    TASK,
    PROPOSER,
    RULE,
    SET,
    TRAIN_LENGTH,
    EVAL_LENGTH,
    Column("programs", "programs", "int", "selected programs verified"),
    Column("accuracy_mean", "mean accuracy", "acc"),
    Column("accuracy_min", "min accuracy", "acc"),
    Column("exact", "exact", "int", "right on every input there is (exhaustive, population)"),
    Column("refuted", "refuted", "int", "a counterexample was found"),
    Column("failed", "failed", "int", "crashed, timed out or ran out of memory"),
]
RECOVERY = [
    TASK,
    PROPOSER,
    Column("programs", "programs", "int", "selected programs verified"),
    Column(
        "checked", "checked", "int", "with every input (or the whole source table) at the training length"
    ),
    Column("exact", "exact rule", "int", "right on every one of them"),
    Column("exact_rate", "recovery rate", "acc", "exact / checked; empty when none could be checked"),
    Column("refuted", "refuted anywhere", "int", "a counterexample to the task's rule at some length"),
]
COUNTEREXAMPLES = [
    RUN,
    TASK,
    PROPOSER,
    Column("trial", "trial", "int"),
    TRAIN_LENGTH,
    EVAL_LENGTH,
    SET,
    RULE,
    Column("input", "input", "long"),
    Column("expected", "expected"),
    Column("got", "got", help="empty: the row raised or was not reached"),
    Column("status", "status"),
]


# The tables `synth report --table NAME` writes alone: their columns and the Report field
# that holds their rows.
TABLES = {
    "leaderboard": (LEADERBOARD, "leaderboard"),
    "grid-points": (GRID_POINTS, "grid_points"),
    "improvement": (IMPROVEMENT, "run_results"),
    "seed-spread": (SEED_SPREAD, "seed_spread"),
    "raw-vs-clean": (RAW_VS_CLEAN, "raw_vs_clean"),
    "leakage": (LEAKAGE, "leakage"),
    "compile": (COMPILE, "compile"),
    "tokens": (TOKENS_RUNS, "tokens_runs"),
    "generalisation": (GENERALISATION, "generalisation"),
    "recovery": (RECOVERY, "recovery"),
}
# The study report's tables (reports.study_view.study_tables), which `synth report --study
# NAME --table NAME` writes alone; seed-spread and generalisation are the study's own there.
STUDY_TABLES = ("study", "robustness", "seed-spread", "paired", "wins", "cost", "generalisation")
