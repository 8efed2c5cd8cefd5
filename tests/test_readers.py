"""Readers while a run writes: `synth runs`, `show`, `export`, `report`, Datasette and
plain SQL read the database during a run without a single "database is locked"."""

import asyncio
import os

import pytest
from click.testing import CliRunner
from helpers import grid, synth_process
from openai_server import Reply

from synth.cli import cli
from tracker.browse import make_datasette
from tracker.db import StoreError, open_db

pytestmark = pytest.mark.slow  # readers during a whole run

WRONG = '{"code": "def f(x):\\n    return 0"}'


def test_readers_never_see_a_locked_database(tmp_path, openai_server):
    openai_server.script = lambda path, body: Reply(text=WRONG, delay=0.02)
    run = synth_process(
        tmp_path,
        "run",
        *grid("fn_a", "fn_g", lengths=(20, 25), trials=4, attempts=3),
        "--concurrency",
        "4",
        "--api-base-url",
        openai_server.base_url,
        "--run-id",
        "w",
        "--db",
        "w.db",
        key="sk-test-readers",
    )
    runner = CliRunner()
    db = str(tmp_path / "w.db")
    reads, pages, seen_running, datasette = 0, 0, False, None
    while run.poll() is None:
        if not os.path.exists(db):
            continue
        for args in (
            ["runs", "--json", "--db", db],
            ["show", "w", "--db", db],
            ["export", "w", "--db", db, "--out-dir", str(tmp_path / "x")],
            ["report", "w", "--db", db, "--format", "md"],
        ):
            result = runner.invoke(cli, args)
            assert "locked" not in result.output
            assert result.exit_code in (0, 2), result.output  # 2: the run is not recorded yet
            reads += result.exit_code == 0
        try:
            conn = open_db(db, readonly=True)
            datasette = datasette or make_datasette(db)
        except StoreError:  # the run is still creating its tables
            continue
        for page in ("/w/attempts.json", "/w/leaderboard.json"):
            response = asyncio.run(datasette.client.get(page))
            assert response.status_code == 200, response.text
            pages += 1
        status = conn.execute("select status from runs where run_id = 'w'").fetchone()
        seen_running |= status == ("running",)
        conn.conn.close()
    _, err = run.communicate()
    assert run.returncode == 0, err
    assert seen_running and reads >= 8 and pages >= 2, "the readers ran while the run was writing"
    final = open_db(db, readonly=True)
    assert final.execute("select count(*) from attempts").fetchone() == (48,)
