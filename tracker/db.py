"""Opening the one SQLite database: WAL so readers never block the writer, a busy
timeout so nobody sees "database is locked", foreign keys on, migrations applied.
Only our own databases are used: another program's SQLite file, or one written by a
newer llm-pv, is refused rather than changed."""

from __future__ import annotations

import os
import random
import sqlite3
import stat
import time
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from tracker.files import folder_problem, kind
from tracker.migrations import TABLES, migrations

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


class StoreFault(StoreError):
    """The store failed a command whose input was fine: exit 1, as a failed run does."""

    exit_code = 1


class DamagedDatabase(StoreFault):
    """SQLite found the file damaged (a page overwritten, a file cut short)."""


class DatabaseLocked(StoreFault):
    """Another process held the database past the busy timeout."""


class DatabaseFull(StoreFault):
    """The disk (or the file system's quota) is full."""


class DatabaseNotWritable(StoreFault):
    """The file, or the mount it is on, is read-only, or the disk failed a read or write."""


def explain(error: sqlite3.Error, path: str | os.PathLike | None) -> StoreError:
    """A one-line StoreError for an error SQLite raised while using the database at
    ``path``, saying what it means and what to do: damaged, locked, full, read-only."""
    where = str(path) if path is not None else "the database"
    name = getattr(error, "sqlite_errorname", None) or ""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = message.lower()
    if name.startswith("SQLITE_NOTADB") or "file is not a database" in text:
        if path is None or _magic(Path(path)) != SQLITE_MAGIC:  # not SQLite at all: no damage
            return StoreError(f"cannot use database {where}: {message}")
    if (
        name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
        or "malformed" in text
        or "file is not a database" in text
    ):
        return damaged(where, message)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return DatabaseLocked(
            f"{where} is locked: another process holds it and did not let go within "
            f"{BUSY_TIMEOUT_MS / 1000:g} s ({message}); try again once it is done"
        )
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return DatabaseFull(f"cannot write {where}: the disk is full ({message}); free some space")
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return DatabaseNotWritable(f"cannot write {where}: it is read-only ({message})")
    if name.startswith("SQLITE_IOERR") or "i/o error" in text:
        return DatabaseNotWritable(
            f"cannot read or write {where}: {message} (the disk or its "
            f"file system failed, or the file was removed)"
        )
    return StoreError(f"cannot use database {where}: {message}")


def damaged(path: str | os.PathLike, problem: str) -> DamagedDatabase:
    return DamagedDatabase(
        f"{path} is damaged: {problem}; check it with: sqlite3 {path} 'PRAGMA integrity_check' "
        f"(then restore it from a copy, or salvage what is left with sqlite3's .recover)"
    )


