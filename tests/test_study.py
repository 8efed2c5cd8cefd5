"""`synth study`: systems x prompt wordings x seeds over one grid, against two loopback
servers with different keys and behaviours (the real openai SDK over HTTP)."""

import asyncio
import json
import signal
import sqlite3
import threading

import pytest
from helpers import one_line_error, run_cli, snapshot, synth_process
from openai_server import Reply
from study_fixtures import KEY_GOOD, KEY_WEAK, PARITY, ZERO, study_file

from synth.study.run import _prepare, estimate_study, run_study
from synth.study.spec import load_study
from tracker.db import open_db


def cells(db_path) -> list[dict]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("select * from study_cells order by system, prompt, seed")]


def test_each_cell_is_a_run_and_each_endpoint_gets_its_own_key(study_env, servers):
    study_file(study_env, servers)
    result = run_cli("study", "run", "study.yaml", "--db", "s.db")
    assert result.exit_code == 0, result.output
    rows = cells(study_env / "s.db")
    assert [(r["system"], r["prompt"], r["seed"]) for r in rows] == [
        (s, p, seed) for s in ("good", "weak") for p in ("default", "paraphrase-1") for seed in (1, 2)
    ]
    assert {r["status"] for r in rows} == {"completed"}
    good, weak = servers
    assert {r.headers["authorization"] for r in good.requests} == {f"Bearer {KEY_GOOD}"}
    assert {r.headers["authorization"] for r in weak.requests} == {f"Bearer {KEY_WEAK}"}
    assert {r.path for r in good.requests} == {"/v1/responses"}
    assert {r.path for r in weak.requests} == {"/v1/chat/completions"}
    # The good system solves every trial at its first attempt; the weak one tries twice.
    assert len(good.requests) == 4 * 2 and len(weak.requests) == 4 * 2 * 2
    with sqlite3.connect(study_env / "s.db") as conn:
        solved = dict(
            conn.execute(
                "select c.system, avg(t.test_acc) from study_runs c join trials t on t.run_id = c.run_id "
                "group by c.system"
            ).fetchall()
        )
    assert solved["good"] == 1.0 and solved["weak"] < 0.8
    for path in [study_env / "s.db", *study_env.glob("runs/**/*")]:  # keys are never stored
        if path.is_file():
            data = path.read_bytes()
            assert KEY_GOOD.encode() not in data and KEY_WEAK.encode() not in data, path


def test_the_same_file_again_resumes_and_a_changed_file_is_refused(study_env, servers):
    study_file(study_env, servers)
    assert run_cli("study", "run", "study.yaml", "--db", "s.db").exit_code == 0
    asked = sum(len(s.requests) for s in servers)
    again = run_cli("study", "run", "study.yaml", "--db", "s.db")
    assert again.exit_code == 0, again.output
    assert sum(len(s.requests) for s in servers) == asked, "a finished study asks nothing again"

    study_file(study_env, servers, attempts=3)
    before = snapshot(study_env)
    one_line_error(
        run_cli("study", "run", "study.yaml", "--db", "s.db"),
        "study 'duel' was started from another file: attempts was 2, now 3",
    )
    assert snapshot(study_env) == before


@pytest.mark.slow
def test_a_study_killed_mid_way_resumes_without_paying_twice(study_env, servers, wait_until):
    good, weak = servers
    slow = Reply(PARITY, delay=0.3)
    good.script = weak.script = lambda path, body: slow
    study_file(study_env, servers, num_trials=4)
    child = synth_process(study_env, "study", "run", "study.yaml", "--db", "s.db")  # keys: study_env

    def recorded() -> int:
        try:
            with sqlite3.connect(f"file:{study_env / 's.db'}?mode=ro", uri=True) as conn:
                return conn.execute("select count(*) from responses").fetchone()[0]
        except sqlite3.Error:
            return 0

    wait_until(lambda: recorded() >= 6, timeout=60)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before, asked = recorded(), len(good.requests) + len(weak.requests)
    result = run_cli("study", "resume", "duel", "--db", "s.db")
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in cells(study_env / "s.db")} == {"completed"}
    # every request of the resume was recorded: nothing recorded before was asked again
    assert len(good.requests) + len(weak.requests) - asked == recorded() - before


