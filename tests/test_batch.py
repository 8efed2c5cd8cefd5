"""`synth run --batch`: attempts in waves through the Batch API of the loopback server
(files and batches endpoints, the real openai SDK over HTTP), answered by the same
script a direct run is, so both runs of one grid must export the same results."""

import json
import signal
import sqlite3
from pathlib import Path

import pytest
from helpers import exports, grid, one_line_error, run_cli, snapshot, synth_process
from openai_server import BatchPlan, Reply

from synth.engine import waves

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


def run(server, *args, db="r.db", out="out"):
    """`synth run` of the grid as run "r"."""
    return run_cli("run", *GRID, "--api-base-url", server.base_url, "--run-id", "r", "--db", db, "--out-dir", out, *args)


def rows(db, sql, *params):
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params)]


def waves_of(server) -> list[str]:
    """The wave each batch the server holds was created for, in order."""
    return [b["metadata"]["wave"] for b in server.batches.created]


@pytest.mark.parametrize("mode", ["responses", "chat"])
def test_a_batch_run_exports_what_a_direct_run_does(server, mode):
    direct = run(server, "--api-mode", mode, db="direct.db", out="direct")
    assert direct.exit_code == 0, direct.output
    assert server.batches.created == []
    batch = run(server, "--api-mode", mode, "--batch", *FAST)
    assert batch.exit_code == 0, batch.output

    assert exports(Path("out")) == exports(Path("direct"))
    endpoint = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}[mode]
    assert [(b["endpoint"], b["metadata"]["run_id"], b["completion_window"]) for b in server.batches.created] == [
        (endpoint, "r", "24h")
    ] * 2
    assert waves_of(server) == ["1", "2"]
    recorded = rows("r.db", "select wave, requests, completed, failed, status from batches")
    assert recorded == [
        {"wave": 1, "requests": 4, "completed": 4, "failed": 0, "status": "completed"},
        {"wave": 2, "requests": 2, "completed": 2, "failed": 0, "status": "completed"},
    ]
    bodies = [r.body for r in server.requests if r.path == endpoint]
    lines = [json.loads(x) for b in server.batches.created for x in server.batches.files[b["input_file_id"]].splitlines()]
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
