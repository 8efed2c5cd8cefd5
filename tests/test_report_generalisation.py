"""The report's Generalisation section, from programs `synth verify` really checked
(tests/report_fixtures.py: r1 and r3 verified at L=4 and L=8)."""

import pytest

from reports import analyse, build_report

pytestmark = pytest.mark.slow  # a real verify builds the fixture


def test_recovery_and_counterexamples(verified_report_db):
    report = analyse(verified_report_db, ["r1", "r3"])
    recovery = {(r["fn"], r["provider"]): r for r in report["recovery"]}
    assert set(recovery) == {("fn_a", "openai"), ("fn_a", "tree"), ("fn_b", "openai")}
    for row in recovery.values():
        # x[0] == '1' is neither parity at L=4, and every input of L=4 was checked
        assert row["checked"] == row["programs"] >= 1 and row["exact"] == 0 and row["exact_rate"] == 0.0
    first = next(c for c in report["counterexamples"] if c["fn"] == "fn_a" and c["set_kind"] == "exhaustive")
    assert (first["input"], first["expected"], first["got"]) == ("0001", 1, 0), (
        "the first wrong input in order"
    )
    readings = {(r["fn"], r["eval_length"], r["rule"]) for r in report["generalisation"]}
    assert ("fn_b", 8, "extended") in readings and ("fn_b", 4, "extended") not in readings
    assert ("fn_a", 8, "extended") not in readings, "parity of all bits has one reading"


def test_text_format_has_the_same_tables(verified_report_db):
    text = build_report(verified_report_db, ["r1", "r3"], None, "md")
    assert "## Generalisation: exact-rule recovery (from synth verify)" in text
    assert "| fn_b | openai/gpt-5 | extended | balanced | 4 | 8 |" in text
    assert "| 0001 | 1 | 0 | ok |" in text


def test_no_section_without_verifications(report_db):
    assert "Generalisation" not in build_report(report_db, ["r1", "r3"], None, "md")
    assert 'id="generalisation"' not in build_report(report_db, ["r1", "r3"], None, "html")
