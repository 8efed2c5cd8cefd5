"""`synth browse`: Datasette over a run database built with the tracker API, through
Datasette's test client (asyncio.run; no pytest-asyncio) and once over real HTTP."""

import asyncio
import hashlib
import json
import re
import select
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import sqlite_utils
from click.testing import CliRunner
from helpers import CLEAN_ROWS, LEAKY_ROWS, dataset_meta, started_run

from synth.cli import cli
from tracker import runs as store
from tracker.browse import listen, make_datasette, metadata, serve
from tracker.datasets import save_dataset
from tracker.db import StoreError, open_db
from tracker.migrations import migrations

PARITY = "def f(x):\n    return x.count('1') % 2  # popcount"
BROKEN = "def f(x) return 1"
NOT_RUNNABLE = "import nosuchmodule\ndef f(x):\n    return 1"
WRONG = "def f(x):\n    return int(x[0] == x[-1])"
CONFIG = '{"reasoning_effort": "high", "attempts": 3}'
PROMPT = "Find f. Examples:\n0001 -> 1\n0000 -> 0"

# fn_g's dataset leaks (helpers.LEAKY_ROWS).
CLEAN = CLEAN_ROWS
LEAKY = LEAKY_ROWS
USAGE = {"input_tokens": 100, "cached_tokens": 10, "output_tokens": 50, "reasoning_tokens": 20}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def dataset(db, fn: str, rows) -> int:
    return save_dataset(db, dataset_meta(sha(fn), fn), rows)


def attempt(db, trial_id, n, status, *, code=None, failure=None, error=None, reply=True, evaluation=None):
    """One recorded attempt; the reply (when there is one) carries ``code`` as JSON."""
    reply = {**USAGE, "status": "completed", "text": json.dumps({"code": code})} if reply else None
    attempt_id = store.record_attempt(
        db,
        trial_id,
        {"attempt": n, "status": status, "failure_class": failure, "error": error},
        prompt=(sha(PROMPT), PROMPT),
        response=reply,
        program=(sha(code), code) if code else None,
    )
    if evaluation:
        status, val, test = evaluation
        store.record_evaluation(
            db,
            attempt_id,
            {
                "status": status,
                "val_acc": val,
                "test_acc": test,
                "errors": json.dumps([f"{status} here"]),
            },
        )


def run(db, run_id, model, grid, num_trials, dry_run=0):
    record = {"run_id": run_id, "provider": "openai", "model": model, "dry_run": dry_run, "config": CONFIG}
    return [t["id"] for t in started_run(db, record, grid, num_trials)]


def finish(db, trial_id, selected, val, test):
    store.finish_trial(db, trial_id, {"selected_attempt": selected, "val_acc": val, "test_acc": test})


@pytest.fixture
def db_path(tmp_path):
    """r1 (gpt-5): fn_a solved in trial 1, failed in trial 2; fn_g one trial done, one
    pending. r2 (gpt-5-mini) solves fn_a once. r3 is a dry run."""
    path = tmp_path / "synth.db"
    db = open_db(path)
    clean, leaky = dataset(db, "fn_a", CLEAN), dataset(db, "fn_g", LEAKY)
    a1, a2, g1, _ = run(db, "r1", "gpt-5", [("fn_a", 4, clean), ("fn_g", 4, leaky)], 2)
    attempt(db, a1, 1, "evaluated", code=WRONG, evaluation=("ok", 0.5, 0.5))
    attempt(db, a1, 2, "evaluated", code=PARITY, evaluation=("ok", 1.0, 1.0))
    finish(db, a1, 2, 1.0, 1.0)
    attempt(db, a2, 1, "extract_failed", code=BROKEN, failure="syntax_error", error="invalid syntax")
    attempt(db, a2, 2, "evaluated", code=NOT_RUNNABLE, evaluation=("compile_error", 0.0, 0.0))
    attempt(db, a2, 3, "call_failed", failure="call_server", error="500", reply=False)
    finish(db, a2, 1, 0.0, 0.0)
    attempt(db, g1, 1, "evaluated", code=WRONG, evaluation=("ok", 0.75, 0.5))
    finish(db, g1, 1, 0.75, 0.5)
    (m1,) = run(db, "r2", "gpt-5-mini", [("fn_a", 4, clean)], 1)
    attempt(db, m1, 1, "evaluated", code=PARITY, evaluation=("ok", 1.0, 0.75))
    finish(db, m1, 1, 1.0, 0.75)
    (d1,) = run(db, "r3", "gpt-5", [("fn_a", 4, clean)], 1, dry_run=1)
    attempt(db, d1, 1, "dry_run", reply=False)
    finish(db, d1, 1, 0.0, 0.0)
    db.conn.close()
    return path


