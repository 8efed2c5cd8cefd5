"""`synth run --batch`: attempts in waves through the Batch API of the loopback server
(files and batches endpoints, the real openai SDK over HTTP), answered by the same
script a direct run is, so both runs of one grid must export the same results."""

import io
import json
import signal
import sqlite3
import threading
from pathlib import Path

import openai
import pytest
from helpers import exports, grid, one_line_error, run_cli, snapshot, synth_process
from openai_server import BatchPlan, OpenAIServer, Reply, Usage

from synth.config import RunConfig
from synth.engine import waves
from synth.engine.entry import start_run

PARITY = '{"code": "def f(x):\\n    return x.count(\\"1\\") % 2"}'
ZERO = '{"code": "def f(x):\\n    return 0"}'
# fn_a (parity) is solved by the first attempt, fn_g never: two waves, then one.
GRID = grid("fn_a", "fn_g", trials=2, attempts=2)
REQUESTS = 2 * 1 + 2 * 2
FAST = ("--batch-poll-interval", "0.01", "--batch-poll-max", "0.05")


def answer(path, body):
    """Parity for fn_a's prompts (whose training examples it fits), else a constant."""
    prompt = (body.get("input") or body.get("messages"))[0]["content"]
    return Reply(PARITY if "-> 1" in prompt and _parity_fits(prompt) else ZERO)


def _parity_fits(prompt: str) -> bool:
    rows = [line.split(" -> ") for line in prompt.splitlines() if " -> " in line and line[0] in "01"]
    return all(int(y) == x.count("1") % 2 for x, y in rows)


@pytest.fixture
def server(workdir, monkeypatch, openai_server):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch")
    openai_server.script = answer
    return openai_server


def run_args(server, *args, db="r.db", out="out") -> list:
    """The arguments of `synth run` of the grid as run "r"."""
    return [
        "run",
        *GRID,
        "--api-base-url",
        server.base_url,
        "--run-id",
        "r",
        "--db",
        db,
        "--out-dir",
        out,
        *args,
    ]


def run(server, *args, **where):
    return run_cli(*run_args(server, *args, **where))


def rows(db, sql, *params):
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params)]


def waves_of(server) -> list[str]:
    """The wave each batch the server holds was created for, in order."""
    return [b["metadata"]["wave"] for b in server.batches.created]


@pytest.mark.parametrize("mode", ["responses", pytest.param("chat", marks=pytest.mark.slow)])
def test_a_batch_run_exports_what_a_direct_run_does(server, mode):
    direct = run(server, "--api-mode", mode, db="direct.db", out="direct")
    assert direct.exit_code == 0, direct.output
    assert server.batches.created == []
    batch = run(server, "--api-mode", mode, "--batch", *FAST)
    assert batch.exit_code == 0, batch.output

    assert exports(Path("out")) == exports(Path("direct"))
    endpoint = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}[mode]
    assert [
        (b["endpoint"], b["metadata"]["run_id"], b["completion_window"]) for b in server.batches.created
    ] == [(endpoint, "r", "24h")] * 2
    assert waves_of(server) == ["1", "2"]
    recorded = rows("r.db", "select wave, requests, completed, failed, status from batches")
    assert recorded == [
        {"wave": 1, "requests": 4, "completed": 4, "failed": 0, "status": "completed"},
        {"wave": 2, "requests": 2, "completed": 2, "failed": 0, "status": "completed"},
    ]
    bodies = [r.body for r in server.requests if r.path == endpoint]
    lines = [
        json.loads(x)
        for b in server.batches.created
        for x in server.batches.files[b["input_file_id"]].splitlines()
    ]
    assert sorted(json.dumps(x["body"], sort_keys=True) for x in lines) == sorted(
        json.dumps(b, sort_keys=True) for b in bodies
    )
    assert "wave 2: batch" in batch.stderr and "2 of 2 requests done" in batch.stderr
    (direct,) = json.loads(run_cli("runs", "--json", "--db", "direct.db").stdout)
    (batch,) = json.loads(run_cli("runs", "--json", "--db", "r.db").stdout)
    assert direct["waves"] == []
    assert [(w["wave"], w["statuses"], w["requests"]) for w in batch["waves"]] == [
        (1, "completed", 4),
        (2, "completed", 2),
    ]
    assert batch["cost_usd"] == pytest.approx(direct["cost_usd"] / 2)  # Batch prices
    assert "2: completed, 2/2 answered" in run_cli("runs", "--db", "r.db").stdout


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    """The grid's exports when run directly (no --batch), once for the module."""
    tmp = tmp_path_factory.mktemp("direct")
    with OpenAIServer(answer) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", "sk-test-batch")
        result = run_cli(*run_args(server, db=tmp / "d.db", out=tmp / "out"))
    assert result.exit_code == 0, result.output
    return exports(tmp / "out")


