"""Datasette over the run database (`synth browse`): read-only, live while a run writes
to it, described by tracker/datasette/metadata.yaml (descriptions, facets, sortable
columns, canned queries; full-text search comes from the m003_search migration)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import uvicorn
import yaml
from datasette.app import Datasette
from datasette.database import Database

from tracker.db import BUSY_TIMEOUT_MS, open_db, readonly_uri

METADATA = Path(__file__).with_name("datasette") / "metadata.yaml"
SETTINGS = {
    # Local and read-only: leave room for the leakage audit and facets on large runs.
    "sql_time_limit_ms": 20_000,
    "facet_time_limit_ms": 2_000,
    "suggest_facets": False,
}


class ReadOnlyDatabase(Database):
    """A database file Datasette may read but never write.

    Datasette opens `-i` files with immutable=1: SQLite then takes no locks and assumes
    the file never changes, wrong for a WAL database a run is writing. Here every
    connection, its write connection too, uses the store's read-only URI (mode=ro;
    immutable only in a folder no writer can use), so no plugin or canned query can
    write, and the busy timeout is the store's."""

    def connect(self, write=False):
        # Our own URI (Datasette's does not escape a "#" or "?" in the file name).
        conn = sqlite3.connect(readonly_uri(Path(self.path)), uri=True, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._all_file_connections.append(conn)
        return conn


def metadata(name: str) -> dict:
    """The metadata file, its database block keyed by ``name`` (the file's stem)."""
    meta = yaml.safe_load(METADATA.read_text())
    (block,) = meta["databases"].values()
    return {**meta, "databases": {name: block}}


def make_datasette(db_path: str | os.PathLike) -> Datasette:
    """A Datasette instance serving only the database at ``db_path``, read-only.

    Raises tracker.db.StoreError when there is no SQLite database at that path."""
    path = Path(db_path).resolve()
    open_db(path, readonly=True).conn.close()  # a clear error now, not a 500 later
    ds = Datasette(metadata=metadata(path.stem), settings=SETTINGS)
    ds.remove_database("_memory")  # added because no files were given
    ds.add_database(ReadOnlyDatabase(ds, path=str(path), is_mutable=True), name=path.stem)
    return ds


def serve(db_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve the database over HTTP until interrupted (blocking)."""
    ds = make_datasette(db_path)
    uvicorn.run(ds.app(), host=host, port=port, log_level="info", lifespan="on")
