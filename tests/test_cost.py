"""Money: each response priced when recorded, the run's cost everywhere a person looks,
and a hard cap (--max-cost) that a run never spends past, against the loopback server's
known token counts."""

import io
import json
import math

import pytest
from helpers import grid, one_line_error, run_cli
from openai_server import Reply, Usage

from synth.config import RunConfig
from synth.engine.budget import FRAMING_TOKENS, Budget, input_tokens
from synth.engine.entry import start_run
from tracker.db import open_db
from tracker.prices import ModelPrice

KEY = "sk-test-not-a-real-key"
USAGE = Usage(input_tokens=120, cached_tokens=20, output_tokens=40, reasoning_tokens=16)
# USD per 1M tokens: one response of USAGE costs 100 x 2 + 20 x 0.5 + 40 x 8 micro-dollars.
PRICES = {
    "as_of": "2030-01",
    "source_url": "https://example.org/p",
    "models": {"gpt-test": {"input": 2.0, "cached_input": 0.5, "output": 8.0}},
}
ONE_RESPONSE = (100 * 2.0 + 20 * 0.5 + 40 * 8.0) / 1e6
# $1 an output token, input free: a call of USAGE costs $40 and reserves --max-output-tokens.
DEAR = {"models": {"gpt-test": {"input": 0, "output": 1_000_000}}}


