"""Bad input to `synth run`: one line on stderr, exit code 2, no traceback, nothing
written to the database, no call made."""

import contextlib
import os
import sqlite3

import pytest
from click.testing import CliRunner
from helpers import grid, one_line_error

import synth.engine.entry
from synth.cli import cli
from synth.errors import SynthError
from tracker import runs as store
from tracker.db import open_db

SMALL = grid(attempts=1)


@pytest.fixture
def workdir(workdir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-bad-input")
    (workdir / "broken.j2").write_text("{% for x in examples %}no end")
    (workdir / "undefined.j2").write_text("{{ no_such_variable }}")
    (workdir / "includes.j2").write_text('{% include "other.j2" %}')  # runs store one file
    (workdir / "other.j2").write_text("{{ examples_block }}")
    (workdir / "a-file").write_text("not a folder")
    (workdir / "notes.db").write_text("plain text, not SQLite")
    (workdir / "empty").mkdir()
    (workdir / "dangling.jsonl").symlink_to(workdir / "nowhere")
    (workdir / "odd" / "results_attempts.csv").mkdir(parents=True)
    (workdir / "taken").mkdir()  # another run's exports
    (workdir / "taken" / "results_attempts_manifest.json").write_text('{"run_id": "theirs"}')
    (workdir / "csv").mkdir()  # another run's CSV
    (workdir / "csv" / "results.csv").write_text("run_id,model\ntheirs,gpt-5\n")
    (workdir / "logs").mkdir()  # another run's per-trial log, its manifest elsewhere
    (workdir / "logs" / "results_attempts_fn_a_L20_trial1.jsonl").write_text('{"run_id": "theirs"}\n')
    return workdir


@pytest.fixture
def existing_db(workdir, openai_server):
    """A database holding one finished run, to check that a refused command adds nothing."""
    result = CliRunner().invoke(
        cli, ["run", *SMALL, "--api-base-url", openai_server.base_url, "--run-id", "done", "--db", "runs.db"]
    )
    assert result.exit_code == 0, result.output
    openai_server.requests.clear()
    return workdir / "runs.db"


CASES = [
    (["--functions", "fn_zz"], "unknown task 'fn_zz'"),
    (["--functions", "fn_a", "--lengths", "0"], "length must be a positive integer"),
    (["--functions", "fn_a", "--lengths", "twenty"], "--lengths takes whole numbers"),
    (["--lengths", "2_0"], "--lengths takes whole numbers (got 20 2_0)"),
    (
        ["--out-jsonl", "same.txt", "--out-csv", "same.txt"],
        "--out-jsonl and --out-csv name the same file, same.txt",
    ),
    (
        ["--out-dir", "o", "--out-manifest", "o/results_attempts.jsonl"],
        "--out-jsonl and --out-manifest name the same file",
    ),
    (["--functions", "fn_h", "--lengths", "22"], "fn_h at L=22"),
    (["--functions", "fn_aa", "--lengths", "30"], "fn_aa at L=30"),
    (["--functions", "fn_a", "--lengths", "5"], "fn_a at L=5: needs"),
    (["--train-size", "99"], "--train-size must be a positive even number"),
    (["--val-size", "-2"], "--val-size must be a positive even number"),
    (["--test-size", "0"], "--test-size must be a positive even number"),
    (["--reasoning-effort", ""], "--reasoning-effort must be a word such as none, minimal"),
    (["--reasoning-effort", "very high"], "--reasoning-effort must be a word"),
    (["--verbosity", "loud"], "Invalid value for '--verbosity'"),
    (["--tool-choice", "always"], "Invalid value for '--tool-choice'"),
    (["--api-mode", "grpc"], "Invalid value for '--api-mode'"),
    (["--attempts", "0"], "--attempts must be at least 1"),
    (["--num-trials", "0"], "--num-trials must be at least 1"),
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["--max-output-tokens", "0"], "--max-output-tokens must be positive"),
    (["--timeout", "-1"], "--timeout must be positive"),
    (["--eval-timeout", "0"], "--eval-timeout must be positive"),
    (["--num-trials", "many"], "Invalid value for '--num-trials'"),
    (["--run-id", "a/b"], "--run-id must be a plain name"),
    (["--run-id", "my run"], "--run-id must be a plain name"),
    (["--model", ""], "--model must not be empty"),
    (["--api-base-url", "localhost:8000/v1"], "--api-base-url must be an http(s) URL"),
    (["--prompt-template", "missing.j2"], "prompt template missing.j2: no such file"),
    (["--prompt-template", "empty"], "prompt template empty: a folder, not a file"),
    (["--prompt-template", "/dev/null"], "prompt template /dev/null: not a file"),
    (["--prompt-template", "broken.j2"], "prompt template broken.j2"),
    (["--prompt-template", "undefined.j2"], "no_such_variable"),
    (["--prompt-template", "includes.j2"], "prompt template includes.j2: cannot find 'other.j2'"),
    (["--db", "notes.db"], "notes.db is not a SQLite database"),
    (["--db", "nowhere/x.db"], "folder nowhere does not exist"),
    (["--out-dir", "a-file/out"], "cannot write exports to a-file/out"),
    (["--out-dir", "taken"], "taken holds the exports of run 'theirs'; choose another --out-dir"),
    (["--out-dir", "logs", "--out-manifest", "elsewhere.json"], "logs holds the exports of run 'theirs'"),
    (["--out-csv", "csv/results.csv"], "csv holds the exports of run 'theirs'"),
    (["--dataset-dir", "a-file/datasets"], "cannot write datasets to a-file/datasets"),
    (["--out-dir", "odd"], "cannot write exports: odd/results_attempts.csv is a folder; only a plain file"),
    (
        ["--out-jsonl", "dangling.jsonl"],
        "cannot write exports: dangling.jsonl is a symbolic link (to nothing)",
    ),
    (["--functions", "fn_p", "--uci-dir", "empty"], "HTRU_2.csv"),
    (
        ["--functions", "fn_q", "--test-size", "10000", "--strict-sizes", "--uci-dir", "UCI"],
        "fn_q at L=36: needs",
    ),
    (["--no-such-flag"], "No such option '--no-such-flag'"),
    (["--eval-timeout", "inf"], "--eval-timeout must be positive and at most 10,000,000 (got inf)"),
    (["--timeout", "nan"], "--timeout must be positive and at most 10,000,000 (got nan)"),
    (["--retry-max-delay", "1e300"], "--retry-max-delay must not be negative and at most"),
    (["--seed", "99999999999999999999999"], "--seed must be a whole number from 0 to 2^63 - 1"),
    (["--seed", "-1"], "--seed must be a whole number from 0 to 2^63 - 1 (got -1)"),
    (["--lengths", "99999999999999999999"], "symbols are more than a grid point may hold"),
    (["--test-size", "1000000000"], "1,000,000,020 examples of 20 symbols are more than"),
    # URLs the HTTP client would refuse only after the run was recorded
    (["--api-base-url", "http://[::1/v1"], "--api-base-url must be an http(s) URL"),
    (["--api-base-url", "http://[zz]/v1"], "--api-base-url must be an http(s) URL"),
    (["--api-base-url", "http://localhost:abc/v1"], "--api-base-url must be an http(s) URL"),
    (["--api-base-url", "http://localhost:99999/v1"], "--api-base-url must be an http(s) URL"),
    (["--api-base-url", "http://localhost:0/v1"], "--api-base-url must be an http(s) URL"),
    (["--api-base-url", "http://localhost:8000/v1\n"], "--api-base-url must be an http(s) URL"),
    (["--api-base-url", "http://local host/v1"], "--api-base-url must be an http(s) URL"),
    (["--api-base-url", "http://exämple.org/v1"], "--api-base-url must be an http(s) URL"),
    (["--api-base-url", "http:///v1"], "--api-base-url must be an http(s) URL"),
    # run ids later commands could not name, or no file system could hold
    (["--run-id", "-x"], "--run-id must be a plain name of at most 128 bytes, not starting with '-'"),
    (["--run-id", "--help-me"], "--run-id must be a plain name"),
    (["--run-id", ".hidden"], "--run-id must be a plain name"),
    (["--run-id", "r" * 2000], "(2,000 characters)"),
    (["--run-id", "é" * 65], "--run-id must be a plain name of at most 128 bytes"),
    (["--run-id", "tab\there"], "--run-id must be a plain name"),
    # whole numbers in the digits 0-9 only, as --lengths already was
    (["--num-trials", "٣"], "'٣' is not a whole number in the digits 0-9"),
    (["--attempts", "2_0"], "'2_0' is not a whole number in the digits 0-9"),
    (["--train-size", "１０"], "is not a whole number in the digits 0-9"),
    (["--seed", "4.2"], "'4.2' is not a whole number in the digits 0-9"),
    (["--eval-timeout", "٣.٥"], "'٣.٥' is not a number in the digits 0-9"),
    (["--timeout", "1_000"], "'1_000' is not a number in the digits 0-9"),
    # grids too large to write before the first call
    (["--num-trials", "100000000"], "the grid holds 100,000,000 trials (1 grid point(s) x 100,000,000)"),
    (
        ["--functions", "fn_a", "fn_b", "--lengths", "20", "30", "--num-trials", "25001"],
        "more than 100,000; lower --num-trials, or raise the bound with SYNTH_MAX_TRIALS=N",
    ),
]


