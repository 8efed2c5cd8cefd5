"""Trial rows are written as each trial starts: a run of many trials records none up
front, its counts still cover every trial, and a resume makes the trials not recorded."""

import json

import sqlite_utils
from helpers import dataset_meta, grid, run_cli
from openai_server import Reply, Usage

from tracker import runs as store
from tracker import studies
from tracker.db import open_db
from tracker.migrations import migrations

TRIALS = 12
# $1 an output token, input free: a call costs $40 and reserves --max-output-tokens ($50).
DEAR = {"models": {"gpt-test": {"input": 0, "output": 1_000_000}}}


def test_a_stopped_run_counts_its_trials_not_started_and_a_resume_makes_them(
    workdir, monkeypatch, openai_server
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    openai_server.script = lambda path, body: Reply(usage=Usage(input_tokens=10, output_tokens=40))
    (workdir / "prices.json").write_text(json.dumps(DEAR))

    def run(run_id, *args):
        return run_cli(
            "run",
            *grid(trials=TRIALS, attempts=1),
            *("--model", "gpt-test", "--prices", "prices.json", "--max-output-tokens", 50),
            *("--api-base-url", openai_server.base_url, "--concurrency", 1, "--run-id", run_id),
            *("--db", "runs.db", *args),
        )

    assert run("capped", "--max-cost", 50).exit_code == 0  # one call, then the cap
    db = open_db(workdir / "runs.db", readonly=True)
    recorded = db.execute("select count(*), sum(status = 'done') from trials").fetchone()
    assert recorded[1] == 1 and recorded[0] < TRIALS, "only the trials that started have rows"
    assert db.execute("select trials from run_datasets").fetchall() == [(TRIALS,)]
    db.close()
    [listed] = json.loads(run_cli("runs", "--db", "runs.db", "--json").stdout)
    assert (listed["trials"], listed["trials_done"]) == (TRIALS, 1)

    resumed = run_cli("resume", "capped", "--max-cost", 10_000, "--db", "runs.db")
    assert resumed.exit_code == 0, resumed.output
    assert run("free").exit_code == 0
    for run_id in ("capped", "free"):
        [listed] = [
            r
            for r in json.loads(run_cli("runs", "--db", "runs.db", "--json").stdout)
            if r["run_id"] == run_id
        ]
        assert (listed["status"], listed["trials"], listed["trials_done"]) == ("completed", TRIALS, TRIALS)
    shown = [
        json.loads(run_cli("show", run_id, "--db", "runs.db", "--json").stdout)
        for run_id in ("capped", "free")
    ]
    assert shown[0] == shown[1] and shown[0][0]["num_trials"] == TRIALS
    db = open_db(workdir / "runs.db", readonly=True)
    order = db.execute("select trial from trials where run_id = 'capped' order by trial").fetchall()
    assert order == [(k,) for k in range(1, TRIALS + 1)], "every trial once"


def test_the_migration_counts_the_trials_of_runs_recorded_before(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m013_lazy_trials")
    old["datasets"].insert({"id": 1, **dataset_meta("f1"), "created_at": "2026-01-01T00:00:00+00:00"})
    old["runs"].insert(
        {"run_id": "r", "provider": "tree", "config": "{}", "status": "completed", "created_at": "2026-01-01"}
    )
    for length in (20, 30):
        old["run_datasets"].insert({"run_id": "r", "fn": "fn_a", "length": length, "dataset_id": 1})
    old["trials"].insert_all(
        {"run_id": "r", "fn": "fn_a", "length": 20, "trial": k, "dataset_id": 1, "status": "done"}
        for k in (1, 2, 3)
    )
    old.close()
    db = open_db(path)  # migrates
    assert db.execute("select length, trials from run_datasets order by length").fetchall() == [
        (20, 3),
        (30, 0),
    ]
    [listed] = store.list_runs(db)
    assert (listed["trials"], listed["trials_done"]) == (3, 3)


def test_a_study_cell_counts_the_trials_its_run_covers(tmp_path):
    db = open_db(tmp_path / "s.db")
    db["datasets"].insert({"id": 1, **dataset_meta("f1"), "created_at": "2026-01-01T00:00:00+00:00"})
    studies.record_study(db, "s", "{}", "x", "s.yaml")
    cell = {"study": "s", "system": "a", "prompt": "p", "seed": 0}
    store.create_run(
        db, {"run_id": "r", "provider": "tree", "config": "{}"}, [("fn_a", 20, 1, 3)], study_cell=cell
    )
    first = store.start_trial(db, "r", {"fn": "fn_a", "length": 20, "trial": 1, "dataset_id": 1})
    store.finish_trial(db, first["id"], {"selected_attempt": 1, "val_acc": 1.0, "test_acc": 1.0})
    [cell] = db.query("select trials, trials_done from study_cells")
    assert cell == {"trials": 3, "trials_done": 1}, "trials not started are counted"
