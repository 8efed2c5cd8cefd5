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
COSTS = [
    Column("system", "system"),
    Column("runs", "runs", "int"),
    Column("calls", "calls", "int"),
    Column("input_tokens", "input tokens", "int"),
    Column("output_tokens", "output tokens", "int"),
    Column("cost", "cost (USD)", "cost", "unknown when a model has no price"),
]


def cell_text(cell: dict | None) -> str:
    """Mean selected test accuracy, its 95% CI, and solved/trials: ``0.950 [0.900, 1.000] 8/8``."""
    if cell is None:
        return ""
    return (
        f"{cell['mean']:.3f} {fmt((cell['ci_low'], cell['ci_high']), 'ci')} {cell['solved']}/{cell['trials']}"
    )


def sections(study: StudyReport) -> dict[str, tuple[list[Column], list[dict]]]:
    """The study's tables after the main one, titled."""
    return {
        "Prompt robustness: mean and std over prompt wordings": (ROBUSTNESS, study.robustness),
        "Seed spread: mean and std over seeds": (SEEDS, study.seeds),
        "Paired comparisons on identical datasets": (PAIRED, study.paired),
        "Wins, ties and losses over paired trials": (DUELS, study.duels),
        "Tokens and cost per system": (COSTS, study.costs),
    }


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
    main = (
        f"## Study {study.name}: selected test accuracy by system\n\nEach cell: mean over the "
        "system's trials (all prompts and seeds), its 95% CI, solved/trials; the best of each "
        "row in bold.\n\n" + "\n".join(lines)
    )
    rest = "".join(
        f"\n\n## {title}\n\n{table(columns, rows)}" for title, (columns, rows) in sections(study).items()
    )
    return main + rest


def study_csv(study: StudyReport) -> str:
    """The study table, one row per task and length, five columns per system."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    stats = ("mean", "ci_low", "ci_high", "solved", "trials")
    writer.writerow(["task", "length", *(f"{s} {k}" for s in study.systems for k in stats), "best"])
    for row in study.table:
        values = [row["cells"].get(s, {}).get(k) for s in study.systems for k in stats]
        writer.writerow(
            [row["fn"], row["length"], *("" if v is None else v for v in values), " ".join(row["best"])]
        )
    return out.getvalue()
