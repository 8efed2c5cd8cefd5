"""The report's last mile to a paper: one table alone (Markdown, LaTeX checked by its
structure, CSV), the leaderboard pivoted, and every chart as SVG, PNG and PDF files."""

import csv
import io
import struct
import xml.etree.ElementTree as ET

import pytest
from helpers import latex_rows, one_line_error, run_cli

from reports.build import build_figures
from reports.charts import CHARTS
from reports.tables import TABLES
from synth.cli import REPORT_TABLES

RUNS = ["r1", "r2", "r3"]  # openai/gpt-5 on fn_a and fn_b, the tree on fn_a, all at L=4


def table(db, *args):
    result = run_cli("report", "--db", db, *RUNS, "--table", *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_command_offers_every_table():
    assert list(REPORT_TABLES) == list(TABLES)


def test_leaderboard_pivoted_in_latex(report_db):
    text = table(report_db, "leaderboard", "--pivot", "--format", "latex")
    columns, rows = latex_rows(text)
    assert all(len(row) == columns for row in rows), rows
    assert rows[0] == ["task", "L", "openai/gpt-5", "tree"]
    # fn_a: gpt-5 0.6875 over r1 and r2, the tree 0.75 (best); fn_b: gpt-5 alone, 0.8125
    assert rows[1:] == [
        ["fn\\_a", "4", "0.688", "\\textbf{0.750}"],
        ["fn\\_b", "4", "\\textbf{0.812}", ""],
    ]


def test_tables_in_markdown_and_csv(report_db):
    md = table(report_db, "leaderboard", "--pivot")
    assert "| task | L | openai/gpt-5 | tree |\n|---|---:|---:|---:|\n| fn_a | 4 | 0.688 | **0.750** |" in md
    rows = list(csv.DictReader(io.StringIO(table(report_db, "leaderboard", "--format", "csv"))))
    tree = next(r for r in rows if r["proposer"] == "tree")
    assert (tree["task"], tree["L"], float(tree["test mean"])) == ("fn_a", "4", 0.75)
    gpt = next(r for r in rows if r["proposer"] == "openai/gpt-5" and r["task"] == "fn_a")
    assert float(gpt["test 95% CI low"]) <= float(gpt["test mean"]) <= float(gpt["test 95% CI high"])
    improvement = table(report_db, "improvement", "--format", "latex")
    columns, rows = latex_rows(improvement)
    assert columns == 9 and len(rows) == 1 + 3 and all(len(r) == columns for r in rows)


def test_a_table_to_a_file(report_db, tmp_path):
    out = tmp_path / "leaderboard.tex"
    result = run_cli(
        "report", "--db", report_db, *RUNS, "--table", "leaderboard", "--format", "latex", "-o", out
    )
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_text().count("\\toprule") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--table", "compile", "--pivot"], "only the leaderboard can be pivoted"),
        (["--table", "leaderboard", "--format", "html"], "unknown table format 'html'"),
    ],
)
def test_table_errors_are_one_line(report_db, args, message):
    one_line_error(run_cli("report", "--db", report_db, *RUNS, *args), message)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "latex"], "add --table NAME"),
        (["--pivot"], "use it with --table leaderboard"),
        (["--figures", "figs", "--table", "leaderboard"], "use one"),
        (["--figures", "figs", "-o", "x.html"], "drop -o"),
    ],
)
def test_options_that_do_not_go_together(report_db, tmp_path, args, message):
    result = run_cli("report", "--db", report_db, *RUNS, *args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


@pytest.mark.slow  # vl-convert draws 8 charts 3 times
def test_figures_are_valid_svg_png_and_pdf(report_db, tmp_path):
    folder = tmp_path / "figures" / "new"
    written = build_figures(report_db, folder, RUNS)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"{id}.{ext}" for id, *_ in CHARTS for ext in ("svg", "png", "pdf"))
    assert sorted(p.name for p in written) == names
    for id, *_ in CHARTS:
        svg = ET.parse(folder / f"{id}.svg").getroot()
        assert svg.tag == "{http://www.w3.org/2000/svg}svg" and float(svg.get("width")) > 100
        png = (folder / f"{id}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        width, height = struct.unpack(">II", png[16:24])
        assert width > 200 and height > 100
        pdf = (folder / f"{id}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    # the task names are in the figure's text, as drawn
    assert "fn_a" in (folder / "accuracy-by-length.svg").read_text()


def test_figures_into_a_file_are_refused_up_front(report_db, tmp_path):
    (tmp_path / "taken").write_text("x")
    result = run_cli("report", "--db", report_db, *RUNS, "--figures", tmp_path / "taken" / "figs")
    assert result.exit_code == 2 and "Traceback" not in result.output