BAD = [
    ("name: [oops\n", "not valid YAML"),
    (
        "name: x\nsystems: [{name: a, provider: tree}]\nreasoning_efort: high\n",
        "(did you mean reasoning_effort?)",
    ),
    (
        "name: x\nsystems:\n  - name: a\n    provider: tree\n    modle: m\n",
        "study.yaml:5: unknown key 'modle'",
    ),
    ("name: x\nfunctions: [fn_zz]\nsystems: [{name: a, provider: tree}]\n", "fn_zz"),
    ("name: x\nprompts: [default, nope]\nsystems: [{name: a, provider: tree}]\n", "prompt 'nope' is neither"),
    (
        "name: x\nsystems: [{name: a, provider: tree}, {name: a, provider: formula}]\n",
        "two systems are named 'a'",
    ),
    ("name: x\nsystems: []\n", "systems must be a list of at least one system"),
    ("name: x\nseeds: []\nsystems: [{name: a, provider: tree}]\n", "seeds must list at least one seed"),
    ("name: x\nseeds: [1, 2, 1]\nsystems: [{name: a, provider: tree}]\n", "seeds lists 1 twice"),
    (
        "name: x\nsystems: [{name: a, provider: tree, attempts: 0}]\n",
        "system 'a': --attempts must be at least 1",
    ),
    ("name: x\nsystems: [{name: a, timeout: -1}]\n", "--timeout must be positive"),
    (
        "name: x\nsystems: [{name: a, model: m, api_key_env: NOT_SET_ANYWHERE}]\n",
        "NOT_SET_ANYWHERE, which is not set",
    ),
    (
        "name: x\nsystems: [{name: a, provider: tree, num_trials: many}]\n",
        "--num-trials must be a whole number",
    ),
    ("name: has space\nsystems: [{name: a, provider: tree}]\n", "name must be a word"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m for _, m in BAD])
