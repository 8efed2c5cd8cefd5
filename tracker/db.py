"""Opening the one SQLite database: WAL so readers never block the writer, a busy
timeout so nobody sees "database is locked", foreign keys on, migrations applied.
Only our own databases are used: another program's SQLite file, or one written by a
newer llm-pv, is refused rather than changed."""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path

import sqlite_utils

from tracker.migrations import migrations

DEFAULT_DB = "synth.db"
BUSY_TIMEOUT_MS = 30_000
SQLITE_MAGIC = b"SQLite format 3\x00"
# Every migration this version has: all are pending on an empty database.
KNOWN_MIGRATIONS = frozenset(m.name for m in migrations.pending(sqlite_utils.Database(memory=True)))


class StoreError(Exception):
    """The database cannot be opened or used; the message says which file and why."""


class OutdatedDatabase(StoreError):
    """A database written by an older version, opened read-only: `synth migrate` fixes it.
    ``pending`` names the migrations it lacks."""

    def __init__(self, message: str, pending: list[str]):
        super().__init__(message)
        self.pending = pending


def db_path(path: str | os.PathLike | None = None) -> Path:
    """The database to use: the argument, else $SYNTH_DB, else ./synth.db."""
    return Path(path or os.environ.get("SYNTH_DB") or DEFAULT_DB)


def check_writable(path: Path) -> None:
    """Refuse a path we could not write to, before any work is done for it."""
    if path.exists():
        if path.is_dir():
            raise StoreError(f"{path} is a folder, not a database file")
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head and head != SQLITE_MAGIC:
            raise StoreError(f"{path} is not a SQLite database")
        if not os.access(path, os.W_OK):
            raise StoreError(f"cannot write to database {path}: permission denied")
    else:
        parent = path.parent
        if not parent.is_dir():
            raise StoreError(f"cannot create database {path}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise StoreError(f"cannot create database {path}: folder {parent} is not writable")


def _writable(path: Path) -> bool:
    """Whether SQLite could write ``path`` (the file, and its folder for -wal and -shm)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def readonly_uri(path: Path) -> str:
    """The URI to read ``path`` without writing it.

    Reading a WAL database needs its -shm file, which SQLite creates when it is missing;
    in a folder we cannot write (a read-only mount, someone else's results) it cannot. A
    database there with neither -shm nor -wal was checkpointed whole by its last writer,
    and no writer can be at work on it: it is opened as immutable. One whose -wal still
    holds changes cannot be read there without losing them, and is refused."""
    uri = f"{path.resolve().as_uri()}?mode=ro"  # as_uri: a "#" or "?" in a name is escaped
    shm, wal = (path.with_name(f"{path.name}-{end}") for end in ("shm", "wal"))
    if shm.exists() or os.access(path.parent, os.W_OK):
        return uri
    if wal.exists() and wal.stat().st_size:
        raise StoreError(f"cannot read {path}: its -wal file holds changes SQLite cannot read "
                         f"without creating {shm.name} in {path.parent}, which is not writable; "
                         f"copy the database with its -wal file to a folder you can write")  # fmt: skip
    return uri + "&immutable=1"


def open_db(path: str | os.PathLike | None = None, *, readonly: bool = False) -> sqlite_utils.Database:
    """Open (creating and migrating unless ``readonly``) the database at ``path``."""
    path = db_path(path)
    if readonly:
        if not path.exists():
            raise StoreError(f"no database at {path}")
        uri = readonly_uri(path)
    else:
        check_writable(path)
        uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot use database {path}: {e}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        db = sqlite_utils.Database(conn)
        if readonly:
            _check_readable(db, path)
        else:
            _retry_while_locked(conn, lambda: _prepare(db, path))
    except StoreError:
        conn.close()  # refused: nothing of it stays open
        raise
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(f"cannot use database {path}: {e}") from None
    return db


def _check_readable(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse to read what is not ours, is newer than us, or lacks migrations (then
    ``synth migrate`` is the fix): the read commands cannot migrate it themselves."""
    _refuse_newer(db, path)
    if pending := migrations.pending(db):
        if not migrations.applied(db):
            raise StoreError(_not_ours(path))
        where = "" if _writable(path) else " (after copying it to a folder you can write)"
        raise OutdatedDatabase(
            f"{path} was written by an older version of llm-pv; upgrade it with: "
            f"synth migrate {path}{where}",
            [m.name for m in pending],
        )


def _prepare(db: sqlite_utils.Database, path: Path) -> None:
    """WAL on, then the migrations applied: in one write transaction (BEGIN IMMEDIATE),
    so two processes creating one database take turns, and the second finds the work
    done, instead of both creating the same tables. A database another program or a
    newer llm-pv wrote is refused before anything is changed, and again inside that
    transaction."""
    conn = db.conn
    _refuse_foreign(db, path)
    # Switching takes a lock SQLite does not wait for: only switch a file not yet in WAL
    # (the mode is kept in the file), and let the caller retry while another holds it.
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if not migrations.pending(db):
        return  # the usual case: read only, no write lock taken
    conn.execute("BEGIN IMMEDIATE")
    try:
        _refuse_foreign(db, path)  # as it is now that nobody else writes it
        migrations.apply(db)  # in our transaction, each step is a savepoint of it
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _retry_while_locked(conn: sqlite3.Connection, step, seconds: float = BUSY_TIMEOUT_MS / 1000):
    """Run ``step`` again, for up to ``seconds``, while it fails with "database is locked".

    The busy timeout covers most waits, but SQLite reports some locks at once without
    waiting: switching a new file to WAL while another process opens it, or the first
    read of a file another process is switching. Each try starts with no transaction."""
    deadline = time.monotonic() + seconds
    pause = 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as e:
            if conn.in_transaction:
                conn.rollback()
            if "database is locked" not in str(e) or time.monotonic() >= deadline:
                raise
        time.sleep(pause * random.uniform(0.5, 1.5))  # jitter: the processes do not retry in step
        pause = min(pause * 2, 0.1)


def _refuse_newer(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse a database with migrations this version does not know: a newer llm-pv
    wrote it, and this one would misread it or write rows that break its schema."""
    if unknown := [m.name for m in migrations.applied(db) if m.name not in KNOWN_MIGRATIONS]:
        raise StoreError(
            f"{path} was written by a newer version of llm-pv (migrations this one does not "
            f"know: {', '.join(unknown)}); upgrade llm-pv to use it"
        )


def _refuse_foreign(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse to write a database that is not ours: one with tables but none of our
    migrations is another program's, and ours would be added to it. A new or empty file
    is fine (a lone, empty migrations table is one whose creation was interrupted)."""
    _refuse_newer(db, path)
    if migrations.applied(db):
        return
    if db.execute(
        "select 1 from sqlite_master where tbl_name != ? limit 1", [migrations.migrations_table]
    ).fetchone():
        raise StoreError(_not_ours(path))


def _not_ours(path: Path) -> str:
    return f"{path} is not an LLM-PV database (or is still being created)"
