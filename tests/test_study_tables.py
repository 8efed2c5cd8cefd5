"""`synth report --study NAME --table T`: each of a study's tables alone, in Markdown,
LaTeX (read by its structure) and CSV (read back and checked against the trials), and
the options that do not go with it. The study (tests/study_fixtures.py): a system
answering parity (right on fn_a) against one answering a constant, 2 wordings x 2 seeds
x 2 trials each."""

import csv
import io
import sqlite3
import statistics

import pytest
from helpers import latex_rows, one_line_error, run_cli, snapshot
from study_fixtures import study_file

from reports.build import build_table
from reports.tables import STUDY_TABLES
from synth.cli import STUDY_TABLES as CLI_STUDY_TABLES


def table(db, name: str, fmt: str = "md") -> str:
    result = run_cli("report", "--study", "duel", "--db", db, "--table", name, "--format", fmt)
    assert result.exit_code == 0, result.output
    return result.stdout


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_command_offers_every_study_table():
    assert list(CLI_STUDY_TABLES) == list(STUDY_TABLES)


def test_the_study_table_in_latex_bolds_the_best_of_each_row(duel_db):
    text = table(duel_db, "study", "latex")
    columns, rows = latex_rows(text)
    assert text.startswith("% needs \\usepackage{booktabs}") and columns == 4
    assert rows[0] == ["task", "L", "good", "weak"]
    (row,) = rows[1:]
    assert row[:3] == ["fn\\_a", "20", "\\textbf{1.000 [1.000, 1.000] 8/8}"]
    assert "textbf" not in row[3] and row[3].endswith(" 0/8"), row  # a constant never solves


# The headings of each smaller table, as LaTeX writes them (`%` escaped).
HEADINGS = {
    "robustness": ["system", "task", "L", "prompts", "mean", "std"],
    "seed-spread": ["system", "task", "L", "seeds", "mean", "std"],
    "paired": ["system A", "system B", "task", "L", "paired trials", "A - B", "95\\% CI"],
    "wins": ["system A", "system B", "paired trials", "A wins", "ties", "A loses"],
    "cost": ["system", "runs", "calls", "input tokens", "output tokens", "cost (USD)"],
}


def test_every_smaller_study_table_in_latex(duel_db):
    for name, headings in HEADINGS.items():
        columns, rows = latex_rows(table(duel_db, name, "latex"))
        assert rows[0] == headings, name
        assert len(rows) > 1 and all(len(row) == columns for row in rows), (name, rows)
        assert not any("textbf" in cell for row in rows for cell in row), name  # only the study table's
    _, (_, good, weak) = latex_rows(table(duel_db, "robustness", "latex"))
    assert good == ["good", "fn\\_a", "20", "2", "1.000", "0.000"] and weak[:4] == [
        "weak",
        "fn\\_a",
        "20",
        "2",
    ]


def trial_means(db_path, *by: str) -> dict[tuple, float]:
    """Mean selected test accuracy of the study's finished trials, per values of ``by``."""
    keys = ", ".join(f"c.{column}" for column in by)
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            f"select {keys}, avg(t.test_acc) from study_runs c join trials t on t.run_id = c.run_id "
            f"where c.study = 'duel' and t.status = 'done' group by {keys}"
        ).fetchall()
    return {tuple(row[:-1]): row[-1] for row in rows}