def _magic(path: Path) -> bytes | None:
    """The first 16 bytes of a regular file (never opening a FIFO or a device)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None
        with open(path, "rb") as fh:
            return fh.read(16)
    except OSError:
        return None


def check_file(path: Path) -> None:
    """Refuse, without opening it, a path that is there but is no regular file: a FIFO
    (opening it would wait for a writer forever), a folder, a device such as /dev/null,
    a socket; and a symbolic link that points nowhere. An absent path passes: a writer
    creates it, a reader says there is none."""
    try:
        mode = path.stat().st_mode  # through symbolic links: what they lead to counts
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            raise StoreError(
                f"{path} is a symbolic link to {os.readlink(path)}, which does not "
                f"exist: the link points nowhere"
            ) from None
        return
    except OSError as e:  # a loop of links, a folder we may not search, a name too long
        raise StoreError(f"cannot use database {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise StoreError(f"{path} is not a database file: it is {kind(mode)}")


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")


# The connections open_db made within the innermost session(), with, for read-only ones
# of a file that had no -wal and -shm beside it, that file: see session().
_session: list[tuple[sqlite_utils.Database, Path | None]] | None = None


@contextmanager
def session():
    """Close, when the block ends, every connection open_db made within it, and remove
    the -wal and -shm files its read-only connections created beside a database that had
    none. A read-only connection cannot remove them itself (SQLite leaves that to the
    last read-write connection to close): a read command must leave a database as it
    found it. The CLI runs each command in one."""
    global _session
    outer, _session = _session, []
    try:
        yield
    finally:
        opened, _session = _session, outer
        for db, _ in opened:
            db.conn.close()
        for path in dict.fromkeys(p for _, p in opened if p is not None):
            _tidy(path)


def _tidy(path: Path) -> None:
    """Remove the -wal and -shm files beside ``path`` the way SQLite does: a read-write
    connection that reads and then closes removes them when it is the file's last
    connection (folding into the file what another writer left in the -wal, as that
    writer's own close would have). While another process uses the file it removes
    nothing; a lock held at that moment means the same."""
    if not any(p.exists() for p in _sidecars(path)):
        return
    try:
        conn = sqlite3.connect(path.resolve().as_uri(), uri=True, timeout=0)
    except sqlite3.Error:
        return
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error:
        pass
    finally:
        conn.close()


def remove_if_empty(db: sqlite_utils.Database, path: Path) -> None:
    """Remove the database this call created, unless it holds a run or a dataset by now
    (another process may have started to use the new file meanwhile)."""
    db.conn.execute("begin immediate")  # no writer in the middle of recording one
    empty = not any(db.execute(f"select 1 from {t} limit 1").fetchone() for t in ("runs", "datasets"))
    db.conn.rollback()
    db.close()
    if empty:
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            name.unlink(missing_ok=True)


def db_path(path: str | os.PathLike | None = None) -> Path:
    """The database to use: the argument, else $SYNTH_DB, else ./synth.db."""
    return Path(path or os.environ.get("SYNTH_DB") or DEFAULT_DB)


def check_writable(path: Path) -> None:
    """Refuse a path we could not write to, before any work is done for it."""
    check_file(path)
    if path.exists():
        head = _magic(path)
        if head and head != SQLITE_MAGIC:
            raise StoreError(f"{path} is not a SQLite database")
        if not os.access(path, os.W_OK):
            raise StoreError(f"cannot write to database {path}: permission denied")
    elif problem := folder_problem(path.parent):
        raise StoreError(f"cannot create database {path}: {problem}")


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
        raise StoreError(
            f"cannot read {path}: its -wal file holds changes SQLite cannot read "
            f"without creating {shm.name} in {path.parent}, which is not writable; "
            f"copy the database with its -wal file to a folder you can write"
        )
    return uri + "&immutable=1"


def open_db(path: str | os.PathLike | None = None, *, readonly: bool = False) -> sqlite_utils.Database:
    """Open (creating and migrating unless ``readonly``) the database at ``path``."""
    path = db_path(path)
    fresh = None  # the file, when a read-only connection may leave -wal and -shm beside it
    if readonly:
        check_file(path)
        if not path.exists():
            raise StoreError(f"no database at {path}")
        uri = readonly_uri(path)
        if not any(p.exists() for p in _sidecars(path)):
            fresh = path
    else:
        check_writable(path)
        uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.DatabaseError as e:
        raise explain(e, path) from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        db = sqlite_utils.Database(conn)
        if readonly:
            _check_readable(db, path)
        else:
            _retry_while_locked(conn, lambda: _prepare(db, path))
    except StoreError:
        _refused(conn, fresh)  # nothing of it stays open, nothing new beside it
        raise
    except sqlite3.DatabaseError as e:
        _refused(conn, fresh)
        raise explain(e, path) from None
    db.store_path = path  # the path as given: store errors name it so
    if _session is not None:
        _session.append((db, fresh))
    return db


def _refused(conn: sqlite3.Connection, fresh: Path | None) -> None:
    conn.close()
    if fresh is not None:
        _tidy(fresh)


def _check_readable(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse to read what is not ours, is newer than us, or lacks migrations (then
    ``synth migrate`` is the fix): the read commands cannot migrate it themselves."""
    _refuse_newer(db, path)
    if not (pending := migrations.pending(db)):
        _refuse_incomplete(db, path)
    if pending:
        if not migrations.applied(db):
            raise StoreError(_not_ours(path))
        where = "" if _writable(path) else " (after copying it to a folder you can write)"
        raise OutdatedDatabase(
            f"{path} was written by an older version of llm-pv; upgrade it with: synth migrate {path}{where}",
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
        _refuse_incomplete(db, path)
        return  # the usual case: read only, no write lock taken
    conn.execute("BEGIN IMMEDIATE")
    try:
        _refuse_foreign(db, path)  # as it is now that nobody else writes it
        _refuse_damaged(db, path)  # migrating rewrites tables: never one SQLite finds damaged
        migrations.apply(db)  # in our transaction, each step is a savepoint of it
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _refuse_incomplete(db: sqlite_utils.Database, path: Path) -> None:
    """A database whose migrations are all recorded must hold their tables: one dropped
    by hand would otherwise read as "no run" or fail mid-run."""
    if missing := sorted(set(TABLES) - set(db.table_names())):
        raise DamagedDatabase(
            f"{path} lacks the table(s) {', '.join(missing)} that its recorded migrations made: "
            "it was changed by hand or by another program; restore a copy of it"
        )


def _retry_while_locked(conn: sqlite3.Connection, step, seconds: float | None = None):
    """Run ``step`` again, for up to ``seconds``, while it fails with "database is locked".

    The busy timeout covers most waits, but SQLite reports some locks at once without
    waiting: switching a new file to WAL while another process opens it, or the first
    read of a file another process is switching. Each try starts with no transaction."""
    deadline = time.monotonic() + (BUSY_TIMEOUT_MS / 1000 if seconds is None else seconds)
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


def _refuse_damaged(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse to migrate a database PRAGMA quick_check finds damaged (a new one, empty,
    is checked at once)."""
    problems = [r[0] for r in db.conn.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise damaged(path, problems[0])


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