def snapshot(workdir):
    """Every file and, for SQLite files, every table's row count."""
    state = {}
    for path in sorted(workdir.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")):
            state[str(path)] = path.read_bytes() if path.suffix != ".db" else None
            if path.suffix == ".db" and path.read_bytes()[:6] == b"SQLite":
                conn = sqlite3.connect(path)
                tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
                state[str(path)] = {t: conn.execute(f"select count(*) from [{t}]").fetchone() for t in tables}
                conn.close()
    return state


# Not the input's fault, so exit 1: a UCI file nowhere to be found or fetched.
FAULTS = {"HTRU_2.csv": 1}


@pytest.mark.slow
@pytest.mark.parametrize("args,message", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_run_input(args, message, existing_db, openai_server, request):
    """Each case is appended to a good command line: click keeps the last value of a
    repeated flag, and --functions/--lengths accumulate."""
    workdir = existing_db.parent
    if "UCI" in args:
        uci_dir = str(request.getfixturevalue("uci_dir"))
        args = [uci_dir if a == "UCI" else a for a in args]
    before = snapshot(workdir)
    result = CliRunner().invoke(
        cli, ["run", *SMALL, "--db", "runs.db", "--api-base-url", openai_server.base_url, *args]
    )
    one_line_error(result, message, code=FAULTS.get(message, 2))
    assert snapshot(workdir) == before, "nothing may be written"
    assert openai_server.requests == [], "no call may be made"


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume", ""], "no run '' in"),
        (["--functions", ""], "--functions was given no value"),
        (["--functions", ",", "--lengths", "20"], "--functions was given no value"),
        (["--functions", "fn_a", "--lengths", " "], "--lengths was given no value"),
    ],
    ids=["resume", "functions", "functions-comma", "lengths"],
)
def test_an_empty_value_is_refused_not_read_as_the_default(args, message, existing_db, openai_server):
    """`--resume "$RUN"` or `--functions "$FNS"` with the variable unset must not start
    the published grid, paid for, in its place."""
    before = snapshot(existing_db.parent)
    result = CliRunner().invoke(
        cli, ["run", *args, "--db", str(existing_db), "--api-base-url", openai_server.base_url]
    )
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert snapshot(existing_db.parent) == before and openai_server.requests == []