def test_study_tables_in_csv_hold_the_trials_figures(duel_db, servers):
    study = table(duel_db, "study", "csv")
    assert study == run_cli("report", "--study", "duel", "--db", duel_db, "--format", "csv").stdout
    (row,) = read_csv(study)
    means = {system: mean for (system,), mean in trial_means(duel_db, "system").items()}
    assert float(row["good mean"]) == means["good"] == 1.0
    assert float(row["weak mean"]) == pytest.approx(means["weak"])
    assert (row["good solved"], row["weak trials"], row["best"]) == ("8", "8", "good")
    assert float(row["weak ci_low"]) <= float(row["weak mean"]) <= float(row["weak ci_high"])

    robustness = {r["system"]: r for r in read_csv(table(duel_db, "robustness", "csv"))}
    weak = [
        mean for (system, _), mean in trial_means(duel_db, "system", "prompt").items() if system == "weak"
    ]
    assert robustness["weak"]["prompts"] == "2"
    assert float(robustness["weak"]["mean"]) == pytest.approx(statistics.fmean(weak))
    assert float(robustness["weak"]["std"]) == pytest.approx(statistics.pstdev(weak))

    (paired,) = read_csv(table(duel_db, "paired", "csv"))
    assert (paired["system A"], paired["system B"], paired["paired trials"]) == ("good", "weak", "8")
    diff = float(paired["A - B"])
    assert diff == pytest.approx(means["good"] - means["weak"])  # every trial has its pair
    assert float(paired["95% CI low"]) <= diff <= float(paired["95% CI high"])
    (wins,) = read_csv(table(duel_db, "wins", "csv"))
    assert int(wins["A wins"]) + int(wins["ties"]) + int(wins["A loses"]) == 8

    good, weak = servers
    costs = {r["system"]: r for r in read_csv(table(duel_db, "cost", "csv"))}
    assert (costs["good"]["runs"], costs["good"]["calls"]) == ("4", str(len(good.requests)))
    assert costs["weak"]["calls"] == str(len(weak.requests))


def test_a_study_table_from_python_and_into_a_file(duel_db, tmp_path):
    assert build_table(duel_db, "seed-spread", study="duel") == table(duel_db, "seed-spread")
    md = build_table(duel_db, "study", study="duel")
    assert md.startswith("| task | L | good | weak |\n|---|---:|---:|---:|\n")
    assert "| fn_a | 20 | **1.000 [1.000, 1.000] 8/8** |" in md
    out = tmp_path / "study.tex"
    result = run_cli(
        "report", "--study", "duel", "--db", duel_db, "--table", "study", "--format", "latex", "-o", out
    )
    assert result.exit_code == 0 and result.stdout == "" and f"written to {out}" in result.stderr
    assert out.read_text() == table(duel_db, "study", "latex")


def test_the_generalisation_table_once_verified(study_env, servers):
    study_file(study_env, servers, lengths=[8])  # every input of L=8 checked in a moment
    assert run_cli("study", "run", "study.yaml", "--db", "s.db").exit_code == 0
    one_line_error(
        run_cli("report", "--study", "duel", "--db", "s.db", "--table", "generalisation"),
        "study 'duel' has no generalisation table",
        "synth verify",
    )
    verified = run_cli(
        "verify", "duel.good.default.s1", "duel.weak.default.s1", "--lengths", "8", "16", "--db", "s.db"
    )
    assert verified.exit_code == 0, verified.output
    assert all(build_table("s.db", name, fmt="csv", study="duel") for name in STUDY_TABLES)  # each one there
    columns, rows = latex_rows(table("s.db", "generalisation", "latex"))
    assert rows[0][:3] == ["system", "task", "L"] and all(len(row) == columns for row in rows)
    found = {
        (r["system"], r["eval L"], r["set"]): r for r in read_csv(table("s.db", "generalisation", "csv"))
    }
    exhaustive = found["good", "8", "exhaustive"], found["weak", "8", "exhaustive"]
    assert [(r["programs"], r["exact"], r["refuted"]) for r in exhaustive] == [
        ("2", "2", "0"),
        ("2", "0", "2"),
    ]
    assert float(found["good", "16", "balanced"]["accuracy"]) == 1.0
    assert float(found["good", "8", "exhaustive"]["test acc"]) == 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--table", "study"], "'study' is a study's table: add --study NAME"),
        (["--table", "robustness", "--format", "latex"], "add --study NAME"),
        (["--study", "duel", "--table", "leaderboard"], "'leaderboard' is a table of runs: drop --study"),
        (["--study", "duel", "--table", "study", "--pivot"], "only the leaderboard can be pivoted"),
    ],
)
def test_a_table_with_the_wrong_study_option_is_one_line(workdir, args, message):
    before = snapshot(workdir)
    one_line_error(run_cli("report", "--db", "s.db", *args), message)
    assert snapshot(workdir) == before, "refused before the database is opened"


def test_an_unknown_study_and_figures_of_a_study_are_refused(duel_db):
    one_line_error(
        run_cli("report", "--study", "nope", "--db", duel_db, "--table", "study"), "no study 'nope'"
    )
    figures = run_cli("report", "--study", "duel", "--db", duel_db, "--figures", "figs")
    assert figures.exit_code == 2 and "drop --study" in figures.stderr and "Traceback" not in figures.output
