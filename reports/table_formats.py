"""One of the report's tables alone, for a paper or a spreadsheet: Markdown, LaTeX
(booktabs) or CSV, and the leaderboard pivoted as papers print it (a row per task and
length, a column per proposer and setting), the best of each row marked.

The tables are the report's own (reports.tables): the same columns, headings and digits.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable

from reports.analyses import Report, proposer
from reports.errors import ReportError
from reports.tables import LENGTH, STUDY_TABLES, TABLES, TASK, Column, setting

FORMATS = ("md", "latex", "csv")


def render_table(report: Report, name: str, fmt: str = "md", pivot: bool = False) -> str:
    """The table ``name`` (a key of reports.tables.TABLES) in ``fmt``; ``pivot`` (the
    leaderboard only): test means, a row per task and length, a column per system."""
    check_table(name, fmt, pivot)
    columns, field = TABLES[name]
    rows, compared = getattr(report, field), []
    if pivot:
        columns, rows, compared = pivot_leaderboard(rows, [proposer(run) for run in report.runs])
    return RENDERERS[fmt](columns, rows, compared)


def check_table(name: str, fmt: str, pivot: bool, study: bool = False) -> None:
    """Refuse, before any work, a table, format or pivot there is not: a study's tables
    (reports.tables.STUDY_TABLES) with ``study``, the runs' (TABLES) without."""
    if study and name not in STUDY_TABLES:
        why = "a table of runs: drop --study" if name in TABLES else "not a table"
        raise ReportError(f"{name!r} is {why}; a study's tables are {', '.join(STUDY_TABLES)}")
    if not study and name not in TABLES:
        why = "a study's table: add --study NAME" if name in STUDY_TABLES else "not a table"
        raise ReportError(f"{name!r} is {why}; the runs' tables are {', '.join(TABLES)}")
    if fmt not in FORMATS:
        raise ReportError(f"unknown table format {fmt!r}: use {', '.join(FORMATS)}")
    if pivot and (study or name != "leaderboard"):
        raise ReportError(f"only the leaderboard can be pivoted, not {name!r}")


def pivot_leaderboard(rows: list[dict], order: list[str]) -> tuple[list[Column], list[dict], list[str]]:
    """The leaderboard's test means as a row per task and length and a column per system
    (a proposer, with its setting when it ran under several), in the ``order`` of the
    proposers' runs; returns the columns, the rows and the keys of the columns compared
    within a row."""
    settings: dict[str, set] = {}
    for row in rows:
        settings.setdefault(proposer(row), set()).add(setting(row))
    system = {
        id(row): proposer(row) + (f" ({setting(row)})" if len(settings[proposer(row)]) > 1 else "")
        for row in rows
    }
    by_run = sorted(rows, key=lambda row: order.index(proposer(row)))
    systems = list(dict.fromkeys(system[id(row)] for row in by_run))
    pivoted: dict[tuple, dict] = {}
    for row in rows:
        point = pivoted.setdefault(
            (row["fn"], row["length"]),
            {"fn": row["fn"], "target": row.get("target"), "length": row["length"]},
        )
        point[system[id(row)]] = row["test_mean"]
    columns = [TASK, LENGTH, *(Column(s, s, "acc", get=lambda r, s=s: r.get(s)) for s in systems)]
    return columns, list(pivoted.values()), systems


def _best(row: dict, columns: list[Column], compared: list[str]) -> set[str]:
    """The keys of the compared columns holding the row's highest value (ties: all, as
    means of the same trials summed in another order round apart)."""
    values = {c.key: c.value(row) for c in columns if c.key in compared and c.value(row) is not None}
    top = max(values.values(), default=None)
    return {k for k, v in values.items() if abs(v - top) < 1e-9}


def _cells(
    columns: list[Column], row: dict, compared: list[str], mark: Callable[[str], str], escape
) -> list[str]:
    best = _best(row, columns, compared)
    return [mark(escape(c.text(row))) if c.key in best else escape(c.text(row)) for c in columns]


def markdown_table(columns: list[Column], rows: list[dict], cells=None) -> str:
    """A Markdown table; ``cells(row)`` gives a row's cells as text (default: as the
    columns write them)."""
    if not rows:
        return "(none)"
    lines = [
        "| " + " | ".join(c.label for c in columns) + " |",
        "|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|",
    ]
    for row in rows:
        texts = cells(row) if cells else [c.text(row) for c in columns]
        lines.append("| " + " | ".join(t.replace("|", "\\|").replace("\n", " ") for t in texts) + " |")
    return "\n".join(lines)


def to_markdown(columns: list[Column], rows: list[dict], compared: list[str]) -> str:
    return (
        markdown_table(columns, rows, lambda row: _cells(columns, row, compared, lambda x: f"**{x}**", str))
        + "\n"
    )


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "·": r"$\cdot$",
}
LATEX_RE = re.compile("|".join(map(re.escape, LATEX_SPECIAL)))


def latex_escape(text: str) -> str:
    return LATEX_RE.sub(lambda m: LATEX_SPECIAL[m.group()], text)


def to_latex(columns: list[Column], rows: list[dict], compared: list[str]) -> str:
    """A booktabs tabular (``\\usepackage{booktabs}``); the best of each row in bold."""
    align = "".join("r" if c.numeric else "l" for c in columns)
    lines = [
        "% needs \\usepackage{booktabs}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(latex_escape(c.label) for c in columns) + r" \\",
        "\\midrule",
        *(
            " & ".join(_cells(columns, row, compared, lambda x: f"\\textbf{{{x}}}", latex_escape)) + r" \\"
            for row in rows
        ),
        "\\bottomrule",
        "\\end{tabular}",
    ]
    return "\n".join(lines) + "\n"


def to_csv(columns: list[Column], rows: list[dict], compared: list[str]) -> str:
    """Numbers at full precision (a CI as two columns), text as the report writes it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            h
            for c in columns
            for h in ((f"{c.label} low", f"{c.label} high") if c.kind == "ci" else (c.label,))
        ]
    )
    for row in rows:
        writer.writerow(
            [
                v
                for c in columns
                for v in (c.value(row) if c.kind == "ci" else (c.value(row) if c.numeric else c.text(row),))
            ]
        )
    return out.getvalue()


RENDERERS = {"md": to_markdown, "latex": to_latex, "csv": to_csv}
