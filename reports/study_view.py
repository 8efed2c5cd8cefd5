"""A study's tables written out: Markdown ready to paste into a paper, CSV, and the rows
the HTML page shows (reports/templates/_study.html.j2)."""

from __future__ import annotations

import csv
import io

from reports.study import StudyReport
from reports.tables import Column, fmt

ROBUSTNESS = [
    Column("system", "system"),
    Column("fn", "task"),
    Column("length", "L", "int"),
    Column("prompts", "prompts", "int"),
    Column("mean", "mean", "acc", "mean over prompt wordings of each wording's mean test accuracy"),
    Column("std", "std", "acc", "population std over prompt wordings"),
]
SEEDS = [*ROBUSTNESS[:3], Column("seeds", "seeds", "int"), *ROBUSTNESS[4:5], Column("std", "std", "acc")]
PAIRED = [
    Column("a", "system A"),
    Column("b", "system B"),
    Column("fn", "task"),
    Column("length", "L", "int"),
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
    Column("fn", "task"),
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


def sections(study: StudyReport) -> dict[str, tuple[list[Column], list[dict]]]:
    """The study's tables after the main one, titled (generalisation only once verified)."""
    tables = {
        "Prompt robustness: mean and std over prompt wordings": (ROBUSTNESS, study.robustness),
        "Seed spread: mean and std over seeds": (SEEDS, study.seeds),
        "Paired comparisons on identical datasets": (PAIRED, study.paired),
        "Wins, ties and losses over paired trials": (DUELS, study.duels),
        "Tokens and cost per system": (COSTS, study.costs),
    }
    if study.generalisation:
        means = {(r["fn"], r["length"], s): c["mean"] for r in study.table for s, c in r["cells"].items()}
        rows = [
            {**g, "test_mean": means.get((g["fn"], g["length"], g["system"]))} for g in study.generalisation
        ]
        tables["Generalisation per system: the selected programs under synth verify"] = (GENERALISATION, rows)
    return tables


def study_markdown(study: StudyReport, table) -> str:
    """The study's tables as Markdown; ``table(columns, rows)`` writes the smaller ones."""
    head = ["task", "L", *study.systems]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(study.systems)]
    for row in study.table:
        cells = [
            f"**{cell_text(row['cells'].get(s))}**" if s in row["best"] else cell_text(row["cells"].get(s))
            for s in study.systems
        ]
        lines.append("| " + " | ".join([row["fn"], str(row["length"]), *cells]) + " |")
    main = f"## Study {study.name}: selected test accuracy by system\n\n{CELL_NOTE}\n\n" + "\n".join(lines)
    rest = "".join(
        f"\n\n## {title}\n\n{table(columns, rows)}" for title, (columns, rows) in sections(study).items()
    )
    return main + rest


def study_csv(study: StudyReport) -> str:
    """The study table, one row per task and length: five columns per system, then four
    per system of `synth verify`'s figures (empty where not verified), then the best."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    stats = ("mean", "ci_low", "ci_high", "solved", "trials")
    verified = ("exact", "checked", "longest_length", "longest_accuracy")
    head = [f"{s} {k}" for s in study.systems for k in stats]
    head += [f"{s} {k}" for s in study.systems for k in verified]
    writer.writerow(["task", "length", *head, "best"])
    for row in study.table:
        cells = [row["cells"].get(s, {}) for s in study.systems]
        values = [c.get(k) for c in cells for k in stats] + [
            c.get("verified", {}).get(k) for c in cells for k in verified
        ]
        writer.writerow(
            [row["fn"], row["length"], *("" if v is None else v for v in values), " ".join(row["best"])]
        )
    return out.getvalue()
