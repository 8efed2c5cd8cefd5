"""The report as text for a terminal (``--format md``): Markdown headings and tables,
the same analyses as the HTML page, without charts and programs; wide tables keep the
columns that fit a terminal, and the leakage audit lists only datasets with leakage."""

from __future__ import annotations

from reports import tables as t
from reports.analyses import Report
from reports.study_view import study_markdown
from reports.table_formats import markdown_table
from reports.tables import Column


def render_text(report: Report) -> str:
    gate = report.gate
    leaky = [d for d in report.leakage if not d["clean"]]
    header = (
        f"# LLM-PV report\n\nruns: {', '.join(report.scope.run_ids)}\n"
        f"database: {report.database}\ngenerated: {report.generated_at}"
    )
    sections = {
        f"Research-standard gate: {gate['verdict'].upper()}": f"Zero input leakage and compile-ok rate >= {gate['threshold']}.\n\n"
        + markdown_table(t.GATE, gate["runs"]),
        "Runs": markdown_table(
            _pick(
                t.RUNS,
                "run_id",
                "status",
                "proposer",
                "seed",
                "sizes",
                "grid_points",
                "trials_done",
                "attempts",
            ),
            report.runs,
        ),
        "Leaderboard: each proposer and setting over all its runs": markdown_table(
            t.LEADERBOARD, report.leaderboard
        ),
        "Results per grid point (selected by validation accuracy)": markdown_table(
            _pick(
                t.GRID_POINTS,
                "run_id",
                "fn",
                "length",
                "trials",
                "test_mean",
                "test_std",
                "test",
                "val_mean",
                "gap_mean",
                "solved",
            ),
            report.grid_points,
        ),
        "Seed spread": markdown_table(
            _pick(
                t.SEED_SPREAD,
                "fn",
                "length",
                "proposer",
                "seeds",
                "test_mean",
                "test_std",
                "test_min",
                "test_max",
                "test",
            ),
            report.seed_spread,
        )
        if report.seed_spread
        else "No grid point was run under several seeds.",
        "Leakage audit": f"{len(report.leakage)} datasets audited, {len(leaky)} with inputs shared "
        "between splits." + ("\n\n" + markdown_table(t.LEAKAGE, leaky) if leaky else ""),
        "Raw vs leakage-clean": markdown_table(t.RAW_VS_CLEAN, report.raw_vs_clean),
        "Compile and extraction": markdown_table(
            _pick(
                t.COMPILE,
                "run_id",
                "attempts",
                "call_failed",
                "answered",
                "extract_failed",
                "compile_ok",
                "compile_ok_rate",
            ),
            report.compile,
        ),
        "Failure classes": markdown_table(t.FAILURES, report.failure_classes),
        "Most common errors": markdown_table(t.ERRORS, report.errors),
        "Improvement (test-oracle: chosen with test labels, an upper bound, not a result)": markdown_table(
            t.IMPROVEMENT, report.run_results
        ),
        "Attempts to solve": markdown_table(t.SOLVE, report.attempts_to_solve),
        f"Tokens and cost ({report.price_note})": markdown_table(t.TOKENS_RUNS, report.tokens_runs),
        "Tokens and cost per grid point": markdown_table(t.TOKENS_POINTS, report.tokens_points),
    }
    if report.generalisation:
        sections |= {
            "Generalisation: exact-rule recovery (from synth verify)": markdown_table(
                t.RECOVERY, report.recovery
            ),
            "Generalisation: every set and reading": markdown_table(t.GENERALISATION, report.generalisation),
            "Generalisation: counterexamples": markdown_table(t.COUNTEREXAMPLES, report.counterexamples),
        }
    if report.study is not None:  # the study's tables come first
        header += "\n\n" + study_markdown(report.study)
    return header + "".join(f"\n\n## {title}\n\n{body}" for title, body in sections.items()) + "\n"


def _pick(columns: list[Column], *keys: str) -> list[Column]:
    by_key = {c.key: c for c in columns}
    return [by_key[k] for k in keys]