def test_a_grid_refused_elsewhere_reads_no_uci_source(workdir, openai_server):
    """fn_a at L=4 cannot be split: the UCI source of fn_p is then never looked for."""
    result = CliRunner().invoke(
        cli,
        ["run", *SMALL, "--functions", "fn_p", "--lengths", "4", "--api-base-url", openai_server.base_url],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: fn_a at L=4: needs 20 distinct")
    assert "fn_p" not in result.stderr and "HTRU" not in result.stderr


def test_resume_of_an_unknown_run(existing_db, openai_server):
    before = snapshot(existing_db.parent)
    result = CliRunner().invoke(cli, ["run", "--resume", "nope", "--db", str(existing_db)])
    assert result.exit_code == 2 and result.stderr == f"Error: no run 'nope' in {existing_db}\n"
    assert snapshot(existing_db.parent) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "more", [[], ["--functions", "fn_p", "--uci-dir", "empty"]], ids=["binary", "before a UCI download"]
)
def test_missing_api_key(existing_db, openai_server, monkeypatch, more):
    monkeypatch.delenv("OPENAI_API_KEY")
    before = snapshot(existing_db.parent)
    result = CliRunner().invoke(
        cli, ["run", *SMALL, "--db", str(existing_db), "--api-base-url", openai_server.base_url, *more]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: OPENAI_API_KEY is not set: export it, or use an offline "
        "--provider (tree, formula, logreg, forest, boosting, mlp, svm, knn); `synth run --dry-run` needs none"
    )
    assert len(result.stderr.splitlines()) == 1
    assert snapshot(existing_db.parent) == before and openai_server.requests == []
    assert "OPENAI_API_KEY" not in os.environ


