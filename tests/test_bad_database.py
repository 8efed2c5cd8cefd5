"""Damaged, locked, full, read-only and odd databases: every command that opens one says
so in one line (exit 2 for a bad --db, 1 for the others), never with a traceback, and a
refusal leaves the folder, the rows, the run statuses and PRAGMA integrity_check as they
were. Real SQLite files in tmp_path; faults a test cannot cause for real (a full disk)
are raised from the store's own writes."""

import os
import shutil
import sqlite3
import threading

import pytest
from click.testing import CliRunner
from helpers import grid, one_line_error, snapshot

import synth.datasets.cache
import tracker.db
from synth.cli import cli
from tracker import runs as store
from tracker.db import open_db

SMALL = [*grid(attempts=1), "--provider", "formula", "--time-budget", "0.2"]
# Every command that opens a database, with DB where the database goes.
COMMANDS = {
    "runs": ["runs", "--db", "DB"],
    "show": ["show", "done", "--db", "DB"],
    "export": ["export", "done", "--out-dir", "out", "--db", "DB"],
    "report": ["report", "--format", "md", "--db", "DB"],
    "datasets-list": ["datasets", "list", "--db", "DB"],
    "datasets-export": ["datasets", "export", "--dataset-dir", "ds", "--db", "DB"],
    "datasets-build": [
        "datasets",
        "build",
        "--functions",
        "fn_g",
        "--lengths",
        "20",
        "--train-size",
        "10",
        "--val-size",
        "10",
        "--test-size",
        "20",
        "--db",
        "DB",
    ],
    "migrate": ["migrate", "DB"],
    "browse": ["browse", "DB", "--port", "0"],
    "run": ["run", *SMALL, "--run-id", "new", "--db", "DB"],
    "resume": ["run", "--resume", "done", "--db", "DB"],
}