@pytest.fixture
def ds(db_path):
    ds = make_datasette(db_path)
    yield ds
    for database in ds.databases.values():
        database.close()
    ds.executor.shutdown()


@pytest.fixture
def get(ds):
    """GET a path through Datasette's test client; JSON paths give the decoded body."""

    def get(path, status=200):
        response = asyncio.run(ds.client.get(path))
        assert response.status_code == status, (path, response.text[:500])
        return response.json() if ".json" in path else response.text

    return get


@pytest.fixture
def schema(db_path):
    """Every table and view of the database: name -> (columns, rows)."""
    db = sqlite_utils.Database(db_path)
    yield {t.name: (set(t.columns_dict), t.count) for t in [*db.tables, *db.views]}
    db.close()


@pytest.mark.slow
def test_every_table_and_view_serves_all_its_rows(schema, get):
    assert {"runs", "attempts", "programs_fts", "attempt_rows", "trial_results"} <= set(schema)
    for name, (_, count) in schema.items():
        assert "<table" in get(f"/synth/{name}") or count == 0, name
        assert len(get(f"/synth/{name}.json?_shape=array&_size=max")) == count, name


def test_metadata_describes_the_real_schema(schema, ds, get):
    meta = metadata("synth")["databases"]["synth"]
    hidden = set(asyncio.run(ds.get_database("synth").hidden_table_names()))
    for name, (columns, _) in schema.items():
        if name in hidden:
            continue
        table = meta["tables"][name]  # every visible table and view is described
        assert table["description"], name
        named = {*table.get("columns", {}), *table.get("facets", []), *table.get("sortable_columns", [])}
        named |= {table["sort_desc"]} if "sort_desc" in table else set()
        assert named <= columns, (name, named - columns)
    assert meta["tables"]["trials"]["description"] in get("/synth/trials")


def test_facets_appear(get):
    facets = get("/synth/attempt_rows.json")["facet_results"]
    assert {"fn", "length", "model", "status", "failure_class"} <= set(facets)
    failures = {f["value"]: f["count"] for f in facets["failure_class"]["results"]}
    assert failures == {"syntax_error": 1, "call_server": 1}
    models = {f["value"]: f["count"] for f in facets["model"]["results"]}
    assert models == {"gpt-5": 7, "gpt-5-mini": 1}
    assert set(get("/synth/trial_results.json")["facet_results"]) >= {"fn", "length", "model", "status"}


def test_sortable_columns_are_the_listed_ones(get):
    rows = get("/synth/trials.json?_shape=array&_sort_desc=test_acc")
    assert [r["test_acc"] for r in rows][:2] == [1.0, 0.75]
    assert get("/synth/responses.json?_sort=text", status=500)["error"] == "Cannot sort table by text"


def canned(get, query, **params):
    query_string = "&".join(f"{k}={v}" for k, v in params.items())
    return get(f"/synth/{query}.json?_shape=array&{query_string}")


def test_leaderboard_ranks_models_per_task_and_length_without_dry_runs(get):
    rows = canned(get, "leaderboard")
    got = [(r["fn"], r["rank"], r["model"], r["trials"], r["solved"], r["mean_test_acc"]) for r in rows]
    assert got == [
        ("fn_a", 1, "gpt-5-mini", 1, 1, 0.75),
        ("fn_a", 2, "gpt-5", 2, 1, 0.5),
        ("fn_g", 1, "gpt-5", 1, 0, 0.5),
    ]
    assert rows[1]["min_test_acc"] == 0.0 and rows[1]["mean_attempts"] == 2.5
    assert [(r["effort"], r["attempts"]) for r in rows] == [("high", 3)] * 3  # settings kept apart
    assert [r["model"] for r in canned(get, "leaderboard", run_id="r2")] == ["gpt-5-mini"]