def test_a_grid_refused_while_its_data_is_drawn_leaves_no_new_database(workdir):
    """fn_g at L=4 passes the plan, but its draws repeat inputs too often to split."""
    result = CliRunner().invoke(
        cli, ["run", "--dry-run", "--functions", "fn_g", "--lengths", "4", "--db", "new.db"]
    )
    assert result.exit_code == 2, result.output
    assert "cannot split without leakage" in result.stderr
    assert not any(workdir.glob("new.db*"))


def test_a_new_database_another_process_used_meanwhile_is_kept(workdir, monkeypatch):
    """This run created the file, but while it drew its data another run recorded itself
    there: refusing this run must not delete that one."""

    def meanwhile(db, points, uci_dir=None):
        other = open_db(workdir / "shared.db")
        store.create_run(
            other,
            {"run_id": "theirs", "provider": "tree", "model": "tree", "dry_run": 0, "config": "{}"},
            [],
        )
        other.close()
        raise SynthError("refused while drawing data")

    monkeypatch.setattr(synth.engine.entry, "ensure_datasets", meanwhile)
    result = CliRunner().invoke(cli, ["run", *SMALL, "--dry-run", "--db", "shared.db"])
    assert result.exit_code == 2 and "refused while drawing data" in result.stderr
    assert open_db(workdir / "shared.db", readonly=True)["runs"].get("theirs")["model"] == "tree"


@pytest.mark.parametrize("args", [[], ["datasets"]], ids=["synth", "synth datasets"])
def test_a_group_without_a_command_prints_its_help(args):
    result = CliRunner().invoke(cli, args)
    assert "Usage: " in result.output and "Commands:" in result.output
    assert isinstance(result.exception, SystemExit) or result.exception is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "key, position",
    [
        ("sk-tëst", 4),
        ("sk-test\n", 7),
        ("sk-te st", 5),
        ("\u201csk-test\u201d", 0),
        ("sk-\x1b", 3),
    ],
    ids=["accent", "newline", "space", "curly-quotes", "escape"],
)
def test_a_key_no_http_header_can_carry_is_refused_up_front(
    key, position, existing_db, openai_server, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", key)
    before = snapshot(existing_db.parent)
    result = CliRunner().invoke(
        cli, ["run", *SMALL, "--db", str(existing_db), "--api-base-url", openai_server.base_url]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"Error: OPENAI_API_KEY has a character an HTTP header cannot carry "
        f"at position {position}: check that it was copied whole and alone\n"
    )
    assert key not in result.output
    assert snapshot(existing_db.parent) == before and openai_server.requests == []


def test_the_grid_bound_can_be_raised(workdir, monkeypatch):
    monkeypatch.setenv("SYNTH_MAX_TRIALS", "3")
    args = [
        "run",
        "--dry-run",
        "--functions",
        "fn_a",
        "--lengths",
        "20",
        "--db",
        "g.db",
        "--train-size",
        "10",
        "--val-size",
        "10",
        "--test-size",
        "20",
    ]
    refused = CliRunner().invoke(cli, [*args, "--num-trials", "4"])
    assert refused.exit_code == 2 and "more than 3; lower --num-trials" in refused.stderr
    assert not (workdir / "g.db").exists()
    assert CliRunner().invoke(cli, [*args, "--num-trials", "3"]).exit_code == 0
    monkeypatch.setenv("SYNTH_MAX_TRIALS", "many")
    bad = CliRunner().invoke(cli, [*args, "--num-trials", "1", "--run-id", "other"])
    assert (
        bad.exit_code == 2 and bad.stderr == "Error: SYNTH_MAX_TRIALS must be a whole number (got 'many')\n"
    )


@pytest.mark.slow
def test_lengths_that_no_task_of_the_grid_reads_are_named(workdir, uci_dir):
    result = CliRunner().invoke(
        cli,
        ["run", "--dry-run", *grid("fn_p"), "--uci-dir", str(uci_dir), "--db", "t.db"],
    )
    assert result.exit_code == 0, result.output
    assert "Warning: --lengths is unused: fn_p take their length from their data" in result.stderr


OFFLINE = [
    "run",
    "--provider",
    "formula",
    "--max-candidates",
    "200",
    *SMALL,
    "--db",
    "runs.db",
    "--run-id",
    "edge",
]


def ctrl_c_at(monkeypatch, module, name, when=lambda *args, **kwargs: True):
    """Makes ``module.name`` raise KeyboardInterrupt (as Ctrl-C would arrive there) once,
    when ``when`` holds for its arguments."""
    real = getattr(module, name)
    fired = []

    def interrupted(*args, **kwargs):
        if not fired and when(*args, **kwargs):
            fired.append(True)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupted)
    return fired


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["run_started", "exports", "resumed"])
def test_ctrl_c_at_every_moment_of_a_recorded_run_marks_it_interrupted(moment, workdir, monkeypatch):
    """Just after the run row is committed, while the exports are written, or as a resume
    starts: `interrupted`, one line with the resume command, exit 130; a resume completes."""
    if moment == "resumed":  # a run to resume: interrupted as it started
        ctrl_c_at(monkeypatch, store, "record_event", lambda db, run_id, kind, *a, **k: kind == "run_started")
        assert CliRunner().invoke(cli, OFFLINE).exit_code == 130
    if moment == "exports":
        fired = ctrl_c_at(monkeypatch, synth.engine.entry, "write_exports")
    else:
        fired = ctrl_c_at(
            monkeypatch, store, "record_event", lambda db, run_id, kind, *a, **k: kind == moment
        )
    command = ["run", "--resume", "edge", "--db", "runs.db"] if moment == "resumed" else OFFLINE
    result = CliRunner().invoke(cli, command)
    assert fired and result.exit_code == 130, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert result.stderr.splitlines()[-1] == (
        "Error: run edge interrupted; nothing recorded is lost. Resume it with: "
        f"synth resume edge --db {workdir / 'runs.db'}"
    )  # progress lines may come before
    with closing_db(workdir / "runs.db") as conn:
        assert conn.execute("select status from runs").fetchall() == [("interrupted",)]
    monkeypatch.undo()
    monkeypatch.chdir(workdir)
    resumed = CliRunner().invoke(cli, ["run", "--resume", "edge", "--db", "runs.db"])
    assert resumed.exit_code == 0, resumed.output
    with closing_db(workdir / "runs.db") as conn:
        assert conn.execute("select status from runs").fetchall() == [("completed",)]
    assert (workdir / "runs" / "edge" / "results_attempts_manifest.json").exists()


