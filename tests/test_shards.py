"""Sharded runs and `synth merge`: shards 1/2 and 2/2, each in its own database, merged
into one, hold what one unsharded run of the same grid holds (an offline proposer, and
the loopback server with an answer that depends on the prompt alone); merging again
changes nothing; bad shards and bad merges are one line each with nothing written."""

import asyncio
import csv
import json
import re
import sqlite3

import pytest
import sqlite_utils
from helpers import grid, one_line_error, run_cli, snapshot
from openai_server import Reply

from tracker import merge as merging
from tracker.browse import make_datasette
from tracker.db import open_db
from tracker.runs import record_event
from tracker.shards import assign

OFFLINE = [*grid("fn_a", "fn_e", trials=3, attempts=2), "--provider", "tree"]
# Columns that differ between two runs of one grid whatever the proposer: the run id,
# how long calls took, and the ids the server gives its responses.
VARYING = ("run_id", "duration_ms", "response_id")


def dump(path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def export_rows(workdir, db, run_id, name) -> dict[str, list[dict]]:
    """The run's JSONL and CSV exports, written again, without the VARYING columns."""
    out = workdir / f"out_{name}"
    result = run_cli("export", run_id, "--db", db, "--out-dir", out)
    assert result.exit_code == 0, result.output
    with open(out / "results_attempts.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    jsonl = [json.loads(line) for line in (out / "results_attempts.jsonl").read_text().splitlines()]
    return {
        "csv": [{k: v for k, v in r.items() if k not in VARYING} for r in table],
        "jsonl": [{k: v for k, v in r.items() if k not in VARYING} for r in jsonl],
    }


def run_shards(*args) -> str:
    """Shards 1/2 and 2/2 of a grid, each into its own database; the run id they share."""
    ids = set()
    for i in (1, 2):
        result = run_cli("run", *args, "--shard", f"{i}/2", "--db", f"s{i}.db", "--out-dir", f"o{i}")
        assert result.exit_code == 0, result.output
        ids |= set(re.findall(r"run id (sharded_[0-9a-f]{16})", result.stderr))
    (run_id,) = ids  # the same derived id on both "machines", and printed
    return run_id


def answer(path, body):
    """A program that is right when the training examples are parity's, wrong otherwise:
    the same answers whichever machine, shard or order asks."""
    prompt = body["input"][0]["content"]
    train = re.findall(r"^([01]+) -> ([01])$", prompt, re.M)
    parity = all(int(y) == x.count("1") % 2 for x, y in train)
    code = 'x.count(\\"1\\") % 2' if parity else "0"
    return Reply(text='{"code": "def f(x):\\n    return ' + code + '"}')


@pytest.fixture
def served(workdir, openai_server, monkeypatch):
    """The grid options of a run against the loopback server, which answers by the prompt."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    openai_server.script = answer
    return [*grid("fn_a", "fn_g", trials=3, attempts=2), "--api-base-url", openai_server.base_url]


def test_split_is_every_trial_once_balanced_and_from_the_grid_alone():
    points = [("fn_a", 20), ("fn_e", 20), ("fn_a", 50)]
    split = assign(points, 5, 4)
    assert sorted(split) == sorted((fn, n, t) for fn, n in points for t in range(1, 6))
    sizes = [list(split.values()).count(i) for i in range(1, 5)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 15
    assert assign(points[::-1], 5, 4) == split  # the order flags list the grid in does not matter


@pytest.mark.slow  # the offline proposer's worker processes
def test_merged_shards_equal_the_unsharded_run(workdir):
    result = run_cli("run", *OFFLINE, "--run-id", "whole", "--db", "whole.db", "--out-dir", "ow")
    assert result.exit_code == 0, result.output
    run_id = run_shards(*OFFLINE)
    with open_db("s1.db", readonly=True) as db:
        (mine,) = db.execute("select count(*) from trials").fetchone()
    assert mine == 3  # a shard runs its share only

    result = run_cli("merge", "merged.db", "s1.db", "s2.db", "--json")
    assert result.exit_code == 0, result.output
    assert [(r["shard"], r["action"]) for r in json.loads(result.stdout)] == [
        ("1/2", "added"),
        ("2/2", "added"),
    ]
    assert export_rows(workdir, "merged.db", run_id, "m") == export_rows(workdir, "whole.db", "whole", "w")
    with open_db("merged.db", readonly=True) as db:
        run = db["runs"].get(run_id)
        assert run["status"] == "completed" and json.loads(run["config"])["shard"] is None
        trials = db.execute("select count(*), sum(status = 'done') from trials").fetchone()
    assert trials == (6, 6)

    before = dump("merged.db")
    again = run_cli("merge", "merged.db", "s2.db", "s1.db", "--json")
    assert again.exit_code == 0, again.output
    assert {r["action"] for r in json.loads(again.stdout)} == {"unchanged"}
    assert dump("merged.db") == before  # merging the same sources twice changes nothing


@pytest.mark.slow  # three runs
def test_merged_shards_equal_the_unsharded_run_against_the_server(workdir, openai_server, served):
    args = served
    result = run_cli("run", *args, "--run-id", "whole", "--db", "whole.db", "--out-dir", "ow")
    assert result.exit_code == 0, result.output
    calls = len(openai_server.requests)
    run_id = run_shards(*args)
    assert len(openai_server.requests) == 2 * calls  # the shards together make the run's calls once
    assert run_cli("merge", "merged.db", "s1.db", "s2.db").exit_code == 0
    merged = export_rows(workdir, "merged.db", run_id, "m")
    assert merged == export_rows(workdir, "whole.db", "whole", "w")
    assert {r["val_acc"] for r in merged["csv"] if r["fn"] == "fn_a"} == {"1.0"}  # solved: a real run


def test_merges_of_merges_and_a_missing_shard(workdir, served):
    run_id = run_shards(*served)
    assert run_cli("merge", "m1.db", "s1.db").exit_code == 0
    shown = run_cli("show", run_id, "--db", "m1.db")
    assert shown.exit_code == 0 and f"run {run_id} (partial): shard 1/2 (2/2 missing)" in shown.stderr
    runs = json.loads(run_cli("runs", "--db", "m1.db", "--json").stdout)
    assert [(r["status"], r["shards"]) for r in runs] == [("partial", "shard 1/2 (2/2 missing)")]
    assert "shard 1/2 (2/2 missing)" in run_cli("runs", "--db", "m1.db").stdout
    resumed = run_cli("resume", run_id, "--db", "m1.db")
    one_line_error(resumed, "was merged from shards", "resume each unfinished shard in its own database")

    assert run_cli("merge", "m2.db", "s2.db").exit_code == 0
    assert run_cli("merge", "all.db", "m1.db", "m2.db").exit_code == 0
    assert run_cli("merge", "direct.db", "s1.db", "s2.db").exit_code == 0
    assert export_rows(workdir, "all.db", run_id, "a") == export_rows(workdir, "direct.db", run_id, "d")
    with open_db("all.db", readonly=True) as db:
        assert db["runs"].get(run_id)["status"] == "completed"
        assert db.execute("select count(*) from run_shards").fetchone()[0] == 2


def test_a_source_that_went_on_replaces_what_an_earlier_merge_brought(workdir, served):
    run_id = run_shards(*served)
    assert run_cli("merge", "m.db", "s1.db", "s2.db").exit_code == 0
    with open_db("s1.db") as db:
        record_event(db, run_id, "note", "a later event of shard 1")
    result = run_cli("merge", "m.db", "s1.db", "s2.db", "--json")
    assert [r["action"] for r in json.loads(result.stdout)] == ["replaced", "unchanged"]
    assert run_cli("merge", "fresh.db", "s1.db", "s2.db").exit_code == 0
    tables = ("trials", "attempts", "responses", "evaluations", "events")
    with open_db("m.db", readonly=True) as m, open_db("fresh.db", readonly=True) as fresh:
        for table in tables:  # no row twice, none lost
            assert m[table].count == fresh[table].count, table
        assert m.execute("select count(*) from events where kind = 'note'").fetchone() == (1,)


def test_a_resumed_shard_keeps_its_shard(workdir, served):
    run_id = run_shards(*served)
    one_line_error(
        run_cli("run", "--resume", run_id, "--shard", "2/2", "--db", "s1.db"), "cannot change --shard"
    )
    result = run_cli("resume", run_id, "--db", "s1.db")
    assert result.exit_code == 0, result.output
    with open_db("s1.db", readonly=True) as db:
        assert {r["shard"] for r in db["trials"].rows} == {1}


@pytest.mark.parametrize("shard", ["0/2", "3/2", "1/0", "x", "1/", "-1/2"])
def test_a_bad_shard_is_one_line_and_writes_nothing(workdir, shard):
    one_line_error(run_cli("run", *OFFLINE, "--shard", shard), "--shard must be I/N")
    assert snapshot(workdir) == {}


def test_more_shards_than_trials_is_refused(workdir):
    one_line_error(run_cli("run", *grid("fn_a"), "--dry-run", "--shard", "2/2"), "at most 1 shard")
    assert snapshot(workdir) == {}


@pytest.mark.slow  # six runs
def test_bad_merges_are_one_line_and_write_nothing(workdir, served):
    run_shards(*served)
    assert run_cli("run", *served, "--run-id", "r", "--db", "a.db", "--out-dir", "oa").exit_code == 0
    assert run_cli("run", *served, "--run-id", "r", "--db", "b.db", "--out-dir", "ob").exit_code == 0
    other = [*grid("fn_a", "fn_e", lengths=(20, 25), trials=3, attempts=1), "--provider", "tree"]
    result = run_cli(
        "run", *other, "--shard", "2/2", "--run-id", shared_run_id(workdir), "--db", "x.db", "--out-dir", "ox"
    )
    assert result.exit_code == 0, result.output
    (workdir / "notes.txt").write_text("not a database\n")
    sqlite_utils.Database(workdir / "foreign.db")["things"].insert({"a": 1})
    newer = workdir / "newer.db"
    newer.write_bytes((workdir / "a.db").read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute(
            "insert into _sqlite_migrations (migration_set, name, applied_at) values ('llm-pv', 'm999_future', '2030')"
        )
    conn.close()
    assert run_cli("merge", "dest.db", "s1.db").exit_code == 0
    before = snapshot(workdir)
    cases = [
        (["notes.txt"], "file is not a database"),
        (["foreign.db"], "is not an LLM-PV database"),
        (["newer.db"], "newer version of llm-pv"),
        (["dest.db"], "into itself"),
        (["missing.db"], "no database at missing.db"),
        (["a.db", "b.db"], "two different runs named 'r'"),
        (["x.db"], "are not one experiment (their settings differ)"),
        (["s2.db", "a.db", "notes.txt"], "file is not a database"),  # the last source refused: none merged
    ]
    for sources, message in cases:
        one_line_error(run_cli("merge", "dest.db", *sources), message)
        assert snapshot(workdir) == before, sources
    one_line_error(run_cli("merge", "notes.txt", "s1.db"), "not a SQLite database")
    one_line_error(
        run_cli("merge", "s1.db", "s2.db"), "s1.db is the database shard 1 of run", "a new database"
    )
    one_line_error(run_cli("merge", "new.db", "a.db", "newer.db"), "newer version")
    assert snapshot(workdir) == before


def shared_run_id(workdir) -> str:
    """The run id the shards in s1.db share."""
    with open_db(workdir / "s1.db", readonly=True) as db:
        return db.execute("select run_id from runs").fetchone()[0]


@pytest.mark.slow  # three runs
def test_two_machines_running_one_shard_are_refused(workdir, served):
    run_id = run_shards(*served)
    result = run_cli("run", *served, "--shard", "1/2", "--db", "again.db", "--out-dir", "oa")
    assert result.exit_code == 0, result.output
    one_line_error(
        run_cli("merge", "m.db", "s1.db", "again.db"), f"shard 1/2 of run {run_id!r} was run twice"
    )
    assert not (workdir / "m.db").exists()


def test_merging_into_a_database_datasette_is_reading(workdir, served):
    run_id = run_shards(*served)
    assert run_cli("merge", "m.db", "s1.db").exit_code == 0
    ds = make_datasette(workdir / "m.db")
    reader = sqlite3.connect(workdir / "m.db")
    try:
        reader.execute("begin")
        assert reader.execute("select count(*) from trials").fetchone()[0] == 3  # a read held open

        def trials():
            response = asyncio.run(ds.client.get("/m/trials.json?_shape=array&_size=max"))
            assert response.status_code == 200
            return len(response.json())

        before = trials()
        missing = asyncio.run(ds.client.get("/m/missing_shards.json?_shape=array")).json()
        assert [(r["status"], r["merged"], r["missing"]) for r in missing] == [("partial", 1, "2/2")]
        assert run_cli("merge", "m.db", "s2.db").exit_code == 0
        assert (before, trials()) == (3, 6)
        reader.rollback()
        assert reader.execute("select status from runs where run_id = ?", [run_id]).fetchone() == (
            "completed",
        )
    finally:
        reader.close()
        for database in ds.databases.values():
            database.close()
        ds.executor.shutdown()


def test_merge_knows_how_to_copy_every_table(tmp_path):
    """A table added by a migration must say how a merge copies it (tracker.merge.TABLES)."""
    db = open_db(tmp_path / "fresh.db")
    tables = {t for t in db.table_names() if not t.startswith("_") and not re.search(r"_fts(_\w+)?$", t)}
    db.close()
    assert tables == set(merging.TABLES)


def test_a_shards_dry_run_estimates_its_own_trials(workdir):
    args = [*grid("fn_a", "fn_e", trials=3, attempts=2), "--model", "gpt-5", "--dry-run"]
    whole = run_cli("run", *args, "--db", "w.db", "--out-dir", "ow")
    shard = run_cli("run", *args, "--shard", "2/2", "--db", "s.db", "--out-dir", "os")
    assert whole.exit_code == 0 and shard.exit_code == 0, shard.output
    total = [
        line.split()
        for line in (whole.stdout, shard.stdout)
        for line in line.splitlines()
        if line.startswith("total")
    ]
    assert [t[1:4] for t in total] == [["6", "-", "12"], ["3", "-", "6"]]  # calls at least - at most