def test_the_leaderboard_keeps_settings_apart(db_path, get):
    with sqlite3.connect(db_path) as conn:  # r2 becomes gpt-5 at another effort than r1's
        conn.execute(
            "update runs set model = 'gpt-5', "
            "config = json_set(config, '$.reasoning_effort', 'low') where run_id = 'r2'"
        )
    rows = [r for r in canned(get, "leaderboard") if r["fn"] == "fn_a"]
    assert sorted((r["model"], r["effort"], r["runs"], r["test_size"]) for r in rows) == [
        ("gpt-5", "high", 1, 2),
        ("gpt-5", "low", 1, 2),
    ]


def test_selected_program_of_each_trial(get):
    rows = canned(get, "selected_programs", run_id="r1")
    assert [(r["fn"], r["trial"], r["selected_attempt"], r["code"]) for r in rows] == [
        ("fn_a", 1, 2, PARITY),
        ("fn_a", 2, 1, BROKEN),
        ("fn_g", 1, 1, WRONG),
    ]
    assert len(canned(get, "selected_programs")) == 5  # with r2's trial and r3's (no program)


def test_programs_that_solved_a_task(get):
    rows = canned(get, "solved_programs", fn="fn_a", length=4, run_id="")
    # PARITY reached val 1.0 in r1 (test 1.0) and in r2 (test 0.75); WRONG never did
    assert [(r["code"], r["runs"], r["attempts"], r["best_test_acc"], r["worst_test_acc"]) for r in rows] == [
        (PARITY, 2, 2, 1.0, 0.75)
    ]
    assert rows[0]["task"] == "fn_a" and rows[0]["program_hash"] == sha(PARITY)
    only_r2 = canned(get, "solved_programs", fn="fn_a", length=4, run_id="r2")
    assert [(r["runs"], r["best_test_acc"]) for r in only_r2] == [(1, 0.75)]
    assert canned(get, "solved_programs", fn="fn_g", length=4, run_id="") == []


def test_the_flat_views_name_the_task_and_show_the_code(get):
    trials = get("/synth/trial_results.json?_shape=array&run_id=r1&fn=fn_a&_sort=trial")
    assert [(t["task"], t["selected_code"], t["selected_program_hash"]) for t in trials] == [
        ("fn_a", PARITY, sha(PARITY)),
        ("fn_a", BROKEN, sha(BROKEN)),
    ]
    attempts = get("/synth/attempt_rows.json?_shape=array&run_id=r1&fn=fn_a&trial=1&_sort=attempt")
    assert [(a["task"], a["code"]) for a in attempts] == [("fn_a", WRONG), ("fn_a", PARITY)]


def test_program_hashes_link_to_their_program(get):
    link = f'<a href="/synth/programs/{sha(PARITY)}">{sha(PARITY)}</a>'
    pages = [
        "/synth/attempts?trial_id=1",
        "/synth/attempt_rows?run_id=r1",
        "/synth/trial_results?run_id=r1",
        "/synth/solved_programs?fn=fn_a&length=4&run_id=",
        "/synth/selected_programs?run_id=r1",
    ]
    for page in pages:
        assert link in get(page), page
    assert "x.count(&#39;1&#39;) % 2  # popcount" in get(f"/synth/programs/{sha(PARITY)}")


def test_programs_that_solved_a_task_by_its_name(db_path, get):
    with sqlite3.connect(db_path) as conn:
        conn.execute("update datasets set target = 'parity_all' where fn = 'fn_a'")
    by_name = canned(get, "solved_programs", fn="parity_all", length=4, run_id="")
    assert [(r["fn"], r["task"], r["code"]) for r in by_name] == [("fn_a", "parity_all", PARITY)]
    assert canned(get, "solved_programs", fn="fn_a", length=4, run_id="") == by_name


def test_compile_errors(get):
    rows = canned(get, "compile_errors")
    assert [(r["run_id"], r["trial"], r["attempt"], r["failure"], r["code"]) for r in rows] == [
        ("r1", 2, 1, "syntax_error", BROKEN),
        ("r1", 2, 2, "compile_error", NOT_RUNNABLE),
    ]
    assert rows[0]["error"] == "invalid syntax" and json.loads(rows[1]["error"]) == ["compile_error here"]


def test_token_spend_per_run(get):
    rows = {r["run_id"]: r for r in canned(get, "token_spend")}
    keys = [
        "attempts",
        "responses",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "reasoning_tokens",
        "total_tokens",
    ]
    spend = {run_id: tuple(r[k] for k in keys) for run_id, r in rows.items()}
    assert spend == {
        "r1": (6, 5, 500, 50, 250, 100, 750),
        "r2": (1, 1, 100, 10, 50, 20, 150),
        "r3": (1, 0, 0, 0, 0, 0, 0),
    }


