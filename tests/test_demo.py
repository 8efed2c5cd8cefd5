"""The demo's code path on a smaller grid, and providers sharing one grid's datasets."""

import json

import pytest
from click.testing import CliRunner
from helpers import grid

from synth.cli import cli
from tracker.db import open_db


@pytest.mark.slow
def test_demo_then_another_provider_on_the_same_datasets(tmp_path, uci_dir, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "demo"
    options = [
        *grid("fn_e", "fn_q", trials=2, attempts=1, train=None, val=None, test=200),
        "--uci-dir",
        str(uci_dir),
    ]
    first = CliRunner().invoke(cli, ["demo", "--out-dir", str(out), *options])
    assert first.exit_code == 0, first.output
    db_path = out / "synth.db"
    assert f"database:  {db_path}" in first.stderr
    assert f" browse {db_path}" in first.stderr
    assert f"report:    {out / 'report.html'}" in first.stderr
    html = (out / "report.html").read_text()
    assert "research-standard gate: pass" in html and "fn_e" in html
    fn_e = next(line for line in first.stdout.splitlines() if line.startswith("fn_e"))
    assert "1.000 ± 0.000" in fn_e, "formula finds parity of 3 positions at L=20"
    db = open_db(db_path, readonly=True)
    (run,) = db["runs"].rows
    assert (run["provider"], run["model"], run["status"]) == ("formula", "formula", "completed")
    exports = out / run["run_id"]
    assert (exports / "results_attempts.csv").exists()
    assert sorted(p.name for p in (out / "datasets").iterdir()) == ["chess", "parity_rand_3"]
    assert db.execute("select sum(input_tokens + output_tokens) from responses").fetchone() == (0,)

    second = CliRunner().invoke(cli, ["demo", "--out-dir", str(out), "--provider", "tree", *options])
    assert second.exit_code == 0, second.output
    db = open_db(db_path, readonly=True)
    assert db["datasets"].count == 2, "the second provider reuses the same datasets"
    used = db.execute(
        "select r.provider, d.fingerprint from run_datasets rd join runs r using "
        "(run_id) join datasets d on d.id = rd.dataset_id order by 1, 2"
    ).fetchall()
    assert [fp for p, fp in used if p == "formula"] == [fp for p, fp in used if p == "tree"]
    listed = json.loads(CliRunner().invoke(cli, ["runs", "--json", "--db", str(db_path)]).output)
    assert sorted(r["provider"] for r in listed) == ["formula", "tree"]


@pytest.mark.slow
def test_demo_against_a_server_takes_the_model_call_settings_from_the_environment(
    tmp_path, openai_server, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-demo-test")
    monkeypatch.setenv("SYNTH_API_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("SYNTH_CONCURRENCY", "3")
    monkeypatch.setenv("SYNTH_MODEL", "local-model")
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        cli,
        [
            "demo",
            "--out-dir",
            str(out),
            "--provider",
            "openai",
            *grid(trials=2, attempts=1, train=None, val=None),
            "--max-retries",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(openai_server.requests) == 2
    assert {r.body["model"] for r in openai_server.requests} == {"local-model"}
    (run,) = open_db(out / "synth.db", readonly=True)["runs"].rows
    config = json.loads(run["config"])
    assert (config["api_base_url"], config["concurrency"], config["max_retries"]) == (
        openai_server.base_url,
        3,
        0,
    )


def test_a_refused_demo_leaves_no_folder_behind(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out-dir", str(out), "--provider", "openai"])
    assert result.exit_code == 2 and "OPENAI_API_KEY is not set" in result.stderr
    assert not out.exists()


def test_a_demo_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = CliRunner().invoke(cli, ["demo", "--out-dir", str(tmp_path / "a-file" / "demo")])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: cannot write the demo to {tmp_path / 'a-file' / 'demo'}: "
        f"{tmp_path / 'a-file'} is not a folder\n"
    )
