"""`synth verify`: recorded programs re-checked at other lengths, on every input, on a
uniform sample and on the source table, through the real sandbox and a real store."""

import csv
import json
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import grid, one_line_error, run_cli, synth_process
from openai_server import Reply

import tracker
from synth.datasets import uci
from synth.datasets.generators import tabular
from synth.verification.verify import verify_runs

PARITY = "def f(x):\n    return x.count('1') % 2"
ONLY_AT_20 = "def f(x):\n    return x.count('1') % 2 if len(x) == 20 else 0"
# fn_e's rule at L=20: the parity of positions 2, 14 and 18.
POSITIONS_AT_20 = "def f(x):\n    return (int(x[2]) + int(x[14]) + int(x[18])) % 2"


@pytest.fixture
def workdir(workdir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    return workdir


@pytest.fixture
def recorded(workdir, openai_server):
    """record(run_id, code, *functions): a run whose every proposal is ``code`` (fn_a at
    L=20 unless told), in runs.db."""

    def record(run_id, code, *functions, **sizes):
        openai_server.script = lambda path, body: Reply(text=json.dumps({"code": code}))
        result = run_cli(
            "run",
            *grid(*functions, attempts=1, **sizes),
            "--api-base-url",
            openai_server.base_url,
            "--run-id",
            run_id,
            "--db",
            "runs.db",
        )
        assert result.exit_code == 0, result.output
        return run_id

    return record


def rows_by(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def stored(path="runs.db") -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "select id, attempt_id, eval_length, set_key, rule, correct, created_at from verifications order by id"
        ).fetchall()


@pytest.mark.slow
def test_parity_is_exact_at_20_and_right_at_100_and_1000(recorded):
    recorded("parity", PARITY)
    result = run_cli(
        "verify",
        "--db",
        "runs.db",
        "--lengths",
        "20 100 1000",
        "--samples",
        3000,
        "--test-size",
        200,
        "--json",
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert set(rows[0]) >= {
        "run_id",
        "fn",
        "trial",
        "attempt",
        "train_length",
        "eval_length",
        "set",
        "rule",
        "n",
        "accuracy",
        "exact",
        "counterexample",
        "status",
    }
    (exhaustive,) = rows_by(rows, set="exhaustive")
    assert (exhaustive["eval_length"], exhaustive["n"], exhaustive["accuracy"]) == (20, 2**20, 1.0)
    assert exhaustive["exact"] is True and exhaustive["counterexample"] is None
    assert exhaustive["seen"] == 40, "the run's own 40 inputs are among all 2^20"
    for length in (100, 1000):
        (balanced,) = rows_by(rows, eval_length=length, set="balanced")
        (sampled,) = rows_by(rows, eval_length=length, set="sample")
        assert (balanced["n"], balanced["accuracy"], balanced["positives"]) == (200, 1.0, 100)
        assert (sampled["n"], sampled["accuracy"]) == (3000, 1.0)
        assert sampled["exact"] is None, "no counterexample in a sample proves nothing"
        assert balanced["status"] == sampled["status"] == "ok"
    assert {r["rule"] for r in rows} == {"task"}, "parity of all bits reads the same at every length"


@pytest.mark.slow
def test_a_program_right_only_at_its_training_length(recorded):
    recorded("only20", ONLY_AT_20)
    rows = verify_runs(db_path="runs.db", lengths=[20, 100], test_size=200, samples=2000)
    (exhaustive,) = rows_by(rows, set="exhaustive")
    assert exhaustive["exact"] is True and exhaustive["accuracy"] == 1.0
    (balanced,) = rows_by(rows, eval_length=100, set="balanced")
    assert balanced["accuracy"] == 0.5, "always 0 on a balanced set: exactly half right"
    assert balanced["exact"] is False
    example = balanced["counterexample"]
    assert len(example["input"]) == 100 and example["input"].count("1") % 2 == 1
    assert (example["expected"], example["got"]) == (1, 0)
    (sampled,) = rows_by(rows, eval_length=100, set="sample")
    assert 0.45 < sampled["accuracy"] < 0.55 and sampled["exact"] is False


def test_fn_e_gets_both_readings_beyond_its_training_length(recorded):
    recorded("pos", POSITIONS_AT_20, "fn_e")
    rows = verify_runs(db_path="runs.db", lengths=[20, 100], test_size=200, samples=2000, exhaustive_up_to=0)
    assert {r["rule"] for r in rows_by(rows, eval_length=20)} == {"task"}, "one rule at its own length"
    for kind in ("balanced", "sample"):
        (extended,) = rows_by(rows, eval_length=100, set=kind, rule="extended")
        (task,) = rows_by(rows, eval_length=100, set=kind, rule="task")
        assert extended["accuracy"] == 1.0, "the L=20 positions, kept on longer inputs"
        assert 0.35 < task["accuracy"] < 0.65, "the task's own L=100 positions: chance"
        assert task["counterexample"] is not None and extended["counterexample"] is None


def test_trials_of_the_same_program_share_one_check_and_get_its_rows(recorded):
    """Three trials proposing one program are checked once per set, each given the rows
    a run of that program alone gets (the stored labels, shared sets and one sandboxed
    run change nothing but the time)."""
    recorded("one", POSITIONS_AT_20, "fn_e")
    recorded("three", POSITIONS_AT_20, "fn_e", trials=3)
    rows = verify_runs(
        ["one", "three"],
        db_path="runs.db",
        lengths=[20, 100],
        test_size=200,
        samples=2000,
        exhaustive_up_to=0,
    )
    volatile = ("run_id", "trial", "attempt_id", "duration_ms")
    alone = [{k: v for k, v in r.items() if k not in volatile} for r in rows_by(rows, run_id="one")]
    assert len(alone) == 2 + 4, "L=20: two sets; L=100: both readings of two sets"
    assert any(r["counterexample"] for r in alone) and any(r["accuracy"] == 1.0 for r in alone)
    by_trial = [rows_by(rows, run_id="three", trial=trial) for trial in (1, 2, 3)]
    for trial_rows in by_trial:
        assert [{k: v for k, v in r.items() if k not in volatile} for r in trial_rows] == alone
    durations = [[r["duration_ms"] for r in trial_rows] for trial_rows in by_trial]
    assert durations[0] == durations[1] == durations[2], "one sandboxed run per set, shared"


@pytest.mark.slow
def test_tabular_population(uci_dir, workdir):
    result = run_cli(
        "run",
        *grid("fn_p", train=200, val=100, test=200),
        "--provider",
        "tree",
        "--uci-dir",
        uci_dir,
        "--run-id",
        "tab",
        "--db",
        "runs.db",
    )
    assert result.exit_code == 0, result.output
    rows = verify_runs(db_path="runs.db", uci_dir=uci_dir)
    (population,) = rows
    assert (population["set"], population["rule"], population["eval_length"]) == ("population", "task", 8)
    table = uci.load_table("htru2", uci_dir=uci_dir)
    assert population["n"] == len(table) == 17_898
    with sqlite3.connect("runs.db") as conn:
        code, seed = conn.execute(
            "select p.code, d.derived_seed from trials t join attempts a on a.trial_id = t.id "
            "and a.attempt = t.selected_attempt join programs p on p.hash = a.program_hash "
            "join datasets d on d.id = t.dataset_id"
        ).fetchone()
        run_inputs = {x for (x,) in conn.execute("select input from examples")}
    # The same figure, computed here: the table encoded as the run's dataset was, the
    # program called in this process.
    params = tabular.affine_params(table, np.random.Generator(np.random.PCG64(seed)))
    inputs = tabular.encode_rows(table, np.arange(len(table)), params)
    assert run_inputs <= set(inputs), "the population holds every row the run drew"
    namespace = {}
    exec(code, namespace)
    predicted = [int(bool(namespace["f"](tabular.parse_input(x)))) for x in inputs]
    correct = sum(p == y for p, y in zip(predicted, table.labels.tolist()))
    assert population["correct"] == correct and population["accuracy"] == correct / len(table)
    assert population["exact"] is (correct == len(table))
    assert population["seen"] >= len(run_inputs) and population["unseen_n"] == len(table) - population["seen"]


@pytest.mark.slow
def test_killed_verify_resumes_without_evaluating_again(recorded, workdir, wait_until):
    recorded("parity", PARITY, trials=3)
    args = (
        "verify",
        "--db",
        "runs.db",
        "--lengths",
        "20 200 400 600",
        "--samples",
        20000,
        "--test-size",
        200,
    )
    child = synth_process(workdir, *args)
    assert wait_until(lambda: (workdir / "runs.db").exists() and len(_rows_or_none()) >= 2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = stored()
    assert before, "some sets were recorded before the kill"
    assert len(before) < 3 * 4 * 2, "killed mid-way"
    rerun = run_cli(*args, "--json")
    assert rerun.exit_code == 0, rerun.output
    after = stored()
    assert after[: len(before)] == before, "rows recorded before the kill are kept as they were"
    keys = [row[1:5] for row in after]
    assert len(keys) == len(set(keys)) == 3 * 4 * 2, "every set once, none twice"
    assert f"({len(before)} stored)" in rerun.stderr
    again = run_cli(*args)
    assert "verifying 0 program x set checks" in again.stderr and stored() == after


def _rows_or_none() -> list:
    try:
        return stored()
    except sqlite3.OperationalError:  # the table is not there yet
        return []


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("nope",), ("no run 'nope'",)),
        (("--exhaustive-up-to", 25), ("--exhaustive-up-to must be from 0 to 24",)),
        (("--samples", 0), ("--samples must be from 1",)),
        (("--test-size", 3), ("--test-size must be a positive even number",)),
        (("--lengths", 2), ("no task of the run can be verified at L=2", "3 distinct positions")),
    ],
)
def test_bad_input_is_one_line_before_anything_is_evaluated(recorded, args, fragments):
    recorded("pos", POSITIONS_AT_20, "fn_e")
    one_line_error(run_cli("verify", "--db", "runs.db", *args), *fragments)
    assert _rows_or_none() == []