def test_all_attempts_of_one_trial(get):
    rows = canned(get, "trial_attempts", run_id="r1", fn="fn_a", length=4, trial=2)
    got = [(r["attempt"], r["status"], r["failure_class"], r["eval_status"], r["selected"]) for r in rows]
    assert got == [
        (1, "extract_failed", "syntax_error", None, 1),
        (2, "evaluated", None, "compile_error", 0),
        (3, "call_failed", "call_server", None, 0),
    ]
    assert rows[0]["code"] == BROKEN and BROKEN in rows[0]["response_text"]
    assert rows[2]["response_text"] is None
    assert canned(get, "trial_attempts", run_id="r1", fn="fn_a", length=4, trial=3) == []


def test_leakage_audit(get):
    rows = {r["fn"]: r for r in canned(get, "leakage_audit")}
    keys = [
        "leakage_free",
        "input_train_val",
        "input_train_test",
        "input_val_test",
        "line_train_val",
        "line_train_test",
        "line_val_test",
        "train_duplicates",
        "val_duplicates",
        "test_duplicates",
    ]
    assert [rows["fn_a"][k] for k in keys] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert [rows["fn_g"][k] for k in keys] == [0, 1, 1, 0, 0, 1, 0, 0, 0, 1]
    assert rows["fn_a"]["runs"].split() == ["r1", "r2", "r3"] and rows["fn_g"]["runs"] == "r1"
    assert [r["fn"] for r in canned(get, "leakage_audit", run_id="r2")] == ["fn_a"]


def test_every_canned_query_renders(get):
    params = "run_id=r1&fn=fn_a&length=4&trial=1"
    queries = metadata("synth")["databases"]["synth"]["queries"]
    for name, query in queries.items():
        assert query["title"] in get(f"/synth/{name}?{params}")
    listed = get("/synth.json")["queries"]
    assert [q["name"] for q in listed] == list(queries)


def test_full_text_search_over_programs_responses_and_prompts(get):
    assert [r["code"] for r in get("/synth/programs.json?_shape=array&_search=popcount")] == [PARITY]
    replies = get("/synth/responses.json?_shape=array&_search=popcount")
    assert len(replies) == 2 and all("popcount" in r["text"] for r in replies)
    assert len(get("/synth/prompts.json?_shape=array&_search=examples")) == 1
    assert get("/synth/programs.json?_shape=array&_search=nowhere") == []
    assert 'name="_search"' in get("/synth/programs")


def test_search_indexes_rows_written_before_the_migration(tmp_path):
    db = sqlite_utils.Database(tmp_path / "old.db")
    migrations.apply(db, stop_before="m003_search")
    db["programs"].insert({"hash": sha(PARITY), "code": PARITY})
    migrations.apply(db)
    found = db.execute("select code from programs_fts where programs_fts match 'popcount'").fetchall()
    assert found == [(PARITY,)]
    db["programs"].insert({"hash": sha(WRONG), "code": WRONG})  # the triggers index new rows
    found = db.execute("select code from programs_fts where programs_fts match 'int'").fetchall()
    assert found == [(WRONG,)]


def test_writes_are_refused(ds, get):
    assert "SELECT" in get("/synth.json?sql=delete+from+runs", status=400)["error"]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # plugins cannot write either
        asyncio.run(ds.get_database("synth").execute_write("delete from runs"))
    assert len(get("/synth/runs.json?_shape=array")) == 3


@pytest.mark.slow
def test_reads_while_a_run_writes(db_path, get):
    def events():
        return get("/synth/events.json?_size=0")["filtered_table_rows_count"]

    writer = open_db(db_path)
    before = events()
    # An open write transaction does not block readers, who see the last commit.
    writer.conn.execute("begin immediate")
    writer.conn.execute("insert into events (run_id, kind, message) values ('r1', 'x', 'pending')")
    assert events() == before
    writer.conn.commit()
    assert events() == before + 1  # live, not immutable
    writer.conn.close()
    stop, written = threading.Event(), []

    def write():  # as a run does: its own connection, one commit per record
        db = open_db(db_path)
        while not stop.is_set():
            store.record_event(db, "r1", "tick", "a tick")
            written.append(1)
            time.sleep(0.001)
        db.conn.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        seen = []
        for _ in range(30):
            seen.append(events())
            get("/synth/attempt_rows.json")
    finally:
        stop.set()
        thread.join()
    assert seen == sorted(seen) and seen[-1] > seen[0]  # each read saw more commits
    assert events() == before + 1 + len(written)