def test_ctrl_c_while_the_run_is_recorded_writes_nothing(workdir, monkeypatch):
    fired = ctrl_c_at(monkeypatch, store, "create_run")
    result = CliRunner().invoke(cli, OFFLINE)
    assert fired and result.exit_code == 130
    assert result.stderr == "Error: interrupted before run edge was recorded; nothing of it was written\n"
    with closing_db(workdir / "runs.db") as conn:
        assert conn.execute("select count(*) from runs").fetchone() == (0,)


@contextlib.contextmanager
def closing_db(path):
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--attempts", "1001"], "--attempts must be at most 1,000 (got 1,001)"),
        (["--attempts", "100000000000000000000"], "--attempts must be at most 1,000"),
        (["--model", "gpt\nfive"], "--model must be one printable line"),
        (["--model", "gpt\x1b[2Jfive"], "--model must be one printable line"),
    ],
    ids=["attempts", "attempts-huge", "model-newline", "model-escape"],
)
def test_settings_that_would_run_forever_or_break_a_table(args, message, existing_db, openai_server):
    before = snapshot(existing_db.parent)
    result = CliRunner().invoke(
        cli, ["run", *SMALL, *args, "--db", str(existing_db), "--api-base-url", openai_server.base_url]
    )
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.splitlines()) == 1
    assert snapshot(existing_db.parent) == before and openai_server.requests == []


def test_browse_refuses_an_empty_host(existing_db):
    result = CliRunner().invoke(cli, ["browse", str(existing_db), "--host", "", "--port", "0"])
    assert result.exit_code == 2
    assert result.stderr == "Error: --host must not be empty (0.0.0.0 serves every address of this host)\n"


@pytest.mark.slow
@pytest.mark.parametrize("effort", ["xhigh", "none", "ultra"])
def test_a_reasoning_effort_is_sent_as_given(effort, existing_db, openai_server):
    """OpenAI adds levels with new models: any word is sent; the server says if it refuses."""
    result = CliRunner().invoke(
        cli,
        [
            "run",
            *SMALL,
            "--reasoning-effort",
            effort,
            "--run-id",
            effort,
            "--db",
            str(existing_db),
            "--api-base-url",
            openai_server.base_url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert openai_server.requests and all(
        r.body["reasoning"] == {"effort": effort} for r in openai_server.requests
    )
