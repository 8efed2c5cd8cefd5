"""A study's tables written out: Markdown ready to paste into a paper, any one of them
alone in Markdown, LaTeX or CSV (reports.table_formats), and the rows the HTML page shows
(reports/templates/_study.html.j2)."""

from __future__ import annotations

from reports.errors import ReportError
from reports.study import StudyReport
from reports.table_formats import RENDERERS, markdown_table, to_csv
from reports.tables import Column, fmt

TASK = Column("fn", "task")
LENGTH = Column("length", "L", "int")
ROBUSTNESS = [
    Column("system", "system"),
    TASK,
    LENGTH,
    Column("prompts", "prompts", "int"),
    Column("mean", "mean", "acc", "mean over prompt wordings of each wording's mean test accuracy"),
    Column("std", "std", "acc", "population std over prompt wordings"),
]
SEEDS = [*ROBUSTNESS[:3], Column("seeds", "seeds", "int"), *ROBUSTNESS[4:5], Column("std", "std", "acc")]
PAIRED = [
    Column("a", "system A"),
    Column("b", "system B"),
    TASK,
    LENGTH,
    Column("pairs", "paired trials", "int", "same task, length, seed, trial and prompt"),
    Column("diff_mean", "A - B", "delta", "mean difference of selected test accuracy"),
    Column("diff", "95% CI", "ci", "paired bootstrap over trials (2,000 resamples)"),
]
DUELS = [
    Column("a", "system A"),
    Column("b", "system B"),
    Column("pairs", "paired trials", "int"),
    Column("wins", "A wins", "int"),
    Column("ties", "ties", "int"),
    Column("losses", "A loses", "int"),
]
GENERALISATION = [
    Column("system", "system"),
    TASK,
    Column("length", "L", "int", "training length"),
    Column("test_mean", "test acc", "acc", "mean selected test accuracy at L (the study table's figure)"),
    Column("eval_length", "eval L", "int", "length the programs were verified at"),
    Column("set_kind", "set", help="balanced, exhaustive, sample or population (docs/verify.md)"),
    Column("programs", "programs", "int", "selected programs verified on this set"),
    Column("accuracy", "accuracy", "acc", "mean accuracy on the set, under the task's own rule"),
    Column("exact", "exact", "int", "programs right on every input of a complete set"),
    Column("refuted", "refuted", "int", "programs with a counterexample in the set"),
]
COSTS = [
    Column("system", "system"),
    Column("runs", "runs", "int"),
    Column("calls", "calls", "int"),
    Column("input_tokens", "input tokens", "int"),
    Column("output_tokens", "output tokens", "int"),
    Column("cost", "cost (USD)", "cost", "unknown when a model has no price"),
]


CELL_NOTE = (
    "Each cell: mean over the system's trials (all prompts and seeds), its 95% CI, "
    "solved/trials; the best of each row in bold. Where `synth verify` checked the selected "
    "programs: how many of those checked on every input at L are exact, and their mean "
    "accuracy on the balanced set at the longest length verified."
)


def cell_text(cell: dict | None) -> str:
    """Mean selected test accuracy, its 95% CI, and solved/trials: ``0.950 [0.900, 1.000]
    8/8``; then, where verified, exact/checked and the accuracy at the longest length:
    ``; exact 2/2, L=200 0.998``."""
    if cell is None:
        return ""
    text = (
        f"{cell['mean']:.3f} {fmt((cell['ci_low'], cell['ci_high']), 'ci')} {cell['solved']}/{cell['trials']}"
    )
    verified = cell.get("verified", {})
    parts = [f"exact {verified['exact']}/{verified['checked']}"] if "checked" in verified else []
    if "longest_length" in verified:
        parts.append(f"L={verified['longest_length']} {verified['longest_accuracy']:.3f}")
    return text + "; " + ", ".join(parts) if parts else text