def command(name: str, db) -> list[str]:
    return [str(db) if a == "DB" else a for a in COMMANDS[name]]


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """A database holding one finished run ("done", fn_a at L=20), closed: no -wal."""
    folder = tmp_path_factory.mktemp("finished")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = CliRunner().invoke(cli, ["run", *SMALL, "--run-id", "done", "--db", "runs.db"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["runs", "runs.db"]
    return folder / "runs.db"


@pytest.fixture
def db(workdir, finished):
    """A copy of the finished run's database in this test's folder."""
    shutil.copy(finished, workdir / "runs.db")
    return workdir / "runs.db"


def contents(path):
    """Row counts of every table, run statuses and PRAGMA integrity_check, as far as a
    damaged file lets them be read (what cannot be is recorded as its error)."""

    def ask(conn, sql):
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.Error as e:
            return f"error: {e}"

    # immutable: read without creating -wal or -shm (asked only while no one writes)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        tables = ask(conn, "select name from sqlite_master where type = 'table' order by name")
        counts = (
            {t: ask(conn, f"select count(*) from [{t}]") for (t,) in tables}
            if isinstance(tables, list)
            else tables
        )
        return {
            "counts": counts,
            "runs": ask(conn, "select run_id, status from runs order by run_id"),
            "integrity": ask(conn, "pragma integrity_check"),
        }
    finally:
        conn.close()


# --- a --db that is no regular file ---------------------------------------------------


@pytest.fixture
def fifo(workdir):
    """A FIFO, with a watchdog: a command that opened it for reading would wait for a
    writer forever; after the deadline the watchdog opens it for writing, so that such
    a test fails rather than hangs."""
    path = workdir / "pipe.db"
    os.mkfifo(path)
    done, opened = threading.Event(), []

    def watchdog():
        if not done.wait(20):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                opened.append(True)
            except OSError:
                pass

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    yield path
    done.set()
    thread.join()
    assert not opened, "the FIFO was opened"


NOT_A_FILE = {
    "fifo": ("pipe.db", "pipe.db is not a database file: it is a named pipe (FIFO)"),
    "device": ("/dev/null", "/dev/null is not a database file: it is a character device"),
    "dangling": (
        "link.db",
        "link.db is a symbolic link to nowhere.db, which does not exist: the link points nowhere",
    ),
}


@pytest.mark.parametrize("kind", NOT_A_FILE)
@pytest.mark.parametrize("name", COMMANDS)
def test_a_db_that_is_no_regular_file_is_refused_unopened(name, kind, workdir, request):
    path, message = NOT_A_FILE[kind]
    if kind == "fifo":
        request.getfixturevalue("fifo")
    if kind == "dangling":
        (workdir / "link.db").symlink_to("nowhere.db")
    before = snapshot(workdir)
    result = CliRunner().invoke(cli, command(name, path))
    one_line_error(result, message, code=2)
    assert snapshot(workdir) == before
    assert not (workdir / "nowhere.db").exists()


@pytest.mark.parametrize("name", ["runs", "migrate", "run"])
def test_a_folder_is_refused(name, workdir):
    (workdir / "folder.db").mkdir()
    before = snapshot(workdir)
    result = CliRunner().invoke(cli, command(name, "folder.db"))
    one_line_error(result, "'folder.db' is a directory", code=2)
    assert snapshot(workdir) == before


def test_the_library_refuses_what_is_no_regular_file(workdir, fifo):
    """open_db itself, read-only or not, never opens such a path either."""
    (workdir / "link.db").symlink_to("nowhere.db")
    (workdir / "folder.db").mkdir()
    for path, message in [
        (fifo, "named pipe"),
        ("/dev/null", "character device"),
        ("link.db", "points nowhere"),
        ("folder.db", "a folder"),
    ]:
        for readonly in (False, True):
            with pytest.raises(tracker.db.StoreError, match=message):
                open_db(path, readonly=readonly)
    assert not (workdir / "nowhere.db").exists()


# --- a damaged database ---------------------------------------------------------------


def zero_root_page(path, table: str) -> None:
    """Overwrite with zeros the first page of ``table`` (the header page is left)."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("pragma page_size").fetchone()[0]
    (root,) = conn.execute("select rootpage from sqlite_master where name = ?", [table]).fetchone()
    conn.close()
    assert root > 1
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(bytes(page_size))


# Which commands read which table before anything else (and so find it damaged).
DAMAGED = [
    *[("_sqlite_migrations", name) for name in COMMANDS],  # page 2: read by every open
    *[("runs", name) for name in ("runs", "show", "export", "report", "run", "resume")],
    *[("trials", name) for name in ("runs", "show", "export", "report", "run")],
    *[("datasets", name) for name in ("datasets-list", "datasets-export", "datasets-build")],
]


@pytest.mark.slow
@pytest.mark.parametrize("table,name", DAMAGED, ids=[f"{t}-{n}" for t, n in DAMAGED])
def test_a_damaged_database_is_named_with_the_check_to_run(table, name, db, workdir):
    zero_root_page(db, table)
    before, rows = snapshot(workdir), contents(db)
    assert rows["integrity"] != [("ok",)]
    result = CliRunner().invoke(cli, command(name, "runs.db"))
    one_line_error(
        result,
        "runs.db is damaged: database disk image is malformed; "
        "check it with: sqlite3 runs.db 'PRAGMA integrity_check'",
        code=1,
    )
    assert snapshot(workdir) == before, "nothing written, no -wal or -shm left"
    assert contents(db) == rows


def test_a_damaged_database_is_not_migrated(db, workdir):
    """An older database is migrated by writers, but never one SQLite finds damaged."""
    conn = sqlite3.connect(db)
    conn.execute("delete from _sqlite_migrations where rowid = (select max(rowid) from _sqlite_migrations)")
    conn.commit()
    conn.close()
    zero_root_page(db, "events")
    before, rows = snapshot(workdir), contents(db)
    result = CliRunner().invoke(cli, ["migrate", "runs.db"])
    one_line_error(result, "runs.db is damaged: ", code=1)
    assert snapshot(workdir) == before and contents(db) == rows


# --- a locked database ----------------------------------------------------------------


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setattr(tracker.db, "BUSY_TIMEOUT_MS", 200)


@pytest.fixture
def exclusive(db, short_timeout):
    """Another connection holding the database in EXCLUSIVE locking mode, mid-write: no
    other connection may read or write it until it lets go."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("pragma locking_mode = exclusive")
    conn.execute("begin exclusive")
    conn.execute("update runs set status = status")
    yield conn
    conn.execute("rollback")
    conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_a_database_another_process_holds_is_named_locked(name, exclusive, db, workdir):
    before = snapshot(workdir)
    result = CliRunner().invoke(cli, command(name, "runs.db"))
    one_line_error(
        result,
        "runs.db is locked: another process holds it and did not let go within 0.2 s (database is locked)",
        code=1,
    )
    assert snapshot(workdir) == before
    exclusive.execute("rollback")
    exclusive.execute("pragma locking_mode = normal")
    exclusive.execute("select 1 from runs").fetchall()  # the lock goes with the next read
    exclusive.execute("begin")
    rows = contents(db)
    assert rows["runs"] == [("done", "completed")] and rows["integrity"] == [("ok",)]


def test_a_run_waiting_for_another_writer_past_the_timeout(db, workdir, short_timeout):
    """The usual case: another `synth run` holds the write lock (readers go on); this
    run's first write, creating its run, gives up after the busy timeout in one line."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("begin immediate")
    rows = contents(db)
    result = CliRunner().invoke(cli, command("run", "runs.db"))
    holder.execute("rollback")
    holder.close()
    one_line_error(result, "runs.db is locked: another process holds it", code=1)
    assert contents(db) == rows


# --- a full or read-only disk during a run --------------------------------------------


def fail_writes(monkeypatch, message, tables=("evaluations",), updates=False):
    """The store's inserts into ``tables`` (and with ``updates`` its updates) fail as
    SQLite fails them when the disk is full."""
    insert = store._insert

    def failing_insert(conn, table, record, **kw):
        if table in tables:
            raise sqlite3.OperationalError(message)
        return insert(conn, table, record, **kw)

    def failing_update(*args):
        raise sqlite3.OperationalError(message)

    monkeypatch.setattr(store, "_insert", failing_insert)
    if updates:
        monkeypatch.setattr(store, "_update", failing_update)


def one_error(result, code, message):
    """A run prints progress on stderr; what it ends with is one error line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert message in errors[0], errors[0]
    return errors[0]


@pytest.mark.slow
def test_a_full_disk_mid_run_stops_it_marked_failed_and_resumable(db, workdir, monkeypatch):
    fail_writes(monkeypatch, "database or disk is full")
    result = CliRunner().invoke(cli, command("run", "runs.db"))
    line = one_error(
        result, 1, "run new stopped: cannot write runs.db: the disk is full (database or disk is full)"
    )
    assert "the run is marked failed" in line
    assert f"continue it with: synth resume new --db {db.resolve()}" in line
    run = open_db(db, readonly=True)["runs"].get("new")
    assert run["status"] == "failed" and "disk is full" in run["error"]
    assert contents(db)["integrity"] == [("ok",)]
    monkeypatch.undo()  # the disk has room again (and the folder is no longer the current one)
    again = CliRunner().invoke(cli, ["run", "--resume", "new", "--db", str(db)])
    assert again.exit_code == 0, again.output
    assert open_db(db, readonly=True)["runs"].get("new")["status"] == "completed"


@pytest.mark.slow
@pytest.mark.parametrize(
    "message,said",
    [
        ("database or disk is full", "the disk is full"),
        ("attempt to write a readonly database", "it is read-only"),
    ],
    ids=["full", "read-only"],
)
def test_a_run_that_cannot_even_be_marked_failed_says_so(message, said, db, workdir, monkeypatch):
    fail_writes(monkeypatch, message, updates=True)
    result = CliRunner().invoke(cli, command("run", "runs.db"))
    line = one_error(result, 1, f"run new stopped: cannot write runs.db: {said}")
    assert "it could not be marked failed either, so it reads as running" in line
    assert open_db(db, readonly=True)["runs"].get("new")["status"] == "running"


@pytest.mark.parametrize("where", ["runs", "datasets"])
def test_a_full_disk_before_the_run_is_recorded_writes_nothing(where, db, workdir, monkeypatch):
    if where == "runs":  # creating the run (its datasets are stored already)
        fail_writes(monkeypatch, "database or disk is full", tables=("runs",))
        args = command("run", "runs.db")
    else:  # storing a new grid point's dataset

        def full(*args):
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(synth.datasets.cache, "save_dataset", full)
        args = [*command("run", "runs.db"), "--functions", "fn_g"]
    before, rows = snapshot(workdir), contents(db)
    result = CliRunner().invoke(cli, args)
    one_line_error(result, "cannot write runs.db: the disk is full (database or disk is full)", code=1)
    assert snapshot(workdir) == before and contents(db) == rows


# --- two runs started together with one --run-id --------------------------------------


def test_two_runs_with_one_id_the_loser_gets_the_usual_line(db, workdir, monkeypatch):
    """The other run records itself between this one's check and its insert."""
    get_run = store.get_run

    def checked_then_taken(conn, run_id):
        found = get_run(conn, run_id)
        other = open_db(db)
        store.create_run(
            other,
            {"run_id": run_id, "provider": "formula", "model": "formula", "dry_run": 0, "config": "{}"},
            [],
        )
        other.close()
        return found

    monkeypatch.setattr(store, "get_run", checked_then_taken)
    result = CliRunner().invoke(cli, command("run", "runs.db"))
    one_line_error(result, "run 'new' already exists in runs.db; continue it with: synth resume new", code=2)
    assert result.stderr == "Error: run 'new' already exists in runs.db; continue it with: synth resume new\n"
    monkeypatch.undo()
    rows = contents(db)
    assert rows["runs"] == [("done", "completed"), ("new", "running")]
    assert rows["counts"]["trials"] == [(1,)] and rows["counts"]["run_datasets"] == [(1,)]
    assert rows["integrity"] == [("ok",)]


def test_create_run_is_atomic_with_its_check(db):
    conn = open_db(db)
    record = {"run_id": "done", "provider": "formula", "config": "{}"}
    with pytest.raises(store.RunExists, match="run 'done' already exists in .*runs.db"):
        store.create_run(conn, record, [])
    assert conn.execute("select count(*) from runs").fetchone() == (1,)
    conn.close()


# --- nothing left beside a database a read command used -------------------------------


@pytest.mark.parametrize(
    "name", ["runs", "show", "export", "report", "datasets-list", "datasets-export", "migrate"]
)
def test_a_read_leaves_no_wal_or_shm(name, db, workdir):
    result = CliRunner().invoke(cli, command(name, "runs.db"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in workdir.glob("runs.db*")) == ["runs.db"]
    assert contents(db)["integrity"] == [("ok",)]


@pytest.mark.parametrize("name", ["runs", "show", "report", "datasets-list"])
def test_a_refused_outdated_database_is_left_as_it_was(name, db, workdir):
    conn = sqlite3.connect(db)
    conn.execute("delete from _sqlite_migrations where rowid = (select max(rowid) from _sqlite_migrations)")
    conn.commit()
    conn.close()
    before = snapshot(workdir)
    result = CliRunner().invoke(cli, command(name, "runs.db"))
    one_line_error(
        result, "runs.db was written by an older version of llm-pv; upgrade it with: synth migrate", code=2
    )
    assert snapshot(workdir) == before


def test_a_read_while_another_connection_is_open_removes_nothing_of_it(db, workdir):
    """The -wal and -shm of a database in use are its writer's: a read leaves them."""
    writer = open_db(db)
    writer["runs"].update("done", {"error": None})
    result = CliRunner().invoke(cli, command("runs", "runs.db"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in workdir.glob("runs.db*")) == ["runs.db", "runs.db-shm", "runs.db-wal"]
    writer.close()
    assert sorted(p.name for p in workdir.glob("runs.db*")) == ["runs.db"]