def recorded_batch_ids(db="r.db"):
    return [r["batch_id"] for r in rows(db, "select batch_id from batches order by id")]


STOPS = [
    ("wave_in_progress", signal.SIGKILL),
    ("between_upload_and_batch", signal.SIGKILL),
    ("wave_in_progress", signal.SIGTERM),  # marked interrupted, the batch left running
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "moment, stop", STOPS, ids=["kill-9-mid-wave", "kill-9-before-batch-recorded", "term"]
)
def test_a_stopped_batch_run_resumes_submitting_each_wave_once(
    server, direct, workdir, moment, stop, wait_until
):
    if moment == "wave_in_progress":  # wave 2's batch runs until the runner is killed
        server.batches.plan = lambda n: BatchPlan(polls=10**9 if n == 2 else 1)
        reached = lambda: len(server.batches.created) == 2 and None not in recorded_batch_ids()  # noqa: E731
    else:  # wave 2's batch is created, but its id never reaches the runner
        server.batches.plan = lambda n: BatchPlan(hold=n == 2)
        reached = lambda: len(server.batches.created) == 2  # noqa: E731
    child = synth_process(workdir, *run_args(server, "--batch", *FAST))
    assert wait_until(reached, timeout=60), child.communicate()
    child.send_signal(stop)
    _, err = child.communicate(timeout=60)
    if stop == signal.SIGTERM:
        assert child.returncode == 130 and "Resume it with: synth resume r" in err, err
        assert rows("r.db", "select status from runs") == [{"status": "interrupted"}]
    server.batches.plan = lambda n: BatchPlan()
    server.batches.release.set()
    ids = recorded_batch_ids()
    assert len(ids) == 2 and (ids[1] is None) == (moment == "between_upload_and_batch")
    asked = len(server.requests)

    result = run_cli("resume", "r", "--db", "r.db", *FAST)
    assert result.exit_code == 0, result.output
    assert waves_of(server) == ["1", "2"], "exactly one batch per wave"
    assert recorded_batch_ids() == [b["id"] for b in server.batches.created]
    assert exports(Path("out")) == direct
    found = any(r.path.startswith("/v1/batches?") and "limit=100" in r.path for r in server.requests[asked:])
    assert found == (moment == "between_upload_and_batch"), (
        "an unrecorded batch is looked for by its metadata"
    )
    assert not [r for r in server.requests[asked:] if r.path == "/v1/files"], "no file uploaded again"


def failing_first(status: int):
    """The script: the first line answered fails with ``status``, the rest as `answer`."""
    calls = []

    def script(path, body):
        calls.append(path)
        return Reply(status=status) if len(calls) == 1 else answer(path, body)

    return script


def test_a_failed_line_is_retried_in_the_next_wave(server, direct):
    server.script = failing_first(500)
    result = run(server, "--batch", *FAST)
    assert result.exit_code == 0, result.output
    assert exports(Path("out")) == direct, "the retried line's answer is recorded as its attempt"
    assert waves_of(server) == ["1", "2"]
    second = json.loads(server.batches.files[server.batches.created[1]["input_file_id"]].splitlines()[0])
    assert second["custom_id"] == "trial-1-attempt-1", "the retry leads the next wave"
    (event,) = rows("r.db", "select level, data from events where kind = 'call_failed'")
    assert event["level"] == "warning"
    said = json.loads(event["data"])
    assert {k: said[k] for k in ("kind", "status_code", "call", "wait_s")} == {
        "kind": "server",
        "status_code": 500,
        "call": 1,
        "wait_s": 0.0,
    }


