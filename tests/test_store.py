"""The SQLite store: WAL, busy timeout, migrations, datasets saved once per fingerprint."""

import os
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from synth.cli import cli
from tracker.datasets import find_dataset, load_examples, save_dataset
from tracker.db import BUSY_TIMEOUT_MS, StoreError, open_db
from tracker.migrations import migrations


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "t.db")


def meta(fingerprint="f" * 64, **over):
    base = dict(
        fingerprint=fingerprint, fn="fn_a", target="parity_all", kind="binary", length=4,
        train_size=2, val_size=2, test_size=2, train_effective=2, val_effective=2,
        test_effective=2, base_seed=42, derived_seed=123, generator_version=1,
    )  # fmt: skip
    return {**base, **over}


ROWS = [("train", 0, "0001", 1), ("train", 1, "0000", 0), ("val", 0, "0111", 1),
        ("val", 1, "0011", 0), ("test", 0, "1000", 1), ("test", 1, "1100", 0)]  # fmt: skip


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
        ro.execute("insert into datasets (fingerprint, fn, length, base_seed, derived_seed) "
                   "values ('x', 'fn_a', 1, 1, 1)")  # fmt: skip


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
    monkeypatch.setattr(os, "access", lambda p, mode: mode != os.W_OK and access(p, mode)
                        if Path(p) in (tmp_path, path) else access(p, mode))  # fmt: skip
    with pytest.raises(StoreError, match=r"synth migrate \S+ \(after copying it to a folder you can write\)$"):
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
    monkeypatch.setattr(os, "access", lambda p, mode: mode != os.W_OK and access(p, mode)
                        if Path(p) == tmp_path else access(p, mode))  # fmt: skip
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
    monkeypatch.setattr(os, "access", lambda p, mode: mode != os.W_OK and access(p, mode)
                        if Path(p) == copy else access(p, mode))  # fmt: skip
    with pytest.raises(StoreError, match="its -wal file holds changes"):
        open_db(copy / "live.db", readonly=True)
    assert sorted(p.name for p in copy.iterdir()) == ["live.db", "live.db-wal"]


def test_a_run_is_marked_ended_only_with_its_exports_written(db):
    """end_run marks the run and writes its exports in one transaction: exports that fail
    (or a process killed while they are written) leave the run as it was, running."""
    from tracker.runs import create_run, end_run, get_run

    create_run(db, {"run_id": "r", "provider": "tree", "config": "{}"}, [], 1)

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
