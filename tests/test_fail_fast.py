"""A run whose first calls all fail the same way stops with the server's own words
(issue: a parameter the server does not take, nothing listening), and 408 is a timeout."""

import json
import socket

import pytest
from helpers import grid, run_cli
from openai_server import Reply, error_body, in_order

from tracker.db import open_db

KEY = "sk-test-not-a-real-key"
REFUSED = Reply(status=400, raw_body=error_body(400, "Unsupported parameter: 'reasoning.effort'"))
PARITY = '{"code": "def f(x):\\n    return x.count(\\"1\\") % 2"}'


@pytest.fixture
def run(workdir, monkeypatch, openai_server):
    """`synth ARGS` against the server, one call at a time, quick retries: (result, db)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    def run(*args, base_url=None):
        result = run_cli(
            *args,
            "--api-base-url",
            base_url or openai_server.base_url,
            "--concurrency",
            1,
            "--retry-base-delay",
            0.001,
            "--db",
            "runs.db",
        )
        return result, open_db(workdir / "runs.db", readonly=True)

    return run


def counts(db) -> tuple[int, int]:
    """(attempts recorded, trials done)."""
    return (
        db.execute("select count(*) from attempts").fetchone()[0],
        db.execute("select count(*) from trials where status = 'done'").fetchone()[0],
    )


def test_eight_identical_400s_stop_the_run_with_the_servers_words(run, openai_server):
    openai_server.script = lambda path, body: REFUSED
    result, db = run("run", *grid(trials=4, attempts=3), "--run-id", "ff")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "all 8 first model calls failed with bad_request" in error
    assert "400 Unsupported parameter: 'reasoning.effort'" in error
    assert "synth resume ff --db" in error
    assert len(openai_server.requests) == 8, "not the whole attempt budget of 12"
    run_row = db["runs"].get("ff")
    assert run_row["status"] == "failed" and "reasoning.effort" in run_row["error"]
    assert counts(db) == (0, 0), "the set-up fault's attempts are taken back"
    assert db.execute("select count(*) from events where kind = 'call_failed'").fetchone()[0] == 8
    # Fixed (the server now answers): the resume makes every attempt, none lost.
    openai_server.script = lambda path, body: Reply(text=PARITY)
    db.close()
    result, db = run("resume", "ff")
    assert result.exit_code == 0, result.output
    assert db["runs"].get("ff")["status"] == "completed"
    assert counts(db) == (4, 4)
    assert {t["val_acc"] for t in db["trials"].rows} == {1.0}


def test_a_closed_port_fails_the_run_rather_than_completing_it(run):
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result, db = run(
        "run",
        *grid(attempts=2),
        "--max-retries",
        0,
        "--run-id",
        "closed",
        base_url=f"http://127.0.0.1:{port}/v1",
    )
    assert result.exit_code == 1, result.output
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "all 2 first model calls failed with connection" in error and "refused" in error.lower()
    assert db["runs"].get("closed")["status"] == "failed"
    assert counts(db) == (0, 0)


@pytest.mark.parametrize(
    "script, after, status, calls",
    [
        (in_order(REFUSED, Reply(text=PARITY)), "8", "completed", 3),  # an answer: the set-up works
        (in_order(REFUSED, Reply(status=503), REFUSED), "8", "completed", 4),  # not alike
        (lambda path, body: REFUSED, "0", "completed", 4),  # the rule switched off
        (lambda path, body: REFUSED, "2", "failed", 2),
    ],
    ids=["answered", "mixed", "off", "after-2"],
)
def test_the_rule_needs_alike_failures_and_no_answer(run, openai_server, script, after, status, calls):
    openai_server.script = script
    result, db = run(
        "run", *grid(trials=2, attempts=2), "--max-retries", 0, "--fail-fast-after", after, "--run-id", "r"
    )
    assert db["runs"].get("r")["status"] == status, result.output
    assert result.exit_code == (1 if status == "failed" else 0)
    assert len(openai_server.requests) == calls


def test_408_is_a_timeout_and_is_retried(run, openai_server):
    openai_server.script = in_order(Reply(status=408), Reply(text=PARITY))
    result, db = run("run", *grid(attempts=1), "--run-id", "t")
    assert result.exit_code == 0, result.output
    assert len(openai_server.requests) == 2
    [event] = [json.loads(r["data"]) for r in db.query("select data from events where kind = 'call_failed'")]
    assert (event["kind"], event["status_code"], event["wait_s"] is not None) == ("timeout", 408, True)
    assert next(db["trials"].rows)["val_acc"] == 1.0