@pytest.fixture
def run(workdir, monkeypatch, openai_server):
    """`synth ARGS` against the server answering USAGE, with gpt-test's prices."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    openai_server.script = lambda path, body: Reply(usage=USAGE)

    def run(*args):
        return run_cli(*args, "--db", "runs.db")

    def new_run(run_id, *args, prices=PRICES, db="runs.db"):
        (workdir / "prices.json").write_text(json.dumps(prices))
        return run_cli(
            "run",
            *grid(trials=2, attempts=3),
            "--model",
            "gpt-test",
            "--prices",
            "prices.json",
            "--api-base-url",
            openai_server.base_url,
            "--concurrency",
            1,
            "--run-id",
            run_id,
            "--db",
            db,
            *args,
        )

    run.new = new_run
    return run


def test_each_response_is_priced_when_recorded_and_the_run_sums_them(run, workdir, monkeypatch):
    result = run.new("priced")
    assert result.exit_code == 0, result.output
    db = open_db(workdir / "runs.db", readonly=True)
    costs = list(
        db.query("select input_cost_usd, cached_input_cost_usd, output_cost_usd, cost_usd from responses")
    )
    assert len(costs) == 6
    for c in costs:
        assert c["input_cost_usd"] == pytest.approx(100 * 2.0 / 1e6)
        assert c["cached_input_cost_usd"] == pytest.approx(20 * 0.5 / 1e6)
        assert c["output_cost_usd"] == pytest.approx(40 * 8.0 / 1e6)
        assert c["cost_usd"] == pytest.approx(ONE_RESPONSE)
    total = 6 * ONE_RESPONSE
    assert db.execute("select cost_usd from run_costs").fetchone()[0] == pytest.approx(total)
    stored = json.loads(db["runs"].get("priced")["prices"])
    assert stored["as_of"] == "2030-01" and stored["price"]["output"] == 8.0
    assert stored["source_url"] == "https://example.org/p"
    manifest = json.loads((workdir / "runs/priced/results_attempts_manifest.json").read_text())
    assert manifest["cost_usd"] == pytest.approx(total) and manifest["prices"] == stored
    # Everywhere a person looks, and a price table changed later changes none of it.
    monkeypatch.setenv("SYNTH_PRICES", str(workdir / "other.json"))
    (workdir / "other.json").write_text(json.dumps({"models": {"gpt-test": {"input": 99, "output": 99}}}))
    [listed] = json.loads(run("runs", "--json").stdout)
    assert listed["cost_usd"] == pytest.approx(total)
    assert "0.0032" in run("runs").stdout  # 6 x 530 micro-dollars, to 4 places
    [point] = json.loads(run("show", "priced", "--json").stdout)
    assert point["cost_usd"] == pytest.approx(total)
    shown = run("show", "priced")
    assert "cost (USD): 0.0032 (prices of prices.json over the package table, as of 2030-01)" in shown.stderr
    monkeypatch.delenv("SYNTH_PRICES")
    report = run("report", "--format", "md")
    assert "as recorded with each response" in report.stdout and "0.0032" in report.stdout


def test_a_model_without_a_price_costs_unknown_never_zero(run, workdir):
    result = run.new("unpriced", "--model", "no-such-model", prices={"models": {}})
    assert result.exit_code == 0, result.output
    db = open_db(workdir / "runs.db", readonly=True)
    assert {r["cost_usd"] for r in db.query("select cost_usd from responses")} == {None}
    assert json.loads(run("runs", "--json").stdout)[0]["cost_usd"] is None
    assert "?" in run("runs").stdout.splitlines()[-1]
    assert json.loads(run("show", "unpriced", "--json").stdout)[0]["cost_usd"] is None


def test_a_cap_allowing_k_calls_makes_k_and_a_resume_completes_as_uncapped(run, workdir, openai_server):
    # Each call costs $40 and reserves $50: a cap of 3 x 40 + 10 affords exactly 3.
    result = run.new("capped", "--max-output-tokens", 50, "--max-cost", 130, prices=DEAR)
    assert result.exit_code == 0, result.output
    assert len(openai_server.requests) == 3
    assert "stopped at its cost cap: $120.0000 spent of $130" in result.stderr
    assert "synth resume capped --max-cost HIGHER" in result.stderr
    db = open_db(workdir / "runs.db", readonly=True)
    assert db["runs"].get("capped")["status"] == "budget_exhausted"
    assert db.execute("select sum(cost_usd) from responses").fetchone()[0] == 120.0
    db.close()
    again = run("resume", "capped", "--max-cost", 130)  # the same cap: nothing more
    assert again.exit_code == 0 and len(openai_server.requests) == 3
    resumed = run("resume", "capped", "--max-cost", 1000)
    assert resumed.exit_code == 0, resumed.output
    assert len(openai_server.requests) == 6
    uncapped = run.new("free", "--max-output-tokens", 50, prices=DEAR)
    assert uncapped.exit_code == 0, uncapped.output
    capped = _exported(workdir / "runs/capped")
    assert len(capped) == 3 and capped == _exported(workdir / "runs/free")


def _exported(folder):
    """The exported rows (each trial's selected attempt, then the summary), without what
    differs between two runs of one grid (their ids, timings)."""
    rows = [json.loads(line) for line in (folder / "results_attempts.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("run_id", "response_id", "duration_ms")} for r in rows]


def test_a_cap_needs_a_known_price(run, workdir, openai_server):
    result = run.new("x", "--model", "no-such-model", "--max-cost", 5, prices={"models": {}})
    one_line_error(result, "--max-cost needs the price of model 'no-such-model'", "--prices FILE")
    assert openai_server.requests == []


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "lots"])
def test_a_cap_must_be_a_positive_finite_number(run, openai_server, value):
    one_line_error(run.new("x", "--max-cost", value), "max-cost")
    assert openai_server.requests == []


@pytest.mark.parametrize(
    "table, words",
    [
        ("[1, 2]", 'needs a "models" object'),
        ('{"models": {"m": {"input": 1}}}', "'m' needs non-negative numbers"),
        ('{"models": {"m": {"input": true, "output": 1}}}', "'m' needs non-negative numbers"),
        ("{", "is not valid JSON"),
    ],
)
def test_a_malformed_price_file_is_one_line_before_anything_is_spent(
    run, workdir, openai_server, table, words
):
    (workdir / "bad.json").write_text(table)
    result = run_cli(
        "run", *grid(), "--prices", "bad.json", "--api-base-url", openai_server.base_url, "--db", "bad.db"
    )
    one_line_error(result, words)
    assert not (workdir / "bad.db").exists()


def test_synth_prices_prints_the_table_with_its_date_and_source(run):
    result = run_cli("prices", "--json")
    table = json.loads(result.stdout)
    assert table["as_of"] and table["source_url"].startswith("https://")
    gpt5 = next(m for m in table["models"] if m["model"] == "gpt-5")
    assert (gpt5["batch_input"], gpt5["batch_output"]) == (gpt5["input"] / 2, gpt5["output"] / 2)
    text = run_cli("prices")
    assert "gpt-5" in text.stdout and table["source_url"] in text.stderr


def test_the_worst_case_is_calibrated_by_recorded_input_tokens():
    prompt = "é" * 100  # 200 bytes
    assert input_tokens(prompt) == (200 // 8, 200 + FRAMING_TOKENS)
    assert input_tokens(prompt, recorded=57) == (57, 57)
    price = ModelPrice("m", {"input": 1e6, "output": 0.0}, "2030-01", "test")
    budget = Budget(cap=300.0, price=price, max_output_tokens=10)
    assert budget.reserve("h", prompt) == 216.0
    assert budget.reserve("h", prompt) is None and budget.exhausted, "216 + 216 > 300"
    budget.settle(216.0, 57.0, "h", 57)
    assert budget.spent == 57.0 and budget.reserved == 0.0
    assert budget.worst_case("h", prompt) == 57.0, "calibrated"
    assert not math.isnan(budget.refused)


PARITY = '{"code": "def f(x):\\n    return x.count(\\"1\\") % 2"}'


@pytest.mark.parametrize("text", [PARITY, "no program"], ids=["solved-at-once", "never-solved"])
def test_the_dry_run_estimate_brackets_the_real_spend(run, workdir, openai_server, text):
    """The server bills ~3 bytes of prompt a token, as a tokenizer does digits."""
    (workdir / "prices.json").write_text(json.dumps(PRICES))
    config = RunConfig(
        functions=["fn_a"], lengths=[20], num_trials=2, attempts=3, train_size=10, val_size=10,
        test_size=20, model="gpt-test", prices_path="prices.json", dry_run=True, run_id="dry",
        max_output_tokens=100,
    )  # fmt: skip
    estimate = start_run(config, db_path=workdir / "dry.db", progress_stream=io.StringIO()).estimate
    *points, total = estimate
    assert [(p["fn"], p["length"]) for p in points] == [("fn_a", 20)] and total["fn"] == "total"
    assert (total["calls_min"], total["calls_max"]) == (2, 6)
    assert total["batch_usd_max"] == pytest.approx(total["usd_max"] / 2)
    openai_server.script = lambda path, body: Reply(
        text=text, usage=Usage(len(body["input"][0]["content"].encode()) // 3, 0, 40, 16)
    )
    assert run.new("real", "--max-output-tokens", 100).exit_code == 0
    db = open_db(workdir / "runs.db", readonly=True)
    spent = db.execute("select cost_usd from run_costs where run_id = 'real'").fetchone()[0]
    assert total["calls_min"] <= len(openai_server.requests) <= total["calls_max"]
    assert total["usd_min"] <= spent <= total["usd_max"]
    shown = run.new("dry2", "--dry-run")
    assert "USD (Batch)" in shown.stdout and shown.stdout.splitlines()[-1].startswith("total")


def test_calls_in_flight_when_the_cap_is_reached_finish_and_are_recorded(run, workdir, openai_server):
    openai_server.script = lambda path, body: Reply(usage=USAGE, delay=0.2)
    # Three trials at once: two reservations of $50 fit in $130, the third does not.
    result = run.new(
        "wide",
        "--num-trials",
        3,
        "--concurrency",
        3,
        "--max-output-tokens",
        50,
        "--max-cost",
        130,
        prices=DEAR,
    )
    assert result.exit_code == 0, result.output
    db = open_db(workdir / "runs.db", readonly=True)
    assert len(openai_server.requests) == 2
    assert db.execute("select count(*), sum(cost_usd) from responses").fetchone() == (2, 80.0)
    assert db["runs"].get("wide")["status"] == "budget_exhausted"