def test_no_database_is_refused(tmp_path):
    with pytest.raises(StoreError, match="no database"):
        make_datasette(tmp_path / "missing.db")
    (tmp_path / "notes.db").write_text("not sqlite\n" * 100)
    with pytest.raises(StoreError, match="notes.db"):
        make_datasette(tmp_path / "notes.db")


@pytest.fixture
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_over_http(db_path, free_port):
    code = f"from tracker.browse import serve; serve({str(db_path)!r}, port={free_port})"
    server = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{free_port}/synth/runs.json?_shape=array"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    rows = json.load(response)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "the server did not answer within 30 s"
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert sorted(r["run_id"] for r in rows) == ["r1", "r2", "r3"]


@pytest.fixture
def busy_port():
    """A port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_port_that_cannot_be_served_is_a_one_line_error(db_path, busy_port):
    """uvicorn logged four lines and exited with 3 for a port in use; a port out of range
    was an OverflowError."""
    with pytest.raises(StoreError, match=rf"^port {busy_port} is in use; choose another with --port$"):
        serve(db_path, port=busy_port)
    for port in (70000, -1):
        with pytest.raises(StoreError, match=rf"^port {port} is not a port: use 1-65535"):
            serve(db_path, port=port)


@pytest.mark.parametrize(
    "port, message",
    [
        ("70000", r"Invalid value for '--port': 70000 is not in the range 0<=x<=65535\."),
        ("-1", r"Invalid value for '--port': -1 is not in the range 0<=x<=65535\."),
        ("busy", r"port \d+ is in use; choose another with --port"),
    ],
    ids=["too-high", "negative", "in-use"],
)
def test_browse_refuses_a_port_in_one_line(db_path, busy_port, port, message):
    """The CLI says nothing of serving (no "Datasette on ...") when it will not serve."""
    port = str(busy_port) if port == "busy" else port
    result = CliRunner().invoke(cli, ["browse", str(db_path), "--port", port])
    assert result.exit_code == 2, result.output
    assert re.fullmatch(f"Error: {message}\n", result.output), result.output


def first_line(stream, pattern: str, timeout: float = 30) -> re.Match:
    """The first line of ``stream`` (a process's pipe) matching ``pattern``."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        if select.select([stream], [], [], 0.1)[0]:
            line = stream.readline().decode()
            assert line, f"the process ended: {''.join(lines)}"
            lines.append(line)
            if found := re.search(pattern, line):
                return found
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s: {''.join(lines)}")


def runs_over_http(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/runs.json?_shape=array", timeout=10) as response:
        return sorted(r["run_id"] for r in json.load(response))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["library", "cli"])
def test_port_0_serves_on_a_free_port_and_says_which(db_path, how):
    """serve() calls ``ready`` with the URL once the port is bound; `synth browse --port 0`
    prints it (it printed port 0)."""
    if how == "library":
        code = f"from tracker.browse import serve; serve({str(db_path)!r}, port=0, ready=print)"
        args, pattern = ["-u", "-c", code], r"^(http://127\.0\.0\.1:(\d+)/synth)$"
    else:
        args = ["-c", "from synth.cli import cli; cli()", "browse", str(db_path), "--port", "0"]
        pattern = r"^Datasette on (http://127\.0\.0\.1:(\d+)/synth) \(Ctrl-C to stop\)$"
    out, log = (
        (subprocess.PIPE, subprocess.DEVNULL) if how == "library" else (subprocess.DEVNULL, subprocess.PIPE)
    )
    server = subprocess.Popen([sys.executable, *args], stdout=out, stderr=log)
    try:
        found = first_line(server.stdout or server.stderr, pattern)
        assert int(found[2]) > 0
        assert runs_over_http(found[1]) == ["r1", "r2", "r3"]  # connections wait: no retry needed
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_port_0_gives_every_address_of_the_host_one_port():
    """A host with several addresses (IPv4 and IPv6) is served on one port: the URL
    printed names it."""
    sockets = listen("", 0)
    try:
        if len(sockets) < 2:
            pytest.skip("this machine resolves the wildcard host to one address only")
        assert len({sock.getsockname()[1] for sock in sockets}) == 1
    finally:
        for sock in sockets:
            sock.close()