def test_a_line_refused_is_spent_as_its_attempt(server):
    server.script = failing_first(400)
    result = run(server, "--batch", *FAST)
    assert result.exit_code == 0, result.output
    (failed,) = rows(
        "r.db", "select attempt, status, failure_class from attempts where status = 'call_failed'"
    )
    assert failed == {"attempt": 1, "status": "call_failed", "failure_class": "call_bad_request"}
    assert waves_of(server) == ["1", "2"]


def test_a_line_refused_for_the_key_stops_the_run(server):
    server.script = failing_first(401)
    result = run(server, "--batch", *FAST)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1].startswith("Error: openai-responses: Error code: 401")
    assert rows("r.db", "select status from runs") == [{"status": "failed"}]
    assert waves_of(server) == ["1"], "no wave after a fatal line"


def test_an_expired_batch_has_its_unanswered_requests_sent_again(server, direct):
    server.batches.plan = lambda n: BatchPlan(outcome="expired", answered=1) if n == 1 else BatchPlan()
    result = run(server, "--batch", *FAST)
    assert result.exit_code == 0, result.output
    assert exports(Path("out")) == direct
    assert rows("r.db", "select wave, requests, status from batches") == [
        {"wave": 1, "requests": 4, "status": "expired"},
        {"wave": 2, "requests": 3, "status": "completed"},  # the three it never ran
        {"wave": 3, "requests": 2, "status": "completed"},  # fn_g's second attempts
    ]
    assert rows("r.db", "select * from events where kind = 'call_failed'") == [], "no retry spent"


def test_a_batch_cancelled_by_hand_has_its_requests_sent_again(server, direct, wait_until):
    server.batches.plan = lambda n: BatchPlan(polls=10**9 if n == 1 else 1)

    def cancel_the_first():  # as one would from the dashboard, while the run waits
        assert wait_until(lambda: server.batches.created)
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-batch")
        client.batches.cancel(server.batches.created[0]["id"])

    canceller = threading.Thread(target=cancel_the_first)
    canceller.start()
    result = run(server, "--batch", *FAST)
    canceller.join()
    assert result.exit_code == 0, result.output
    assert exports(Path("out")) == direct
    assert [(r["wave"], r["requests"], r["status"]) for r in rows("r.db", "select * from batches")] == [
        (1, 4, "cancelled"),
        (2, 4, "completed"),
        (3, 2, "completed"),
    ]


SPLITS = [
    ("MAX_REQUESTS", 3, [3, 1, 2], [(1, 2), (2, 1)]),
    pytest.param(
        "MAX_BYTES", 1, [1, 1, 1, 1, 1, 1], [(1, 4), (2, 2)], marks=pytest.mark.slow
    ),  # a line alone
]


@pytest.mark.parametrize("limit, value, sizes, per_wave", SPLITS)
def test_a_wave_larger_than_a_batch_is_split(server, direct, monkeypatch, limit, value, sizes, per_wave):
    monkeypatch.setattr(waves, limit, value)
    result = run(server, "--batch", *FAST)
    assert result.exit_code == 0, result.output
    assert exports(Path("out")) == direct
    assert [r["requests"] for r in rows("r.db", "select requests from batches order by id")] == sizes
    assert [(w["wave"], w["batches"]) for w in rows("r.db", "select * from batch_waves")] == per_wave


def test_the_cost_cap_cuts_a_wave_to_what_it_can_afford(server, tmp_path):
    # $1 an output token, input free; at Batch prices a call reserves 50 x $0.5 and costs 40 x $0.5
    (tmp_path / "dear.json").write_text(
        json.dumps({"models": {"gpt-test": {"input": 0, "output": 1_000_000}}})
    )
    server.script = lambda path, body: Reply(ZERO, usage=Usage(output_tokens=40))
    capped = ("--model", "gpt-test", "--prices", "dear.json", "--max-output-tokens", "50", "--batch", *FAST)
    result = run(server, *capped, "--max-cost", "60")
    assert result.exit_code == 0, result.output
    assert rows("r.db", "select wave, requests from batches") == [{"wave": 1, "requests": 2}], "2 of 4 fit"
    assert rows("r.db", "select status from runs") == [{"status": "budget_exhausted"}]
    assert rows("r.db", "select cost_usd from run_costs") == [{"cost_usd": 40.0}]

    resumed = run_cli("resume", "r", "--db", "r.db", "--max-cost", "1000")
    assert resumed.exit_code == 0, resumed.output
    assert [r["requests"] for r in rows("r.db", "select requests from batches order by id")] == [2, 4, 2]
    assert rows("r.db", "select cost_usd from run_costs") == [{"cost_usd": 8 * 20.0}]


