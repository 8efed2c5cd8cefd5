"""Opening the one SQLite database: WAL so readers never block the writer, a busy
timeout so nobody sees "database is locked", foreign keys on, migrations applied."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import sqlite_utils

from tracker.migrations import migrations

DEFAULT_DB = "synth.db"
BUSY_TIMEOUT_MS = 30_000
SQLITE_MAGIC = b"SQLite format 3\x00"


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
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        db = sqlite_utils.Database(conn)
        if not readonly:
            migrations.apply(db)
        elif pending := migrations.pending(db):
            if not migrations.applied(db):
                raise StoreError(f"{path} is not an LLM-PV database (or is still being created)")
            where = "" if _writable(path) else " (after copying it to a folder you can write)"
            raise OutdatedDatabase(
                f"{path} was written by an older version of llm-pv; upgrade it with: "
                f"synth migrate {path}{where}",
                [m.name for m in pending],
            )
    except StoreError:
        conn.close()  # refused: nothing of it stays open
        raise
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(f"cannot use database {path}: {e}") from None
    return db
