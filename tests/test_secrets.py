"""The API key is used for calls and never written anywhere: database (and its WAL),
exports, dataset mirror, logs, or anything else the run leaves behind."""

import pytest
from click.testing import CliRunner
from helpers import grid
from openai_server import Reply

from synth.cli import cli

SENTINEL = "sk-SENTINEL-7f3a9c1e5b"


@pytest.mark.slow
def test_the_key_leaves_no_trace(tmp_path, monkeypatch, openai_server):
    """Even when the server echoes it in its answers (a proxy that logs into the reply, a
    model shown it somehow): the reply is recorded with the key masked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    echoed = '{"code": "def f(x):\\n    return 1  # ' + SENTINEL + '"}'
    openai_server.script = lambda path, body: Reply(text=echoed)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "run",
            *grid("fn_a", "fn_g", trials=2, attempts=2),
            "--db",
            "s.db",
            "--api-base-url",
            openai_server.base_url,
            "--dataset-dir",
            "mirror",
            "--run-id",
            "s",
        ],
    )
    assert result.exit_code == 0, result.output
    exported = runner.invoke(cli, ["export", "s", "--db", "s.db", "--out-dir", "again"])
    shown = runner.invoke(cli, ["show", "s", "--db", "s.db", "--json"])
    listed = runner.invoke(cli, ["runs", "--db", "s.db", "--json"])
    reported = runner.invoke(cli, ["report", "s", "--db", "s.db", "-o", "report.html"])
    assert reported.exit_code == 0, reported.output
    # the key did reach the server, so its absence below means something
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {SENTINEL}"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "s.db" for p in files) and any(p.suffix == ".csv" for p in files)
    assert any("mirror" in p.parts for p in files) and any(p.name == "report.html" for p in files)
    for path in files:
        assert SENTINEL.encode() not in path.read_bytes(), f"the key is in {path}"
    for output in (result, exported, shown, listed, reported):
        assert SENTINEL not in output.output
    assert b"# [OPENAI_API_KEY]" in (tmp_path / "s.db").read_bytes(), "the answer, masked"