def test_batch_with_an_offline_proposer_is_refused_before_anything_is_written(workdir):
    before = snapshot(workdir)
    one_line_error(run_cli("run", *GRID, "--provider", "tree", "--batch"), "--batch needs --provider openai")
    assert snapshot(workdir) == before


def test_a_server_without_the_batch_api_is_refused_before_anything_is_written(server, workdir):
    server.batches.enabled = False
    before = snapshot(workdir)
    one_line_error(run(server, "--batch"), "has no Batch API (404 on /v1/batches); run without --batch")
    assert snapshot(workdir) == before
    assert [r.path for r in server.requests] == ["/v1/batches?limit=1"]


@pytest.mark.slow
def test_a_study_system_may_run_in_batch_mode(server, workdir):
    (workdir / "study.yaml").write_text(
        "name: halves\n"
        "functions: [fn_a, fn_g]\nlengths: [20]\nnum_trials: 2\nattempts: 2\nseeds: [42]\n"
        "train_size: 10\nval_size: 10\ntest_size: 20\nbatch_poll_interval: 0.01\nbatch_poll_max: 0.05\n"
        f"systems:\n  - {{name: direct, api_base_url: '{server.base_url}'}}\n"
        f"  - {{name: batch, api_base_url: '{server.base_url}', batch: true}}\n"
    )
    result = run_cli("study", "run", "study.yaml", "--db", "s.db")
    assert result.exit_code == 0, result.output
    assert {b["metadata"]["run_id"] for b in server.batches.created} == {"halves.batch.default.s42"}
    assert waves_of(server) == ["1", "2"]
    responses = rows(
        "s.db",
        "select t.run_id, count(*) as n, sum(s.cost_usd) as usd from responses s join attempts a on a.id = "
        "s.attempt_id join trials t on t.id = a.trial_id group by t.run_id order by t.run_id",
    )
    assert [r["n"] for r in responses] == [REQUESTS, REQUESTS]
    assert responses[0]["usd"] == pytest.approx(responses[1]["usd"] / 2), "the batch cell at Batch prices"


def test_a_dry_run_estimates_a_batch_run_at_batch_prices(workdir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch")
    totals = {}
    for batch in (False, True):
        config = RunConfig(
            functions=["fn_a"],
            lengths=[20],
            train_size=10,
            val_size=10,
            test_size=20,
            dry_run=True,
            batch=batch,
        )
        totals[batch] = start_run(config, db_path=workdir / "d.db", progress_stream=io.StringIO()).estimate[
            -1
        ]
    assert totals[True]["usd_max"] == pytest.approx(totals[False]["usd_max"])
    assert totals[True]["batch_usd_max"] == pytest.approx(totals[False]["batch_usd_max"])
    assert totals[True]["batch_usd_max"] == pytest.approx(totals[True]["usd_max"] / 2)


@pytest.mark.slow  # a direct run and two batch shards
def test_batch_shards_merged_keep_their_batches_and_equal_the_whole_run(server):
    whole = run(server, db="whole.db", out="whole")
    assert whole.exit_code == 0, whole.output
    for i in (1, 2):
        shard = run(server, "--batch", *FAST, "--shard", f"{i}/2", db=f"s{i}.db", out=f"s{i}")
        assert shard.exit_code == 0, shard.output
    sent = rows("s1.db", "select key, batch_id, wave from batches") + rows(
        "s2.db", "select key, batch_id, wave from batches"
    )
    assert len(sent) == len(server.batches.created)
    assert run_cli("merge", "m.db", "s1.db", "s2.db").exit_code == 0
    assert run_cli("export", "r", "--db", "m.db", "--out-dir", "merged").exit_code == 0
    assert exports(Path("merged")) == exports(Path("whole"))
    merged = "select key, batch_id, wave from batches order by key"
    assert rows("m.db", merged) == sorted(sent, key=lambda r: r["key"])
    assert run_cli("merge", "m.db", "s1.db", "s2.db").exit_code == 0  # again: nothing changes
    assert rows("m.db", merged) == sorted(sent, key=lambda r: r["key"])
