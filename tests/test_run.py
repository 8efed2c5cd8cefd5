"""`synth run` end to end: the real openai SDK over HTTP to a scripted loopback server.

The server tells the tasks apart by the training examples in the prompt (the prompt
never names the task): it solves parity_all at once, answers parity_first_half with a
program that does not parse, and palindrome with a wrong program wrapped in prose.
"""

import csv
import functools
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import grid, run_cli
from openai_server import Reply

from reports.analyses import analyse_scope
from reports.scope import resolve_scope
from synth.engine.entry import resume_run
from synth.errors import SynthError
from tracker.db import open_db
from tracker.exports import EXTRA_COLUMNS, PUBLISHED_COLUMNS
from tracker.prices import load_prices

pytestmark = pytest.mark.slow  # full runs end to end

PARITY = '{"code": "def f(x):\\n    return x.count(\\"1\\") % 2"}'
BROKEN = '```json\n{"code": "def f(x) return 1"}\n```'
WRONG = 'Here is my answer:\n{"code": "def f(x):\\n    return 0"}\nGood luck!'


def examples(prompt: str) -> list[tuple[str, int]]:
    return [(x, int(y)) for x, y in re.findall(r"^([01]+) -> ([01])$", prompt, re.M)]


def grid_script(path, body):
    prompt = body["input"][0]["content"] if "input" in body else body["messages"][0]["content"]
    train = examples(prompt)
    assert train, "the prompt shows the training examples"
    if all(y == x.count("1") % 2 for x, y in train):
        return Reply(text=PARITY)
    if all(y == int(x == x[::-1]) for x, y in train):
        return Reply(text=WRONG)
    return Reply(text=BROKEN)


GRID = [
    *grid("fn_a", "fn_b", "fn_g", lengths=(20, 25), trials=2, attempts=3, train=20, val=20, test=40),
]


