"""Crash and resume: `synth run` killed with SIGKILL at different points (and stopped with
Ctrl-C), then `synth resume`, must end with the exports of an uninterrupted run,
no duplicate rows, and no recorded attempt requested again.

The runner is a real subprocess; the loopback server answers by the prompt's content
only, so every run of the grid gives the same results whatever the timing.
"""

import json
import os
import re
import signal
import sqlite3
import time

import helpers
import pytest
from click.testing import CliRunner
from helpers import exports, grid
from openai_server import Reply

from synth.cli import cli

pytestmark = pytest.mark.slow  # runs killed (SIGKILL, Ctrl-C) at every point, then resumed

PARITY = '{"code": "def f(x):\\n    return x.count(\\"1\\") % 2"}'
# Wrong and slow (5 ms a row), so evaluations last long enough to be killed during.
SLOW_WRONG = '{"code": "import time\\ndef f(x):\\n    time.sleep(0.005)\\n    return 0"}'
GRID = [
    *grid("fn_a", "fn_g", lengths=(20, 25), trials=2, attempts=3, train=20, val=20, test=40),
]
CALLS = 2 * 2 * 1 + 2 * 2 * 3  # fn_a stops at attempt 1; fn_g uses all three
ROWS_PER_TABLE = {
    "trials": 8,
    "attempts": CALLS,
    "responses": CALLS,
    "evaluations": CALLS,
    "prompts": 4,
    "programs": 2,
}


def answer(path, body):
    prompt = body["input"][0]["content"]
    train = [(x, int(y)) for x, y in re.findall(r"^([01]+) -> ([01])$", prompt, re.M)]
    if all(y == x.count("1") % 2 for x, y in train):
        return Reply(text=PARITY)
    return Reply(text=SLOW_WRONG)


def synth_process(tmp_path, *args, background=False):
    """`synth run` in a child process; ``background``: as a script's `synth run &`
    starts it, with Ctrl-C (SIGINT) ignored."""
    ignore_ctrl_c = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None
    return helpers.synth_process(tmp_path, "run", *args, key="sk-test-resume", preexec_fn=ignore_ctrl_c)


def query(db_path, sql):
    if not db_path.exists():
        return None
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchone()
    except sqlite3.OperationalError:  # not migrated yet
        return None
    finally:
        conn.close()


def wait_for(condition, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert proc.poll() is None, f"the run ended before the kill point: {proc.communicate()}"
        time.sleep(0.005)
    raise AssertionError("kill point never reached")


def counts(db_path):
    return {t: query(db_path, f"select count(*) from {t}")[0] for t in ROWS_PER_TABLE}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The uninterrupted run."""
    from openai_server import OpenAIServer

    tmp = tmp_path_factory.mktemp("baseline")
    with OpenAIServer(answer) as server:
        proc = synth_process(
            tmp, *GRID, "--api-base-url", server.base_url, "--run-id", "r", "--db", "r.db", "--out-dir", "out"
        )
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert len(server.requests) == CALLS
    assert counts(tmp / "r.db") == ROWS_PER_TABLE
    return exports(tmp / "out")


def run_until_killed(tmp_path, server, kill_point, signal_=signal.SIGKILL, background=False):
    """Start the run, send the signal at the kill point, return what the server had seen."""
    db = tmp_path / "r.db"
    holder = {}

    def script(path, body):
        holder.setdefault("seen", 0)
        holder["seen"] += 1
        if kill_point == "mid_call" and holder["seen"] == 6:
            os.kill(holder["proc"].pid, signal_)
            time.sleep(0.5)
        return answer(path, body)

    server.script = script
    if kill_point == "before_first_call":
        server.script = lambda path, body: (time.sleep(2), answer(path, body))[1]
    proc = synth_process(
        tmp_path,
        *GRID,
        "--api-base-url",
        server.base_url,
        "--run-id",
        "r",
        "--db",
        "r.db",
        "--out-dir",
        "out",
        background=background,
    )
    holder["proc"] = proc
    conditions = {
        "before_first_call": lambda: query(db, "select count(*) from runs") == (1,),
        "during_evaluation": lambda: (
            (query(db, "select count(*) from attempts where status = 'pending_eval'") or (0,))[0] >= 1
        ),
        "between_trials": lambda: (
            (query(db, "select count(*) from trials where status = 'done'") or (0,))[0] >= 3
        ),
        "during_export": lambda: (tmp_path / "out" / "results_attempts.jsonl").exists(),
    }
    if kill_point in conditions:
        wait_for(conditions[kill_point], proc)
        proc.send_signal(signal_)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, len(server.requests)


KILL_POINTS = ["before_first_call", "mid_call", "during_evaluation", "between_trials", "during_export"]


@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_kill_9_then_resume_loses_nothing(kill_point, tmp_path, openai_server, baseline):
    code, _, requested = run_until_killed(tmp_path, openai_server, kill_point)
    assert code == -signal.SIGKILL
    db = tmp_path / "r.db"
    recorded = query(db, "select count(*) from responses")[0]
    assert query(db, "pragma integrity_check") == ("ok",)
    (listed,) = json.loads(CliRunner().invoke(cli, ["runs", "--json", "--db", str(db)]).stdout)
    if listed["status"] == "completed":  # the kill came after the exports were all written
        assert kill_point == "during_export"
        assert (tmp_path / "out" / "results_attempts_manifest.json").exists(), "completed: exported"
    else:
        assert (listed["status"], listed["alive"]) == ("running", False), "its process is gone"

    resumed = synth_process(tmp_path, "--resume", "r", "--db", "r.db")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    # every call recorded before the kill is never asked again; only the lost in-flight ones are
    assert len(openai_server.requests) == CALLS + (requested - recorded)
    assert counts(db) == ROWS_PER_TABLE
    assert query(db, "select status from runs") == ("completed",)
    assert query(db, "select count(*) from events where kind = 'resumed'") == (1,)
    assert exports(tmp_path / "out") == baseline
    assert not list((tmp_path / "out").glob(".*.part")), "what a killed export left is gone"
    lines = [line for line in err.splitlines() if line.startswith("[")]
    if kill_point == "during_export":  # every trial had finished: none is run again
        assert lines == []
    else:
        solved = query(db, "select count(*) from trials where val_acc = 1.0")[0]
        assert f"| solved {solved} |" in lines[-1], "progress counts trials solved before the kill"


@pytest.mark.parametrize(
    "signal_, background",
    [
        (signal.SIGINT, False),
        (signal.SIGTERM, False),
        (signal.SIGTERM, True),
    ],
    ids=["ctrl-c", "kill", "kill-in-background"],
)
def test_ctrl_c_or_kill_marks_the_run_interrupted_and_says_how_to_resume(
    signal_, background, tmp_path, openai_server, baseline
):
    code, err, _ = run_until_killed(tmp_path, openai_server, "between_trials", signal_, background)
    assert code == 130
    assert f"synth resume r --db {tmp_path / 'r.db'}" in err
    assert "Traceback" not in err
    db = tmp_path / "r.db"
    assert query(db, "select status from runs") == ("interrupted",)
    assert query(db, "select count(*) from events where kind = 'interrupted'") == (1,)
    resumed = synth_process(tmp_path, "--resume", "r", "--db", "r.db")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert counts(db) == ROWS_PER_TABLE
    assert exports(tmp_path / "out") == baseline