def study_columns(systems: list[str]) -> list[Column]:
    """The study table's: task, L and a column per system, valued by the cell's mean (the
    best of a row is the highest) and written as cell_text."""
    return [
        TASK,
        LENGTH,
        *(
            Column(
                s,
                s,
                "acc",
                get=lambda row, s=s: row["cells"][s]["mean"] if s in row["cells"] else None,
                show=lambda row, s=s: cell_text(row["cells"].get(s)),
            )
            for s in systems
        ),
    ]


def study_tables(study: StudyReport) -> dict[str, tuple[str, list[Column], list[dict]]]:
    """Every table of the study by its name (reports.tables.STUDY_TABLES): its title, its
    columns and its rows; generalisation only once programs were verified."""
    tables = {
        "study": (
            f"Study {study.name}: selected test accuracy by system",
            study_columns(study.systems),
            study.table,
        ),
        "robustness": ("Prompt robustness: mean and std over prompt wordings", ROBUSTNESS, study.robustness),
        "seed-spread": ("Seed spread: mean and std over seeds", SEEDS, study.seeds),
        "paired": ("Paired comparisons on identical datasets", PAIRED, study.paired),
        "wins": ("Wins, ties and losses over paired trials", DUELS, study.duels),
        "cost": ("Tokens and cost per system", COSTS, study.costs),
    }
    if study.generalisation:
        means = {(r["fn"], r["length"], s): c["mean"] for r in study.table for s, c in r["cells"].items()}
        rows = [
            {**g, "test_mean": means.get((g["fn"], g["length"], g["system"]))} for g in study.generalisation
        ]
        tables["generalisation"] = (
            "Generalisation per system: the selected programs under synth verify",
            GENERALISATION,
            rows,
        )
    return tables


def sections(study: StudyReport) -> dict[str, tuple[list[Column], list[dict]]]:
    """The study's tables after the main one, by title."""
    return {
        title: (columns, rows)
        for name, (title, columns, rows) in study_tables(study).items()
        if name != "study"
    }


def render_study_table(study: StudyReport, name: str, fmt: str = "md") -> str:
    """The study's table ``name`` alone in ``fmt`` (md, latex, csv), the best of each row
    of the study table marked; the study table's CSV is study_csv."""
    tables = study_tables(study)
    if name not in tables:
        raise ReportError(
            f"study {study.name!r} has no {name} table: none of its selected programs was "
            "verified (synth verify RUN_ID...)"
        )
    if name == "study" and fmt == "csv":
        return study_csv(study)
    _, columns, rows = tables[name]
    return RENDERERS[fmt](columns, rows, study.systems if name == "study" else [])


def study_markdown(study: StudyReport) -> str:
    """The study's tables as Markdown, the study table first with a note on its cells."""
    tables = study_tables(study)
    title, _, _ = tables.pop("study")
    main = f"## {title}\n\n{CELL_NOTE}\n\n{render_study_table(study, 'study').rstrip()}"
    return main + "".join(
        f"\n\n## {title}\n\n{markdown_table(columns, rows)}" for title, columns, rows in tables.values()
    )


def _figure(system: str, key: str, kind: str, verified: bool = False) -> Column:
    """One figure of a system's cell (``verified``: of `synth verify`'s), for the CSV."""

    def get(row: dict):
        cell = row["cells"].get(system, {})
        return (cell.get("verified", {}) if verified else cell).get(key)

    return Column(f"{system} {key}", f"{system} {key}", kind, get=get)


STATS = {"mean": "acc", "ci_low": "acc", "ci_high": "acc", "solved": "int", "trials": "int"}
VERIFIED = {"exact": "int", "checked": "int", "longest_length": "int", "longest_accuracy": "acc"}


def study_csv(study: StudyReport) -> str:
    """The study table, one row per task and length: five columns per system, then four
    per system of `synth verify`'s figures (empty where not verified), then the best."""
    columns = [
        TASK,
        Column("length", "length", "int"),
        *(_figure(s, k, kind) for s in study.systems for k, kind in STATS.items()),
        *(_figure(s, k, kind, verified=True) for s in study.systems for k, kind in VERIFIED.items()),
        Column("best", "best", get=lambda row: " ".join(row["best"])),
    ]
    return to_csv(columns, study.table, [])