def test_a_dry_run_has_nothing_to_verify(workdir):
    dry = run_cli("run", *grid(), "--provider", "formula", "--dry-run", "--run-id", "dry", "--db", "runs.db")
    assert dry.exit_code == 0, dry.output
    one_line_error(run_cli("verify", "dry", "--db", "runs.db"), "run dry has no programs to verify")


def test_a_length_some_tasks_cannot_serve_is_skipped_for_them(recorded):
    recorded("two", PARITY, "fn_a", "fn_f")
    result = run_cli("verify", "--db", "runs.db", "--lengths", 4, "--test-size", 2, "--json")
    assert result.exit_code == 0, result.output
    assert "Warning: skipped fn_f at L=4" in result.stderr and "10 distinct positions" in result.stderr
    rows = json.loads(result.stdout)
    assert {r["fn"] for r in rows} == {"fn_a"}
    (exhaustive,) = rows_by(rows, set="exhaustive")
    assert (exhaustive["n"], exhaustive["exact"]) == (16, True)


def test_the_generalisation_canned_query(recorded):
    recorded("pos", POSITIONS_AT_20, "fn_e", trials=2)
    verify_runs(db_path="runs.db", lengths=[20, 100], test_size=200, samples=1000, exhaustive_up_to=0)
    meta = yaml.safe_load((Path(tracker.__file__).parent / "datasette" / "metadata.yaml").read_text())
    sql = meta["databases"]["synth"]["queries"]["generalisation"]["sql"]
    with sqlite3.connect("runs.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute(sql, {"run_id": "pos"})]
    got = {
        (r["eval_length"], r["set_kind"], r["rule"]): (r["programs"], r["mean_accuracy"], r["refuted"])
        for r in rows
    }
    assert got[100, "balanced", "extended"] == (2, 1.0, 0)
    assert got[20, "sample", "task"] == (2, 1.0, 0)
    assert got[100, "balanced", "task"][2] == 2, "both refuted at the task's own L=100 positions"


def test_export_writes_the_verification_rows_beside_the_run_exports(recorded, workdir):
    recorded("pos", POSITIONS_AT_20, "fn_e")
    plain = run_cli("export", "pos", "--db", "runs.db", "--out-dir", "before")
    assert plain.exit_code == 0, plain.output
    assert not list((workdir / "before").glob("*verifications*")), "nothing verified: no file"
    rows = verify_runs(db_path="runs.db", lengths=[20, 40], test_size=20, samples=500, exhaustive_up_to=0)
    result = run_cli("export", "pos", "--db", "runs.db", "--out-dir", "after")
    assert result.exit_code == 0, result.output
    manifest = json.loads((workdir / "after" / "results_attempts_manifest.json").read_text())
    jsonl, table = map(Path, manifest["artifacts"]["verifications"])
    assert jsonl.parent == table.parent == Path("after")
    exported = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert exported == [{k: r[k] for k in exported[0]} for r in rows] and len(exported) == 6
    with table.open() as f:
        records = list(csv.DictReader(f))
    assert [r["rule"] for r in records] == [r["rule"] for r in rows]
    refuted = next(r for r in records if r["counterexample"])
    assert set(json.loads(refuted["counterexample"])) == {"input", "expected", "got"}


def test_no_database_is_one_line_and_creates_none(workdir):
    one_line_error(run_cli("verify", "--db", "missing.db"), "no database at missing.db")
    assert not (workdir / "missing.db").exists()


def test_a_program_that_dies_on_longer_inputs_is_recorded_so(recorded):
    recorded(
        "dies", "import os\ndef f(x):\n    if len(x) > 20:\n        os._exit(3)\n    return x.count('1') % 2"
    )
    rows = verify_runs(db_path="runs.db", lengths=[20, 40], test_size=20, samples=100)
    assert {(r["set"], r["status"]) for r in rows_by(rows, eval_length=20)} == {
        ("balanced", "ok"),
        ("exhaustive", "ok"),
    }
    for row in rows_by(rows, eval_length=40):
        assert (row["status"], row["accuracy"], row["exact"]) == ("exit", 0.0, False), row
        assert row["counterexample"]["got"] is None, "not reached: counted wrong"
