"""Datasette over the run database (`synth browse`): read-only, live while a run writes
to it, described by tracker/datasette/metadata.yaml (descriptions, facets, sortable
columns, canned queries; full-text search comes from the m003_search migration)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import uvicorn
import yaml
from datasette.app import Datasette
from datasette.database import Database

from tracker.db import BUSY_TIMEOUT_MS, StoreError, open_db, readonly_uri

METADATA = Path(__file__).with_name("datasette") / "metadata.yaml"
PLUGINS = METADATA.with_name("plugins")  # program hashes as links to their programs
SETTINGS = {
    # Local and read-only: leave room for the leakage audit and facets on large runs.
    "sql_time_limit_ms": 20_000,
    "facet_time_limit_ms": 2_000,
    "suggest_facets": False,
}


class ServeError(StoreError):
    """The server cannot listen where asked (a port in use, a bad port or host). A
    StoreError, so the CLI prints it as one line (exit 2) as it does the store's errors."""


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
    with open_db(path, readonly=True):  # a clear error now, not a 500 later
        pass
    ds = Datasette(metadata=metadata(path.stem), settings=SETTINGS, plugins_dir=str(PLUGINS))
    ds.remove_database("_memory")  # added because no files were given
    ds.add_database(ReadOnlyDatabase(ds, path=str(path), is_mutable=True), name=path.stem)
    return ds


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for ``host`` and ``port`` (0: any free port), one per address the
    host has, bound as asyncio's create_server (what uvicorn uses) would bind them.

    Raises ServeError, one line, when that cannot be done: bound here, not inside
    uvicorn, whose failures are log lines and an exit."""
    if not 0 <= port <= 65535:
        raise ServeError(f"port {port} is not a port: use 1-65535 (or 0 for any free port)")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServeError(f"cannot serve on {host}: {e.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if len(sockets) > 1:  # port 0: every address on the port the first one got
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen()  # connections wait from now on, not only once uvicorn starts
    except OSError as e:
        for sock in sockets:
            sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} is in use; choose another with --port") from None
        raise ServeError(f"cannot serve on {host}:{port}: {e.strerror}") from None
    return sockets


def serve(
    db_path: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8001,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the database over HTTP until interrupted (blocking).

    ``ready`` is called with the database's URL once the port is bound (with ``port`` 0,
    the port the system chose). Raises ServeError when the port cannot be bound, StoreError
    when there is no database."""
    ds = make_datasette(db_path)
    sockets = listen(host, port)
    try:
        bound = sockets[0].getsockname()[1]
        base = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
        config = uvicorn.Config(ds.app(), host=host, port=bound, log_level="info", lifespan="on")
        server = uvicorn.Server(config)
        # what uvicorn logs when it binds the port itself
        logging.getLogger("uvicorn.error").info("Uvicorn running on %s (Press CTRL+C to quit)", base)
        if ready:
            ready(f"{base}/{Path(db_path).resolve().stem}")
        try:
            server.run(sockets=sockets)
        except KeyboardInterrupt:  # Ctrl-C, re-raised once uvicorn has shut down
            pass
    finally:
        for sock in sockets:
            sock.close()
