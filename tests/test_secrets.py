"""The API key is used for calls and never written anywhere: database (and its WAL),
exports, dataset mirror, logs, or anything else the run leaves behind."""

import os

import pytest
from click.testing import CliRunner
from helpers import grid
from openai_server import Reply

from synth.cli import cli

SENTINEL = "sk-SENTINEL-7f3a9c1e5b"
ROTATED = "sk-ROTATED-2d8b4a6c0e"


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


def test_the_key_is_read_at_each_call_and_a_rotated_one_is_masked_too(tmp_path, monkeypatch, openai_server):
    """A key changed during a run (rotated) is the one the next call sends; never stored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)

    def script(path, body):
        if len(openai_server.requests) == 1:
            os.environ["OPENAI_API_KEY"] = ROTATED  # restored by monkeypatch at the end
            return Reply(text='{"code": "def f(x):\\n    return 0"}')  # wrong: a second attempt follows
        return Reply(text='{"code": "def f(x):\\n    return x.count(\\"1\\") % 2  # ' + ROTATED + '"}')

    openai_server.script = script
    result = CliRunner().invoke(
        cli,
        ["run", *grid("fn_a", attempts=2), "--db", "s.db", "--api-base-url", openai_server.base_url],
    )
    assert result.exit_code == 0, result.output
    sent = [r.headers["authorization"] for r in openai_server.requests]
    assert sent == [f"Bearer {SENTINEL}", f"Bearer {ROTATED}"]
    stored = (tmp_path / "s.db").read_bytes()
    assert SENTINEL.encode() not in stored and ROTATED.encode() not in stored
    assert b"# [OPENAI_API_KEY]" in stored, "the echoed rotated key, masked"