@pytest.fixture
def workdir(workdir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    return workdir


synth = functools.partial(run_cli, catch_exceptions=False)


@pytest.fixture
def finished_run(workdir, openai_server):
    openai_server.script = grid_script
    result = synth(
        "run",
        *GRID,
        "--api-base-url",
        openai_server.base_url,
        "--run-id",
        "e2e",
        "--db",
        "runs.db",
        "--concurrency",
        4,
    )
    assert result.exit_code == 0, result.output
    assert not list(workdir.glob("runs.db-*")), "closed: the WAL is folded into the file"
    return workdir, openai_server, result


def test_calls_early_stops_and_selection(finished_run):
    workdir, server, result = finished_run
    prompts = [examples(r.body["input"][0]["content"]) for r in server.requests]
    calls = {"parity": 0, "palindrome": 0, "other": 0}
    for train in prompts:
        if all(y == x.count("1") % 2 for x, y in train):
            calls["parity"] += 1
        elif all(y == int(x == x[::-1]) for x, y in train):
            calls["palindrome"] += 1
        else:
            calls["other"] += 1
    # parity: 2 lengths x 2 trials, stopped at attempt 1; the others use all 3 attempts
    assert calls == {"parity": 4, "palindrome": 12, "other": 12}
    body = server.requests[0].body
    assert body["model"] == "gpt-5" and body["reasoning"] == {"effort": "high"}
    assert body["max_output_tokens"] == 20000 and body["text"] == {"verbosity": "low"}
    assert "tools" not in body

    db = open_db(workdir / "runs.db", readonly=True)
    trials = {(t["fn"], t["length"], t["trial"]): t for t in db["trials"].rows}
    assert len(trials) == 12 and all(t["status"] == "done" for t in trials.values())
    for (fn, _, _), t in trials.items():
        if fn == "fn_a":
            assert (t["attempts_made"], t["selected_attempt"], t["stopped_early"]) == (1, 1, 1)
            assert t["val_acc"] == t["test_acc"] == 1.0
        elif fn == "fn_g":  # `return 0` on balanced splits: 0.5 everywhere, ties -> attempt 1
            assert (t["attempts_made"], t["selected_attempt"], t["stopped_early"]) == (3, 1, 0)
            assert t["val_acc"] == t["test_acc"] == 0.5
        else:
            assert (t["attempts_made"], t["val_acc"], t["stopped_early"]) == (3, 0.0, 0)
    failures = db.execute("select failure_class, count(*) from attempts group by 1 order by 1").fetchall()
    assert failures == [(None, 16), ("syntax_error", 12)]
    run = db["runs"].get("e2e")
    assert run["status"] == "completed" and run["finished_at"]
    assert "sk-test" not in json.dumps(dict(run))
    fn_a_line = next(line for line in result.stdout.splitlines() if line.startswith("fn_a"))
    assert "1.000 ± 0.000" in fn_a_line


def test_exports_field_by_field(finished_run):
    workdir, _, _ = finished_run
    out = workdir / "runs" / "e2e"
    jsonl = [json.loads(line) for line in (out / "results_attempts.jsonl").read_text().splitlines()]
    # per grid point: each trial's selected row, then the summary row
    assert [(r["fn"], r["length"], r["is_summary"]) for r in jsonl] == [
        (fn, L, s) for fn in ("fn_a", "fn_b", "fn_g") for L in (20, 25) for s in (False, False, True)
    ]
    for r in jsonl:
        assert (r["run_id"], r["model"], r["reasoning_effort"], r["max_output_tokens"]) == (
            "e2e",
            "gpt-5",
            "high",
            20000,
        )
        assert (r["tool_choice"], r["enable_code_interpreter"], r["global_seed"]) == ("auto", False, 42)
        assert (r["train_size"], r["val_size"], r["test_size"]) == (20, 20, 40)
        assert (r["attempts_requested"], r["num_trials_requested"], r["dry_run"]) == (3, 2, False)
        assert r["dataset_dir"] == ""
    fn_a_summary = jsonl[2]
    assert (fn_a_summary["val_acc"], fn_a_summary["val_acc_std"], fn_a_summary["num_trials"]) == (1.0, 0.0, 2)
    assert fn_a_summary["stopped_early"] == 2 and fn_a_summary["prompt_tokens"] == 2 * 120
    fn_a_row = jsonl[0]
    assert (fn_a_row["attempt"], fn_a_row["trial"], fn_a_row["text"]) == (1, 1, PARITY)
    assert fn_a_row["stopped_early"] is True and fn_a_row["compile_error"] == ""
    assert (fn_a_row["prompt_tokens"], fn_a_row["completion_tokens"], fn_a_row["reasoning_tokens"]) == (
        120,
        40,
        16,
    )
    assert len(examples(fn_a_row["prompt"])) == 20
    fn_b_row = jsonl[6]
    assert (fn_b_row["fn"], fn_b_row["length"], fn_b_row["trial"]) == ("fn_b", 20, 1)
    assert fn_b_row["compile_error"].startswith("syntax_error") and fn_b_row["val_acc"] == 0.0

    with open(out / "results_attempts.csv", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    assert tuple(header[:36]) == PUBLISHED_COLUMNS
    assert len(rows) == 4 * 1 + 4 * 3 + 4 * 3 + 6  # attempts + one summary per grid point
    summaries = [r for r in rows if r[header.index("is_summary")] == "True"]
    assert len(summaries) == 6
    fn_g = [dict(zip(header, r)) for r in summaries][4]
    assert (fn_g["fn"], fn_g["length"], fn_g["val_acc"], fn_g["test_acc_std"]) == ("fn_g", "20", "0.5", "0.0")

    manifest = json.loads((out / "results_attempts_manifest.json").read_text())
    assert manifest["run_id"] == "e2e" and manifest["openai_api_key_set"] is True
    assert manifest["row_stats"] == {
        "total_rows": 34,
        "summary_rows": 6,
        "attempt_rows": 28,
        "compile_error_rows": 12,
    }
    assert manifest["config"]["attempts"] == 3 and manifest["argv"]
    assert len(manifest["dataset_fingerprints"]) == 6
    assert manifest["database"] == str((workdir / "runs.db").resolve())
    logs = sorted(p.name for p in out.glob("results_attempts_fn_*_trial*.jsonl"))
    assert len(logs) == 12 and "results_attempts_fn_g_L25_trial2.jsonl" in logs
    trial_log = [
        json.loads(line) for line in (out / "results_attempts_fn_g_L25_trial2.jsonl").read_text().splitlines()
    ]
    assert [r["attempt"] for r in trial_log] == [1, 2, 3]
    assert "sk-test" not in "".join(p.read_text() for p in out.iterdir())


def test_export_reproduces_the_files_from_the_database(finished_run):
    workdir, server, _ = finished_run
    out = workdir / "runs" / "e2e"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    shutil.rmtree(out)
    calls = len(server.requests)
    result = synth("export", "e2e", "--db", "runs.db")
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert len(server.requests) == calls
    theirs = workdir / "theirs"
    theirs.mkdir()
    (theirs / "results_attempts_manifest.json").write_text('{"run_id": "other"}')
    refused = synth("export", "e2e", "--db", "runs.db", "--out-dir", theirs)
    assert refused.exit_code == 2 and "holds the exports of run 'other'" in refused.stderr
    assert [p.name for p in theirs.iterdir()] == ["results_attempts_manifest.json"]


def test_runs_and_show(finished_run):
    listed = json.loads(synth("runs", "--json", "--db", "runs.db").output)
    assert [
        (r["run_id"], r["status"], r["trials"], r["trials_done"], r["trials_solved"], r["attempts"])
        for r in listed
    ] == [("e2e", "completed", 12, 12, 4, 28)]
    table = synth("runs", "--db", "runs.db").stdout.splitlines()
    assert table[0].split() == [
        "run_id",
        "status",
        "provider",
        "model",
        "points",
        "trials",
        "done",
        "solved",
        "attempts",
        "cost",
        "(USD)",
    ]
    # 28 responses of 120 input and 40 output tokens at gpt-5's price in the package table.
    assert table[2].split() == ["e2e", "completed", "openai", "gpt-5", "6", "12/12", "4", "28", "0.0154"]
    shown = json.loads(synth("show", "e2e", "--json", "--db", "runs.db").output)
    assert [(r["fn"], r["length"], r["val_acc"]) for r in shown] == [
        ("fn_a", 20, 1.0),
        ("fn_a", 25, 1.0),
        ("fn_b", 20, 0.0),
        ("fn_b", 25, 0.0),
        ("fn_g", 20, 0.5),
        ("fn_g", 25, 0.5),
    ]
    missing = synth("show", "nope", "--db", "runs.db")
    assert missing.exit_code == 2 and "no run 'nope'" in missing.stderr
    with sqlite3.connect("runs.db") as conn:  # as when a run was killed before any trial ended
        conn.execute("update runs set status = 'interrupted'")
        conn.execute("update trials set status = 'pending'")
    early = synth("show", "e2e", "--db", "runs.db")
    assert early.exit_code == 0 and "run e2e (interrupted): no trial has finished yet" in early.stderr

    def listed_as(pid):  # the run marked running by process `pid` of this machine
        with sqlite3.connect("runs.db") as conn:
            conn.execute(
                "update runs set status = 'running', environment = json_set(environment, '$.pid', ?)", [pid]
            )
        (row,) = json.loads(synth("runs", "--json", "--db", "runs.db").stdout)
        return row["alive"], synth("runs", "--db", "runs.db").stdout.splitlines()[2]

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that ended: as a run killed with kill -9
    alive, line = listed_as(gone.pid)
    assert alive is False and "running (process gone)" in line
    alive, line = listed_as(os.getpid())
    assert alive is True and "running" in line and "gone" not in line


def test_chat_mode_and_dry_run(workdir, openai_server):
    openai_server.script = grid_script
    result = synth(
        "run",
        *grid(),
        "--api-mode",
        "chat",
        "--api-base-url",
        openai_server.base_url,
        "--run-id",
        "chat",
        "--db",
        "r.db",
        "--reasoning-effort",
        "low",
    )
    assert result.exit_code == 0, result.output
    (request,) = openai_server.requests
    assert request.path.endswith("/chat/completions")
    assert request.body["reasoning_effort"] == "low" and request.body["max_completion_tokens"] == 20000

    dry = synth(
        "run",
        *grid(trials=2),
        "--dry-run",
        "--run-id",
        "dry",
        "--db",
        "r.db",
    )
    assert dry.exit_code == 0, dry.output
    assert "dry run: datasets built and prompts recorded; no model was called" in dry.stderr
    assert "[2/2] fn_a L=20 trial 2: prompt recorded (dry run) | solved 0" in dry.stderr
    # The estimate of the grid (docs/cost.md), not an empty summary: 2 trials of 5 attempts.
    assert dry.stdout.splitlines()[2].split()[:5] == ["fn_a", "20", "2", "-", "10"]
    assert len(openai_server.requests) == 1, "a dry run calls nothing"
    (shown,) = json.loads(synth("show", "dry", "--db", "r.db", "--json").stdout)
    assert [shown[k] for k in ("val_acc", "test_acc", "oracle_test_acc")] == [None] * 3
    db = open_db(workdir / "r.db", readonly=True)
    assert db["runs"].get("dry")["status"] == "dry_run"
    assert {
        (t["status"], t["val_acc"], t["test_acc"]) for t in db["trials"].rows_where("run_id = 'dry'")
    } == {("done", None, None)}, "nothing scored: no accuracy, not 0"
    rows = list(db.query("select status, prompt_hash from attempt_rows where run_id = 'dry'"))
    assert [r["status"] for r in rows] == ["dry_run", "dry_run"]
    assert len(examples(db["prompts"].get(rows[0]["prompt_hash"])["text"])) == 10


def test_resume_refuses_experiment_changes_and_unknown_runs(finished_run):
    changed = synth("run", "--resume", "e2e", "--db", "runs.db", "--model", "gpt-4o", "--seed", 42)
    assert changed.exit_code == 2 and changed.stderr.endswith("cannot change --model\n")
    same = synth("run", "--resume", "e2e", "--db", "runs.db", "--model", "gpt-5", "--seed", 42)
    assert same.exit_code == 0, "flags repeating the stored values change nothing"
    with pytest.raises(SynthError, match="a resume keeps the stored experiment; cannot change --seed$"):
        resume_run("e2e", db_path=Path("runs.db"), overrides={"seed": 7, "model": "gpt-5"})
    unknown = synth("run", "--resume", "nope", "--db", "runs.db")
    assert unknown.exit_code == 2 and "no run 'nope'" in unknown.stderr
    again = synth("run", *GRID, "--run-id", "e2e", "--db", "runs.db")
    assert again.exit_code == 2 and "synth resume e2e" in again.stderr


def test_resume_refuses_a_run_whose_process_still_runs(finished_run):
    """Two processes on one run would pay for the same attempts twice."""
    with subprocess.Popen(["sleep", "60"]) as other:
        with sqlite3.connect("runs.db") as conn:  # as a run still going in another process
            conn.execute(
                "update runs set status = 'running', environment = json_set("
                "environment, '$.pid', ?, '$.host', ?)",
                [other.pid, platform.node()],
            )
        events = open_db("runs.db", readonly=True)["events"].count
        refused = synth("run", "--resume", "e2e", "--db", "runs.db")
        assert refused.exit_code == 2
        assert refused.stderr == (
            f"Error: run 'e2e' is still running (process {other.pid} on "
            "this machine); stop it before resuming, or let it finish\n"
        )
        db = open_db("runs.db", readonly=True)
        run = db["runs"].get("e2e")
        assert (run["status"], json.loads(run["environment"])["pid"]) == ("running", other.pid)
        assert db["events"].count == events, "nothing recorded"
        other.kill()
    resumed = synth("run", "--resume", "e2e", "--db", "runs.db")
    assert resumed.exit_code == 0, "its process is gone: the run is resumed"
    assert open_db("runs.db", readonly=True)["runs"].get("e2e")["status"] == "completed"


def test_resume_takes_the_same_template_under_another_path(workdir):
    (workdir / "t.j2").write_text("Examples:\n{{ examples_block }}\nReply with JSON.")
    args = [
        "run",
        "--provider",
        "tree",
        *grid(attempts=1, train=None, val=None),
        "--db",
        "t.db",
        "--run-id",
        "t",
    ]
    assert synth(*args, "--prompt-template", "t.j2").exit_code == 0
    same = synth("run", "--resume", "t", "--db", "t.db", "--prompt-template", workdir / "t.j2")
    assert same.exit_code == 0, same.output
    (workdir / "t.j2").write_text("{{ examples_block }}")
    other = synth("run", "--resume", "t", "--db", "t.db", "--prompt-template", "t.j2")
    assert other.exit_code == 2 and other.stderr.endswith("cannot change --prompt-template\n")


def test_resume_brings_a_database_from_an_older_version_up_to_date(finished_run):
    with sqlite3.connect("runs.db") as conn:  # undo m004_isolation, as an older version wrote it
        (view,) = conn.execute("select sql from sqlite_master where name = 'attempt_rows'").fetchone()
        conn.execute("drop view attempt_rows")
        conn.execute(view.replace(" e.isolation,", ""))
        conn.execute("alter table evaluations drop column isolation")
        conn.execute("delete from _sqlite_migrations where name = 'm004_isolation'")
    assert synth("show", "e2e", "--db", "runs.db").exit_code == 2, "read commands refuse it"
    resumed = synth("run", "--resume", "e2e", "--db", "runs.db")
    assert resumed.exit_code == 0, resumed.output
    assert synth("show", "e2e", "--db", "runs.db").exit_code == 0


def test_resume_needs_no_source_data_and_keeps_its_new_settings(workdir, uci_dir, monkeypatch):
    args = [
        "run",
        "--provider",
        "tree",
        *grid("fn_a", "fn_q", attempts=1, train=None, val=None, test=200),
        "--run-id",
        "t",
        "--db",
        "t.db",
        "--uci-dir",
        str(uci_dir),
    ]
    assert synth(*args).exit_code == 0
    # the UCI files are gone: a resume reads its datasets from the database alone
    monkeypatch.delenv("SYNTH_UCI_DIR", raising=False)
    monkeypatch.setenv("SYNTH_CACHE_DIR", str(workdir / "empty-cache"))
    monkeypatch.setenv("SYNTH_UCI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SYNTH_CONCURRENCY", "1")
    resumed = synth("run", "--resume", "t", "--db", "t.db", "--dataset-dir", "mirror", "--out-dir", "again")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(p.name for p in (workdir / "mirror").iterdir()) == ["chess", "parity_all"]
    manifest = json.loads((workdir / "again" / "results_attempts_manifest.json").read_text())
    assert (manifest["config"]["out_dir"], manifest["config"]["dataset_dir"]) == ("again", "mirror")
    assert manifest["config"]["concurrency"] == 1, "SYNTH_CONCURRENCY applies to a resume"
    exported = synth("export", "t", "--db", "t.db")
    assert exported.stdout.splitlines()[0] == "again/results_attempts.jsonl"


def test_variadic_flags_also_take_the_equals_form(workdir):
    result = synth(
        "run",
        "--provider",
        "tree",
        "--functions=fn_a",
        "fn_e",
        "--lengths=20",
        "25",
        "--num-trials",
        "1",
        "--attempts",
        "1",
        "--test-size",
        "20",
        "--db",
        "v.db",
        "--run-id",
        "v",
    )
    assert result.exit_code == 0, result.output
    db = open_db(workdir / "v.db", readonly=True)
    assert db.execute("select count(*) from run_datasets").fetchone() == (4,)


def test_flags_a_proposer_never_reads_are_said_to_be_ignored(workdir):
    options = [
        *grid(attempts=1, train=None, val=None),
        "--db",
        "w.db",
        "--dry-run",
    ]
    told = synth(
        "run",
        "--provider",
        "tree",
        *options,
        "--reasoning-effort",
        "low",
        "--time-budget",
        3,
        "--model",
        "my-tree",
        "--run-id",
        "told",
    )
    assert told.exit_code == 0, told.output
    assert told.stderr.startswith(
        "Warning: --reasoning-effort, --time-budget do not apply to --provider tree; ignored\n"
    )
    run = open_db("w.db", readonly=True)["runs"].get("told")
    assert (run["model"], run["api_mode"]) == ("my-tree", None), "a label, and no API"
    with open(workdir / "runs" / "told" / "results_attempts.csv", newline="") as fh:
        (row, _) = csv.DictReader(fh)
    assert [row[k] for k in ("reasoning_effort", "tool_choice", "api_mode")] == ["", "", ""]
    formula = synth("run", "--provider", "formula", *options, "--time-budget", 3, "--run-id", "f")
    assert formula.exit_code == 0 and "Warning" not in formula.stderr
    uci = synth("run", "--provider", "tree", *options, "--uci-dir", ".", "--run-id", "u")
    assert uci.exit_code == 0, uci.output
    assert "Warning: --uci-dir is not used: no UCI task (fn_m to fn_q) in --functions" in uci.stderr


def test_exports_carry_the_sizes_a_capped_dataset_really_has(workdir, uci_dir):
    """chess has 1,527 rows of its smaller class: a 10,000-row test split is capped at
    2,854. The published columns keep the request; the effective sizes follow them."""
    result = synth(
        "run",
        "--provider",
        "tree",
        "--functions",
        "fn_q",
        "--num-trials",
        1,
        "--attempts",
        1,
        "--uci-dir",
        uci_dir,
        "--db",
        "c.db",
        "--run-id",
        "c",
        "--out-dir",
        "out",
    )
    assert result.exit_code == 0, result.output
    with open(workdir / "out" / "results_attempts.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["is_summary"], r["test_size"], r["test_effective"], r["train_effective"]) for r in rows] == [
        ("False", "10000", "2854", "100"),
        ("True", "10000", "2854", "100"),
    ]
    assert int(rows[0]["test_total"]) == 2854
    assert rows[0]["reasoning_effort"] == rows[0]["tool_choice"] == "", "the tree has no such setting"
    manifest = json.loads((workdir / "out" / "results_attempts_manifest.json").read_text())
    (dataset,) = manifest["dataset_fingerprints"]
    assert (dataset["test_effective"], dataset["fingerprint"]) == (2854, rows[0]["dataset_fingerprint"])
    header = list(rows[0])
    for line in (workdir / "out" / "results_attempts.jsonl").read_text().splitlines():
        assert list(json.loads(line)) == header, "JSONL keys follow the CSV's columns"


def test_the_columns_docs_list_are_the_columns_exported():
    text = (Path(__file__).parents[1] / "docs" / "running.md").read_text()
    published = re.search(r"published header in the published order:\s+`([^`]+)`", text)[1]
    ours = re.search(r"Ours follow: `([^`]+)`", text)[1]
    assert [c.strip() for c in " ".join(published.split()).split(",")] == list(PUBLISHED_COLUMNS)
    assert [c.strip() for c in " ".join(ours.split()).split(",")] == list(EXTRA_COLUMNS)


def test_formula_runs_cut_by_max_candidates_are_the_same_twice(workdir):
    """A search cut by --time-budget depends on the machine's speed; one cut by
    --max-candidates is the same on any machine, and so are the exports."""
    args = [
        "run",
        "--provider",
        "formula",
        *grid("fn_a", "fn_e", trials=2, attempts=2, train=None, val=None, test=200),
        "--max-candidates",
        3000,
        "--time-budget",
        600,
        "--db",
        "f.db",
    ]
    runs = []
    for run_id in ("f1", "f2"):
        assert synth(*args, "--run-id", run_id).exit_code == 0
        lines = (workdir / "runs" / run_id / "results_attempts.jsonl").read_text().splitlines()
        runs.append(
            [
                {k: v for k, v in json.loads(line).items() if k not in ("run_id", "duration_ms")}
                for line in lines
            ]
        )
    assert runs[0] == runs[1]
    db = open_db("f.db", readonly=True)
    stopped = [json.loads(r["raw_json"])["stopped"] for r in db["responses"].rows]
    assert "max_candidates" in stopped, "some searches were cut by the count, none by the clock"
    assert "time" not in stopped
    requests = [json.loads(r["request_json"]) for r in db["responses"].rows]
    assert {r["max_candidates"] for r in requests} == {3000}


@pytest.mark.slow
def test_formula_defaults_are_counted_and_a_clock_cap_is_flagged(workdir):
    """By default the search is cut by its count of formulas, never by the clock; a
    safety cap that does fire marks the attempt incomplete (time_cap), the leaderboard
    counts it, and the run records the proposer's settings for the leaderboard."""
    small = grid("fn_a", attempts=1, train=None, val=None, test=100)
    assert synth("run", "--provider", "formula", *small, "--db", "f.db", "--run-id", "d").exit_code == 0
    cap = ["--time-budget", "0.05", "--max-candidates", "100000000"]
    assert synth("run", "--provider", "formula", *small, *cap, "--db", "f.db", "--run-id", "c").exit_code == 0
    db = open_db("f.db")
    rows = db.execute(
        "select t.run_id, s.status, s.incomplete_reason, s.raw_json from responses s "
        "join attempts a on a.id = s.attempt_id join trials t on t.id = a.trial_id"
    ).fetchall()
    seen = {(run_id, status, reason, json.loads(raw)["stopped"]) for run_id, status, reason, raw in rows}
    assert seen == {("d", "completed", None, "max_candidates"), ("c", "incomplete", "time_cap", "time")}
    board = analyse_scope(db, resolve_scope(db, ["d", "c"], None), load_prices(), "f.db").leaderboard
    flagged = {r["setting"]: r["capped"] for r in board}
    assert flagged == {
        "time_budget=60.0, max_candidates=1000000, max_size=8, max_thresholds=8": 0,
        "time_budget=0.05, max_candidates=100000000, max_size=8, max_thresholds=8": 1,
    }


def test_a_run_puts_back_the_sigterm_handler_it_found(workdir):
    """A program that runs grids through the library keeps its own SIGTERM handling."""
    import signal

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        result = synth(
            "run",
            "--provider",
            "tree",
            *grid(attempts=1, train=None, val=None),
            "--db",
            "s.db",
        )
        assert result.exit_code == 0
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_run_stored_with_an_id_now_refused_still_resumes(finished_run):
    """Run ids with spaces were accepted before: such a stored run must stay resumable."""
    with sqlite3.connect("runs.db") as conn:
        for table in ("runs", "trials", "events"):
            conn.execute(f"update {table} set run_id = 'old run' where run_id = 'e2e'")
        conn.execute(
            "update runs set status = 'interrupted', config = json_set(config, "
            "'$.run_id', 'old run', '$.out_dir', 'old')"
        )
    resumed = synth("run", "--resume", "old run", "--db", "runs.db")
    assert resumed.exit_code == 0, resumed.output
    assert synth("run", *GRID, "--run-id", "new run", "--db", "runs.db").exit_code == 2