def test_bad_study_files_are_one_line_before_anything_is_written(study_env, text, message, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    (study_env / "study.yaml").write_text(text)
    before = snapshot(study_env)
    one_line_error(run_cli("study", "run", "study.yaml", "--db", "s.db"), message)
    assert snapshot(study_env) == before


def test_settings_are_read_as_their_flags_read_them(study_env, servers):
    study_file(study_env, servers, **{"max-output-tokens": "500", "reasoning_effort": "xhigh"})
    study = load_study(study_env / "study.yaml")
    config = study.cells[0].config()
    assert (config.max_output_tokens, config.reasoning_effort, config.seed) == (500, "xhigh", 1)
    assert [c.run_id for c in study.cells][:2] == ["duel.good.default.s1", "duel.good.default.s2"]
    assert json.loads(json.dumps(study.spec))["systems"][1]["concurrency"] == 2


def test_the_study_report_compares_the_systems(duel_db):
    text = run_cli("report", "--study", "duel", "--db", duel_db, "--format", "md").output
    table = text.split("## Study duel")[1].split("\n## ")[0]
    assert "| task | L | good | weak |" in table
    assert "| fn_a | 20 | **1.000 [1.000, 1.000] 8/8** |" in table  # the best of its row, in bold
    paired = text.split("## Paired comparisons")[1].split("\n## ")[0]
    (row,) = [line for line in paired.splitlines() if line.startswith("| good | weak | fn_a")]
    diff, ci = row.split(" | ")[5:7]
    low = float(ci.strip("[]").split(",")[0])
    assert float(diff) > 0 and low > 0, row  # the better system, significantly
    duels = text.split("## Wins, ties and losses")[1].split("\n## ")[0]
    (row,) = [line for line in duels.splitlines() if line.startswith("| good | weak |")]
    wins, ties, losses = (int(v) for v in row.strip("| ").split(" | ")[3:6])
    assert wins > losses and wins + ties + losses == 8
    assert "| good | default" not in text.split("## Prompt robustness")[0]
    csv_text = run_cli("report", "--study", "duel", "--db", duel_db, "--format", "csv").output
    header, row = csv_text.splitlines()[:2]
    assert header.startswith(
        "task,length,good mean,good ci_low,good ci_high,good solved,good trials,weak mean"
    )
    assert row.startswith("fn_a,20,1.0,") and row.endswith(",good")


def test_the_study_report_page_and_the_canned_query(duel_db, tmp_path):
    from tracker.browse import make_datasette

    assert run_cli("report", "--study", "duel", "--db", duel_db, "-o", tmp_path / "r.html").exit_code == 0
    page = (tmp_path / "r.html").read_text()
    assert '<section id="study">' in page and "<strong>1.000 [1.000, 1.000] 8/8</strong>" in page
    ds = make_datasette(duel_db)
    try:
        response = asyncio.run(ds.client.get(f"/{duel_db.stem}/study_table.json?_shape=array&study=duel"))
    finally:
        ds.executor.shutdown()
    rows = response.json()
    assert [(r["system"], r["rank"], r["trials"], r["prompts"], r["seeds"]) for r in rows] == [
        ("good", 1, 8, 2, 2),
        ("weak", 2, 8, 2, 2),
    ]
    assert rows[0]["mean_test_acc"] == 1.0 and rows[1]["mean_test_acc"] < 1.0


@pytest.mark.slow
def test_each_endpoint_has_its_own_concurrency_limit(study_env, servers):
    """The weak endpoint allows 2 calls at once, the good one the default 5: the weak
    server's slow replies must not hold the good one back to 2, nor it exceed 2."""
    good, weak = servers
    good.script = lambda path, body: Reply(ZERO, delay=0.3)
    weak.script = lambda path, body: Reply(ZERO, delay=0.3)
    study_file(study_env, servers, num_trials=4, seeds=[1])
    assert run_cli("study", "run", "study.yaml", "--db", "s.db").exit_code == 0
    assert weak.max_in_flight <= 2 < good.max_in_flight <= 5


def test_a_cell_ends_with_its_exports_while_the_other_cells_still_call(study_env, servers, wait_until):
    """The weak endpoint answers only once the good system's cells are over: those are
    completed, their exports on disk, while the weak cells still wait for their replies."""
    good, weak = servers
    answer = threading.Event()
    weak.script = lambda path, body: Reply(ZERO) if answer.wait(60) else Reply(status=500)
    study_file(study_env, servers)
    study = load_study(study_env / "study.yaml")
    thread = threading.Thread(target=run_study, args=(study,), kwargs={"db_path": study_env / "s.db"})
    thread.start()
    try:

        def good_ended() -> bool:
            try:
                rows = cells(study_env / "s.db")
            except sqlite3.Error:
                return False
            return len(rows) == 8 and {r["status"] for r in rows if r["system"] == "good"} == {"completed"}

        assert wait_until(good_ended)
        rows = cells(study_env / "s.db")
        assert {r["status"] for r in rows if r["system"] == "weak"} == {"running"}
        for row in rows:
            if row["system"] == "good":
                folder = study_env / "runs" / row["run_id"]
                manifest = json.loads((folder / "results_attempts_manifest.json").read_text())
                assert manifest["run_id"] == row["run_id"]
                assert sorted(p.name for p in folder.glob("*_trial*.jsonl")) == [
                    "results_attempts_fn_a_L20_trial1.jsonl",
                    "results_attempts_fn_a_L20_trial2.jsonl",
                ]
    finally:
        answer.set()
        thread.join(60)
    assert {r["status"] for r in cells(study_env / "s.db")} == {"completed"}


def test_exports_that_cannot_be_written_leave_the_cell_open_and_a_resume_writes_them(
    study_env, servers, monkeypatch
):
    import synth.study.run as study_run

    write, failed = study_run.write_exports, []

    def disk_full_once(db, run_id, paths):
        if not failed:
            failed.append(run_id)
            raise OSError(28, "No space left on device")
        return write(db, run_id, paths)

    monkeypatch.setattr(study_run, "write_exports", disk_full_once)
    study_file(study_env, servers, seeds=[1])
    result = run_cli("study", "run", "study.yaml", "--db", "s.db")
    assert result.exit_code == 0, result.output
    assert f"{failed[0]}: every result is recorded, but the exports could not be written" in result.output
    status = {r["run_id"]: r["status"] for r in cells(study_env / "s.db")}
    assert status.pop(failed[0]) == "running" and set(status.values()) == {"completed"}
    assert not (study_env / "runs" / failed[0]).exists()
    asked = sum(len(s.requests) for s in servers)
    assert run_cli("study", "resume", "duel", "--db", "s.db").exit_code == 0
    assert sum(len(s.requests) for s in servers) == asked, "the resume only writes the exports"
    assert {r["status"] for r in cells(study_env / "s.db")} == {"completed"}
    assert (study_env / "runs" / failed[0] / "results_attempts_manifest.json").is_file()


def test_a_study_cap_bounds_every_cell_together_and_a_higher_one_goes_on(study_env, servers):
    """Each call costs $40 (40 output tokens at $1 each) and may cost $50 at most: a
    $130 cap over the whole study leaves it at most $130 spent, whichever cells spent it;
    a resume under a higher cap finishes without asking any recorded call again."""
    dear = {"models": {m: {"input": 0, "output": 1_000_000} for m in ("m-good", "m-weak")}}
    (study_env / "prices.json").write_text(json.dumps(dear))
    study_file(
        study_env, servers, seeds=[1], prompts=["default"], max_output_tokens=50, prices_path="prices.json"
    )

    def spent() -> float:
        with sqlite3.connect(study_env / "s.db") as conn:
            return conn.execute("select coalesce(sum(cost_usd), 0) from responses").fetchone()[0]

    capped = run_cli("study", "run", "study.yaml", "--db", "s.db", "--max-cost", 130)
    assert capped.exit_code == 0, capped.output
    assert "stopped at a cost cap" in capped.stderr
    assert 0 < spent() <= 130
    assert "budget_exhausted" in {r["status"] for r in cells(study_env / "s.db")}
    asked, before = sum(len(s.requests) for s in servers), spent()
    resumed = run_cli("study", "resume", "duel", "--db", "s.db", "--max-cost", 1000)
    assert resumed.exit_code == 0, resumed.output
    assert {r["status"] for r in cells(study_env / "s.db")} == {"completed"}
    assert spent() == 40 * sum(len(s.requests) for s in servers)
    assert (spent() - before) / 40 == sum(len(s.requests) for s in servers) - asked


def test_a_study_cap_needs_every_price(study_env, servers):
    study_file(study_env, servers)
    before = snapshot(study_env)
    result = run_cli("study", "run", "study.yaml", "--db", "s.db", "--max-cost", 10)
    one_line_error(result, "--max-cost needs the price of model 'm-good'")
    assert snapshot(study_env) == before


def test_a_dry_run_estimates_the_study_and_brackets_what_it_spends(study_env, servers):
    """Before any call: per system, task and length, what its cells would cost at least
    and at most; the real run's spend lies in between."""
    prices = {"models": {m: {"input": 1_000_000, "output": 1_000_000} for m in ("m-good", "m-weak")}}
    (study_env / "prices.json").write_text(json.dumps(prices))
    study_file(study_env, servers, max_output_tokens=50, prices_path="prices.json")
    dry = run_cli("study", "run", "study.yaml", "--db", "s.db", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert sum(len(s.requests) for s in servers) == 0 and cells(study_env / "s.db") == []
    lines = dry.stdout.splitlines()
    assert lines[0].split()[:3] == ["system", "fn", "L"]
    assert [line.split()[0] for line in lines[2:]] == ["good", "weak", "total"]
    total = estimate_study(load_study(study_env / "study.yaml"), db_path=study_env / "s.db")[-1]
    assert run_cli("study", "run", "study.yaml", "--db", "s.db").exit_code == 0
    with sqlite3.connect(study_env / "s.db") as conn:
        spent = conn.execute("select sum(cost_usd) from responses").fetchone()[0]
    assert total["usd_min"] <= spent <= total["usd_max"]
    assert total["calls_min"] <= sum(len(s.requests) for s in servers) <= total["calls_max"]


def trial_rows(db_path) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "select c.system, c.prompt, c.seed, t.fn, t.length, t.trial, t.status, t.attempts_made, "
            "t.selected_attempt, t.val_acc, t.test_acc from study_runs c join trials t on t.run_id = c.run_id "
            "order by 1, 2, 3, 4, 5, 6"
        ).fetchall()


@pytest.mark.slow  # a study three times
def test_a_sharded_study_merged_is_the_whole_study(study_env, servers):
    study_file(study_env, servers, seeds=[1], prompts=["default"])
    assert run_cli("study", "run", "study.yaml", "--db", "whole.db").exit_code == 0
    for i in (1, 2):
        result = run_cli("study", "run", "study.yaml", "--shard", f"{i}/2", "--db", f"s{i}.db")
        assert result.exit_code == 0, result.output
    one_line_error(
        run_cli("study", "run", "study.yaml", "--shard", "2/2", "--db", "s1.db"), "is shard 1/2", "not 2/2"
    )
    assert len(trial_rows(study_env / "s1.db")) == 2  # each cell's own trials: one of two
    assert run_cli("merge", "m.db", "s1.db", "s2.db").exit_code == 0
    assert trial_rows(study_env / "m.db") == trial_rows(study_env / "whole.db")
    assert {r["status"] for r in cells(study_env / "m.db")} == {"completed"}


@pytest.mark.slow
def test_files_a_study_names_are_read_from_its_folder_wherever_it_runs(study_env, servers, monkeypatch):
    folder = study_env / "study"
    folder.mkdir()
    (folder / "tasks.py").write_text(
        'import synth\n\n@synth.task(kind="binary", lengths=(20,))\n'
        "def odd(x: str) -> int:\n    return x.count('1') % 2\n"
    )
    (folder / "mine.j2").write_text('{% extends "_base.j2" %}{% block input_format %}bits{% endblock %}')
    systems = [{"name": "formula", "provider": "formula", "time_budget": 0.5}]
    study_file(
        folder, servers, functions=["odd"], tasks_files=["tasks.py"], prompts=["mine.j2"], systems=systems
    )
    elsewhere = study_env / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_cli("study", "run", "../study/study.yaml", "--db", "s.db")
    assert result.exit_code == 0, result.output
    with sqlite3.connect("s.db") as conn:
        files = {f for (f,) in conn.execute("select file from run_task_definitions")}
        (study_path,) = conn.execute("select path from studies").fetchone()
        templates = {
            json.loads(c)["prompt_template_path"] for (c,) in conn.execute("select config from runs")
        }
    assert files == {str(folder / "tasks.py")} and templates == {str(folder / "mine.j2")}
    # Recorded whole, the study's file is found again from any folder.
    assert study_path == str(folder / "study.yaml")
    monkeypatch.chdir(study_env)
    assert run_cli("study", "resume", "duel", "--db", elsewhere / "s.db").exit_code == 0


@pytest.mark.slow
def test_the_study_report_shows_each_systems_generalisation_beside_its_accuracy(duel_db, tmp_path):
    verified = run_cli(
        "verify", "duel.good.default.s1", "duel.weak.default.s1", "--lengths", "20", "40", "--db", duel_db
    )
    assert verified.exit_code == 0, verified.output
    text = run_cli("report", "--study", "duel", "--db", duel_db, "--format", "md").output
    table = text.split("## Study duel")[1].split("\n## ")[0]
    # good: parity, exact on all 2^20 inputs and right at 40; weak: a constant, refuted.
    assert "| fn_a | 20 | **1.000 [1.000, 1.000] 8/8; exact 2/2, L=40 1.000** |" in table
    (row,) = [line for line in table.splitlines() if line.startswith("| fn_a | 20 |")]
    assert row.endswith("; exact 0/2, L=40 0.500 |")
    section = text.split("## Generalisation per system")[1].split("\n## ")[0]
    assert "| weak | fn_a | 20 | " in section and "| exhaustive | 2 | 0.500 | 0 | 2 |" in section
    header, row = run_cli(
        "report", "--study", "duel", "--db", duel_db, "--format", "csv"
    ).output.splitlines()[:2]
    found = dict(zip(header.split(","), row.split(",")))
    assert (found["good exact"], found["good checked"], found["good longest_length"]) == ("2", "2", "40")
    assert float(found["weak longest_accuracy"]) == 0.5
    assert run_cli("report", "--study", "duel", "--db", duel_db, "-o", tmp_path / "r.html").exit_code == 0
    page = (tmp_path / "r.html").read_text()
    assert "<strong>1.000 [1.000, 1.000] 8/8; exact 2/2, L=40 1.000</strong>" in page
    assert "Generalisation per system" in page


def test_cells_of_one_grid_load_their_datasets_and_render_each_prompt_once(study_env, servers):
    study_file(study_env, servers)
    with open_db(study_env / "s.db") as db:
        cells = _prepare(db, load_study("study.yaml"), study_env / "s.db", None, lambda m: None, True)
    job = {(c.cell.system.name, c.cell.prompt_label, c.cell.seed): c.jobs["fn_a", 20] for c in cells}
    assert len(job) == 8
    assert job["good", "default", 1] is job["weak", "default", 1]  # one dataset load, one render
    assert job["good", "default", 1].splits is job["good", "paraphrase-1", 1].splits
    assert job["good", "default", 1].prompt != job["good", "paraphrase-1", 1].prompt
    assert job["good", "default", 1].stored.id != job["good", "default", 2].stored.id  # a seed's own data
