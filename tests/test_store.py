"""The SQLite store: WAL, busy timeout, migrations, datasets saved once per fingerprint."""

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner
from helpers import CLEAN_ROWS, dataset_meta

from synth.cli import cli
from tracker.datasets import find_dataset, load_examples, save_dataset
from tracker.db import BUSY_TIMEOUT_MS, StoreError, open_db
from tracker.migrations import migrations


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "t.db")


def meta(fingerprint="f" * 64, **over):
    return dataset_meta(fingerprint, **{"target": "parity_all", "derived_seed": 123, **over})


ROWS = CLEAN_ROWS


def test_open_sets_wal_busy_timeout_foreign_keys_and_migrates(db):
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert db.execute("pragma busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
    assert db.execute("pragma foreign_keys").fetchone()[0] == 1
    assert {"datasets", "examples", "_sqlite_migrations"} <= set(db.table_names())
    assert db["examples"].foreign_keys[0].other_table == "datasets"


def test_reopening_applies_no_migration_twice(tmp_path):
    open_db(tmp_path / "t.db")
    db = open_db(tmp_path / "t.db")
    names = [r["name"] for r in db["_sqlite_migrations"].rows]
    assert len(names) == len(set(names)) >= 1


def test_dataset_saved_once_per_fingerprint(db):
    first = save_dataset(db, meta(), ROWS)
    again = save_dataset(db, meta(derived_seed=999), ROWS)
    assert first == again
    assert db["datasets"].count == 1 and db["examples"].count == 6
    assert find_dataset(db, meta())["id"] == first
    assert find_dataset(db, meta(length=5)) is None
    splits = load_examples(db, first)
    assert splits["val"] == [("0111", 1), ("0011", 0)]


def test_a_failed_write_leaves_nothing(db):
    bad = ROWS + [("test", 1, "dup-index", 0)]  # violates the (dataset, split, idx) key
    with pytest.raises(sqlite3.IntegrityError):
        save_dataset(db, meta(), bad)
    assert db["datasets"].count == 0 and db["examples"].count == 0


def test_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("hello, this is text\n" * 10)
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_db(path)
    assert path.read_text().startswith("hello")


def test_missing_folder_is_refused_without_creating_it(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_db(tmp_path / "nope" / "t.db")
    assert not (tmp_path / "nope").exists()


def test_readonly_open_needs_an_existing_database_and_cannot_write(tmp_path, db):
    with pytest.raises(StoreError, match="no database"):
        open_db(tmp_path / "missing.db", readonly=True)
    ro = open_db(tmp_path / "t.db", readonly=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.execute(
            "insert into datasets (fingerprint, fn, length, base_seed, derived_seed) "
            "values ('x', 'fn_a', 1, 1, 1)"
        )


def test_readonly_open_of_a_database_without_our_tables(tmp_path):
    sqlite3.connect(tmp_path / "bare.db").execute("create table t (x)").connection.close()
    with pytest.raises(StoreError, match="not an LLM-PV database"):
        open_db(tmp_path / "bare.db", readonly=True)


def test_a_database_from_an_older_version_is_named_with_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    db = open_db(path)
    last = db.execute("select max(rowid) from _sqlite_migrations").fetchone()[0]
    db.execute("delete from _sqlite_migrations where rowid = ?", [last])
    db.conn.commit()
    db.close()
    with pytest.raises(StoreError, match=f"older version of llm-pv; upgrade it with: synth migrate {path}$"):
        open_db(path, readonly=True)
    access = os.access  # now on a read-only mount: migrate could not write it there
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode: (
            mode != os.W_OK and access(p, mode) if Path(p) in (tmp_path, path) else access(p, mode)
        ),
    )
    with pytest.raises(
        StoreError, match=r"synth migrate \S+ \(after copying it to a folder you can write\)$"
    ):
        open_db(path, readonly=True)


def test_odd_characters_in_the_path_name_the_file_they_say(tmp_path):
    for name in ("a#b", "p%41", "q?x=1"):
        folder = tmp_path / name
        folder.mkdir()
        db = open_db(folder / "s.db")
        db["t"].insert({"x": 1})
        assert (folder / "s.db").exists()
        assert open_db(folder / "s.db", readonly=True)["t"].count == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a#b", "p%41", "q?x=1"]


def test_a_database_in_a_folder_we_cannot_write_is_read_without_writing(tmp_path, monkeypatch):
    """As on a read-only mount or in someone else's results folder: SQLite cannot create
    the -shm file a WAL read needs, so the file is read as immutable, and nothing is
    created beside it."""
    path = tmp_path / "shared.db"
    db = open_db(path)
    db["notes"].insert({"text": "kept"})
    db.close()  # the last connection checkpoints and removes -wal and -shm
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.db"]
    access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode: mode != os.W_OK and access(p, mode) if Path(p) == tmp_path else access(p, mode),
    )
    ro = open_db(path, readonly=True)
    assert ro.execute("select text from notes").fetchall() == [("kept",)]
    ro.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.db"]


def test_synth_migrate_says_what_it_applied(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    last = migrations.pending(old)[-1].name
    migrations.apply(old, stop_before=last)  # as the version before the last step wrote it
    old.close()
    first = CliRunner().invoke(cli, ["migrate", str(path)])
    assert first.exit_code == 0, first.output
    assert f"{path}: applied {last}; schema up to date" in first.stderr
    again = CliRunner().invoke(cli, ["migrate", str(path)])
    assert f"{path}: nothing to do: schema up to date" in again.stderr


def test_a_database_whose_wal_holds_changes_is_refused_where_it_cannot_be_read(tmp_path, monkeypatch):
    """A copy of a database and its -wal (no -shm) in a folder we cannot write: as
    immutable, SQLite would ignore the -wal and show old data, so it is refused."""
    source = open_db(tmp_path / "live.db")
    source.execute("pragma wal_autocheckpoint = 0")
    source["notes"].insert({"text": "only in the wal"})
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("live.db", "live.db-wal"):
        (copy / name).write_bytes((tmp_path / name).read_bytes())
    source.close()
    access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode: mode != os.W_OK and access(p, mode) if Path(p) == copy else access(p, mode),
    )
    with pytest.raises(StoreError, match="its -wal file holds changes"):
        open_db(copy / "live.db", readonly=True)
    assert sorted(p.name for p in copy.iterdir()) == ["live.db", "live.db-wal"]


def test_a_run_is_marked_ended_only_with_its_exports_written(db):
    """end_run marks the run and writes its exports in one transaction: exports that fail
    (or a process killed while they are written) leave the run as it was, running."""
    from tracker.runs import create_run, end_run, get_run

    create_run(db, {"run_id": "r", "provider": "tree", "config": "{}"}, [])

    def exports():
        assert get_run(db, "r")["status"] == "completed", "the exports see the run ended"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        end_run(db, "r", "completed", exports)
    assert (get_run(db, "r")["status"], get_run(db, "r")["finished_at"]) == ("running", None)
    assert db["events"].count == 0
    assert end_run(db, "r", "completed", lambda: "manifest") == "manifest"
    assert get_run(db, "r")["status"] == "completed"
    assert [e["kind"] for e in db["events"].rows] == ["run_finished"]


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    """As a newer llm-pv would leave it: a migration this version does not know. Reading
    it could misread it, writing it could break it: every open refuses, migrate too."""
    path = tmp_path / "new.db"
    db = open_db(path)
    db["_sqlite_migrations"].insert(
        {"migration_set": "llm-pv", "name": "m005_future", "applied_at": "2030-01-01"}
    )
    db.close()
    message = (
        f"{path} was written by a newer version of llm-pv (migrations this one does "
        f"not know: m005_future); upgrade llm-pv to use it"
    )
    for readonly in (False, True):
        with pytest.raises(StoreError) as refused:
            open_db(path, readonly=readonly)
        assert str(refused.value) == message
    result = CliRunner().invoke(cli, ["migrate", str(path)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"


def test_another_programs_database_is_not_taken_over_by_a_writer(tmp_path):
    """A SQLite file with someone else's tables is refused, as by the read commands, and
    left as it was (journal mode included); a new or empty file becomes ours."""
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table t (x)")
        conn.execute("insert into t values (1)")
    conn.close()
    with pytest.raises(StoreError, match=f"^{re.escape(str(path))} is not an LLM-PV database"):
        open_db(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("select name from sqlite_master").fetchall() == [("t",)]
        assert conn.execute("pragma journal_mode").fetchone()[0] == "delete"
    conn.close()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # an empty file, as a new database starts
    assert not migrations.pending(open_db(empty))


# A worker process reads commands, one a line: "open PATH" opens (creating and migrating)
# the database and answers "ok"; "save PATH" opens it, answers "saving", saves the dataset
# meta() describes and answers its id. A command that fails answers with its error.
WORKER = """
import sys
from tracker.db import open_db
from tracker.datasets import save_dataset
meta, rows = eval(sys.argv[1]), eval(sys.argv[2])
for line in sys.stdin:
    command, path = line.split()
    try:
        db = open_db(path)
        if command == "save":
            print("saving", flush=True)
            print(save_dataset(db, meta, rows), flush=True)
        else:
            print("ok", flush=True)
        db.close()
    except Exception as e:
        print(f"{type(e).__name__}: {e}".replace("\\n", " "), flush=True)
"""


@pytest.fixture
def workers():
    """Start n worker processes (already importing) and stop them after the test."""
    started = []

    def start(n):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, repr(meta()), repr(ROWS)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        started.extend(procs)
        return procs

    yield start
    for proc in started:
        proc.stdin.close()  # they end when their input does
    for proc in started:
        proc.wait(timeout=60)


def tell(procs, line):
    """Send every worker the same line, as close to the same moment as we can."""
    for proc in procs:
        proc.stdin.write(line + "\n")
    for proc in procs:
        proc.stdin.flush()


@pytest.mark.slow
def test_processes_creating_one_new_database_at_once_all_wait_their_turn(tmp_path, workers):
    """Switching a new file to WAL and applying the first migrations fail at once with
    "database is locked" (or "table already exists") when another process does it at the
    same moment; each open now waits its turn. Several rounds: one rarely collides."""
    procs = workers(6)
    for round_ in range(8):
        path = tmp_path / f"new{round_}.db"
        tell(procs, f"open {path}")
        assert [proc.stdout.readline().strip() for proc in procs] == ["ok"] * 6
        db = open_db(path, readonly=True)
        names = [r["name"] for r in db["_sqlite_migrations"].rows]
        assert sorted(names) == sorted(set(names)) and not migrations.pending(db)
        db.close()


@pytest.mark.slow
def test_processes_saving_one_dataset_at_once_store_it_once(tmp_path, workers):
    """Each process checks that the dataset is not stored and then stores it; another
    that stored it in between made the insert fail (UNIQUE constraint). The check is
    now made inside the write transaction: all get the id of the one stored. Made certain
    here: this process stores it while the workers are between their check and insert."""
    path = tmp_path / "t.db"
    open_db(path).close()
    procs = workers(4)
    first = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    first.execute("begin immediate")
    record = {**meta(), "created_at": "2025-01-01T00:00:00+00:00"}
    dataset_id = first.execute(
        f"insert into datasets ({', '.join(record)}) values ({', '.join('?' * len(record))})",
        list(record.values()),
    ).lastrowid
    tell(procs, f"save {path}")
    assert [proc.stdout.readline().strip() for proc in procs] == ["saving"] * 4
    time.sleep(0.5)  # let them reach the write lock this transaction holds
    first.execute("commit")
    first.close()
    assert [proc.stdout.readline().strip() for proc in procs] == [str(dataset_id)] * 4
    db = open_db(path, readonly=True)
    assert db["datasets"].count == 1 and db["examples"].count == 0
    db.close()
