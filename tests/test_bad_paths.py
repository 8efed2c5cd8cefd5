"""Files and streams at the edges: a price table that is a device, a pipe or huge; a
dataset folder whose layout meets a file; standard output that cannot be written; the
report's charts where V8 cannot start. Each is one line, never a traceback, and leaves
nothing half-written."""

import errno
import json
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import grid, one_line_error, run_cli, snapshot

import tracker.dataset_files
import tracker.runs
from reports.html import bundle_file, vega_javascript
from tracker.files import write_all_atomic

pytestmark = pytest.mark.slow  # a full run (or several) per case

GRID = grid()
OFFLINE = ["run", "--provider", "formula", "--max-candidates", 100, *GRID, "--attempts", 1, "--db", "runs.db"]


@pytest.fixture
def done_run(workdir, monkeypatch):
    """A finished offline run in runs.db, in a fresh working folder."""
    monkeypatch.delenv("SYNTH_PRICES", raising=False)
    result = run_cli(*OFFLINE, "--run-id", "done")
    assert result.exit_code == 0, result.output
    return workdir


@pytest.fixture
def price_files(done_run):
    fifo = done_run / "prices.fifo"
    os.mkfifo(fifo)
    (done_run / "huge.json").write_text('{"models": {}, "pad": "' + "x" * (2 << 20) + '"}')
    (done_run / "latin1.json").write_bytes(b'{"models": {"caf\xe9": {}}}')
    (done_run / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (done_run / "a-file").write_text("")
    (done_run / "loop").symlink_to("loop")
    return done_run


@pytest.mark.parametrize(
    "name, message",
    [
        ("/dev/zero", "cannot read price table /dev/zero: a character device, not a plain file"),
        ("/dev/null", "cannot read price table /dev/null: a character device, not a plain file"),
        ("prices.fifo", "cannot read price table prices.fifo: a named pipe (FIFO), not a plain file"),
        ("huge.json", "cannot read price table huge.json: 2,097,177 bytes, more than 1,048,576"),
        ("latin1.json", "price table latin1.json is not valid JSON: 'utf-8' codec can't decode"),
        ("deep.json", "price table deep.json is not valid JSON: maximum recursion depth"),
        # click said "does not exist" of any path it could not stat (a folder it may not enter)
        ("missing.json", "cannot read price table missing.json: No such file or directory"),
        ("a-file/p.json", "cannot read price table a-file/p.json: Not a directory"),
        ("loop", "cannot read price table loop: Too many levels of symbolic links"),
    ],
    ids=["zero", "null", "fifo", "huge", "latin1", "deep", "missing", "under-a-file", "link-loop"],
)
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_price_table_that_is_no_small_plain_file_is_refused(name, message, how, price_files, monkeypatch):
    """Before: /dev/zero was read until memory ran out, a FIFO hung."""
    before = snapshot(price_files)
    if how == "flag":
        result = run_cli("report", "--db", "runs.db", "--prices", name, "-o", "r.html")
    else:
        monkeypatch.setenv("SYNTH_PRICES", name)
        result = run_cli("report", "--db", "runs.db", "-o", "r.html")
    assert one_line_error(result).startswith(f"Error: {message}")
    assert snapshot(price_files) == before


def test_a_dataset_layout_that_meets_a_file_is_one_line(done_run):
    """`--dataset-dir d` where d/parity_all is a file: NotADirectoryError before."""
    (done_run / "d").mkdir()
    (done_run / "d" / "parity_all").write_text("a file where a folder goes")
    before = snapshot(done_run / "d")
    run = run_cli(*OFFLINE, "--run-id", "mirrored", "--dataset-dir", "d")
    line = one_line_error(run)
    assert line.startswith("Error: cannot write datasets to d: d/parity_all/L20")
    assert line.endswith("Not a directory")
    exported = run_cli("datasets", "export", "--db", "runs.db", "--dataset-dir", "d")
    assert one_line_error(exported) == line
    assert snapshot(done_run / "d") == before
    listed = json.loads(run_cli("runs", "--db", "runs.db", "--json").stdout)
    assert [r["run_id"] for r in listed] == ["done"], "the refused run was not recorded"


def test_a_full_disk_leaves_no_dataset_folder_without_its_meta(done_run, monkeypatch):
    real = tracker.dataset_files.write_atomic

    def full_at_meta(path, text):
        if path.name == "meta.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(tracker.dataset_files, "write_atomic", full_at_meta)
    result = run_cli("datasets", "export", "--db", "runs.db", "--dataset-dir", "out")
    assert one_line_error(result).endswith("meta.json: No space left on device")
    assert snapshot(done_run / "out") == {}, "what the dataset got is undone"


@pytest.mark.parametrize(
    "args",
    [
        ["tasks"],
        ["tasks", "--json"],
        ["runs", "--db", "runs.db"],
        ["show", "done", "--db", "runs.db"],
        ["report", "--db", "runs.db", "--format", "md"],
    ],
    ids=["tasks", "tasks-json", "runs", "show", "report-md"],
)
def test_standard_output_that_cannot_be_written_is_one_line(args, done_run):
    """`synth tasks > /dev/full`: an OSError traceback before."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "synth", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr == "Error: cannot write to standard output: No space left on device\n"


def test_the_report_under_an_address_space_limit_has_no_charts_and_says_why(done_run, monkeypatch):
    """Under `ulimit -v` (16 GiB here), V8 aborted `synth report` with SIGTRAP before. With
    no bundle made yet there are no charts; once one is cached, the page has them."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(done_run / "cache"))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))

    def report():
        return subprocess.run(
            [sys.executable, "-m", "synth", "report", "--db", "runs.db", "-o", "r.html"],
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit,
            timeout=300,
        )

    done = report()
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "Warning: the charts are not drawn: their JavaScript could not be made here (vl-convert's "
        "V8 cannot start under this address-space limit, `ulimit -v`); the tables hold every number",
        "report written to r.html",
    ]
    html = (done_run / "r.html").read_text()
    assert "the charts are not drawn" in html and "vegaEmbed(" not in html.split("<body>")[0]
    assert ">done<" in html or "done" in html  # the tables are there
    assert not bundle_file().exists()
    vega_javascript.cache_clear()
    bundle = vega_javascript()  # made here, with no limit, and kept
    assert bundle_file().is_file() and bundle_file().is_relative_to(done_run / "cache")
    done = report()
    assert done.returncode == 0 and done.stderr == "report written to r.html\n", done.stderr
    assert bundle in (done_run / "r.html").read_text()


@pytest.mark.parametrize("make", ["folder", "dangling"])
def test_a_uci_file_name_that_is_no_file_is_named(make, workdir):
    """A folder named HTRU_2.csv in --uci-dir was reported as a missing file before."""
    uci = workdir / "uci"
    uci.mkdir()
    if make == "folder":
        (uci / "HTRU_2.csv").mkdir()
    else:
        (uci / "HTRU_2.csv").symlink_to(workdir / "nowhere")
    result = run_cli("run", "--dry-run", "--functions", "fn_p", "--uci-dir", uci, "--db", "u.db")
    what = "a folder" if make == "folder" else "a link to nothing"
    assert one_line_error(result).startswith(
        f"Error: {uci / 'HTRU_2.csv'} is {what}, not the UCI file HTRU_2.csv"
    )
    assert not (workdir / "u.db").exists()


def small_files():
    """Every file this process writes may hold 64 KiB: a write past it fails (EFBIG) as a
    full disk would."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))


def test_an_export_the_disk_cannot_hold_writes_none_of_its_files(tmp_path, monkeypatch):
    """`synth export` on a full disk left some of the JSONL, the CSV and the trial logs
    without their manifest."""
    monkeypatch.chdir(tmp_path)
    made = run_cli(
        *OFFLINE[:5],
        *grid("fn_a", "fn_b", lengths=(20, 30), trials=10, attempts=1),
        "--db",
        "runs.db",
        "--run-id",
        "big",
    )
    assert made.exit_code == 0, made.output
    done = subprocess.run(
        [sys.executable, "-m", "synth", "export", "big", "--db", "runs.db", "--out-dir", "out"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=small_files,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "File too large" in done.stderr, done.stderr
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_files_written_together_are_all_written_or_none(tmp_path):
    (tmp_path / "kept.txt").write_text("before")
    contents = {
        tmp_path / "kept.txt": "after",
        tmp_path / "new.txt": "new",
        tmp_path / "gone" / "x.txt": "its folder does not exist",
    }
    with pytest.raises(FileNotFoundError):
        write_all_atomic(contents)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]
    assert (tmp_path / "kept.txt").read_text() == "before"
    del contents[tmp_path / "gone" / "x.txt"]
    write_all_atomic(contents)
    assert (tmp_path / "kept.txt").read_text() == "after" and (tmp_path / "new.txt").read_text() == "new"


@pytest.mark.parametrize(
    "args",
    [
        ["--out-jsonl", "runs.db"],
        ["--out-csv", "./runs.db"],
        ["--out-manifest", "runs.db-wal"],
        ["--out-jsonl", "link.db"],
        ["--out-dir", ".", "--out-jsonl", "runs.db"],
    ],
    ids=["jsonl", "csv", "manifest-wal", "symlink", "out-dir"],
)
def test_an_export_that_would_overwrite_the_database_is_refused(args, done_run):
    """Before: the run was paid for, then its JSONL replaced the database, every run lost."""
    (done_run / "link.db").symlink_to(done_run / "runs.db")
    before = snapshot(done_run)
    line = one_line_error(run_cli(*OFFLINE, "--run-id", "again", *args))
    assert "a file of the database runs.db: every run in it would be lost" in line
    assert snapshot(done_run) == before


@pytest.mark.parametrize("out", ["./runs.db", "runs.db-shm"])
def test_a_report_over_the_database_is_refused(out, done_run):
    """Before: `report -o x.db` replaced the database x.db with the HTML page, exit 0."""
    before = snapshot(done_run)
    line = one_line_error(run_cli("report", "--db", "runs.db", "-o", out))
    assert line.endswith("is a file of the database runs.db, which the report would overwrite")
    assert snapshot(done_run) == before


def test_an_export_over_the_database_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = run_cli(*OFFLINE[:-1], "results_attempts.csv", "--run-id", "r", "--out-dir", "out")
    assert made.exit_code == 0, made.output
    before = snapshot(tmp_path)
    line = one_line_error(run_cli("export", "r", "--db", "results_attempts.csv", "--out-dir", "."))
    assert "would be written over results_attempts.csv, a file of the database" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flag", ["--out-dir", "--dataset-dir", "--out-jsonl", "--prompt-template"])
def test_a_path_too_long_for_the_file_system_is_one_line(flag, done_run):
    """A name over 255 bytes: an OSError traceback before (pathlib's exists() raised)."""
    before = snapshot(done_run)
    line = one_line_error(run_cli(*OFFLINE, "--run-id", "long", flag, "d" * 300))
    assert line.endswith("File name too long") and len(line) < 300
    assert snapshot(done_run) == before


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--out-dir", ""],
        ["run", "--dataset-dir", ""],
        ["run", "--db", ""],
        ["export", "done", "--out-dir", ""],
        ["datasets", "export", "--dataset-dir", ""],
        ["report", "-o", ""],
        ["runs", "--db", " "],
    ],
    ids=["run-out-dir", "run-dataset-dir", "run-db", "export", "datasets-export", "report", "runs"],
)
def test_an_empty_path_is_refused_not_read_as_the_current_folder(args, done_run):
    before = snapshot(done_run)
    assert one_line_error(run_cli(*args)).endswith("a path must not be empty")
    assert snapshot(done_run) == before


def test_report_to_standard_output_with_a_dash(done_run):
    result = run_cli("report", "--db", "runs.db", "-o", "-", "--format", "md")
    assert result.exit_code == 0 and "fn_a" in result.stdout
    assert not (done_run / "-").exists()


def test_a_closed_stderr_does_not_stop_a_run(done_run):
    """Progress on a closed stderr raised, and the run stayed `running`."""
    subprocess.run(
        [sys.executable, "-m", "synth", *map(str, OFFLINE), "--run-id", "quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    conn = sqlite3.connect(done_run / "runs.db")
    assert conn.execute("select status from runs where run_id = 'quiet'").fetchone() == ("completed",)
    conn.close()
    done = subprocess.run(
        [sys.executable, "-m", "synth", *map(str, OFFLINE), "--run-id", "closed"],
        stdout=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(2),
        timeout=120,
    )
    conn = sqlite3.connect(done_run / "runs.db")
    assert conn.execute("select status from runs where run_id = 'closed'").fetchone() == ("completed",)
    conn.close()
    assert done.returncode == 0


def drop_tables(path: Path, *tables: str) -> None:
    conn = sqlite3.connect(path)
    for (view,) in conn.execute("select name from sqlite_master where type = 'view'").fetchall():
        conn.execute(f"drop view [{view}]")
    for table in tables:
        conn.execute(f"drop table [{table}]")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "args",
    [
        ["show", "done"],
        ["runs"],
        ["migrate"],
        ["export", "done"],
        ["run", *OFFLINE[1:-2], "--run-id", "next"],
    ],
    ids=["show", "runs", "migrate", "export", "run"],
)
def test_a_database_that_lost_a_table_says_so(args, done_run):
    """With `runs` dropped by hand, `show` said "no run" and `migrate` "up to date"."""
    drop_tables(done_run / "runs.db", "evaluations")
    before = snapshot(done_run)
    command = [args[0], "--db", "runs.db", *args[1:]] if args[0] != "migrate" else ["migrate", "runs.db"]
    line = one_line_error(run_cli(*command), code=1)
    assert line == (
        "Error: runs.db lacks the table(s) evaluations that its recorded migrations made: "
        "it was changed by hand or by another program; restore a copy of it"
    )
    assert snapshot(done_run) == before


def test_a_table_lost_during_a_run_ends_it_failed(done_run, monkeypatch):
    real = tracker.runs.record_event

    def drop_after_start(db, run_id, kind, *args, **kwargs):
        done = real(db, run_id, kind, *args, **kwargs)
        if kind == "run_started":
            drop_tables(done_run / "runs.db", "evaluations")
        return done

    monkeypatch.setattr(tracker.runs, "record_event", drop_after_start)
    result = run_cli(*OFFLINE, "--run-id", "broken")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    conn = sqlite3.connect(done_run / "runs.db")
    assert conn.execute("select status from runs where run_id = 'broken'").fetchone() == ("failed",)
    conn.close()


@pytest.mark.parametrize(
    "args",
    [["tasks"], ["runs", "--db", "runs.db"], ["browse", "runs.db", "--port", "0"]],
    ids=["tasks", "runs", "browse"],
)
def test_a_closed_standard_output_is_refused_not_written_to_nowhere(args, done_run):
    """`synth runs >&-` exited 0 having printed nothing; `browse` raised in uvicorn's logging."""
    done = subprocess.run(
        [sys.executable, "-m", "synth", *args],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "Error: standard output is closed; send it to a file, or to /dev/null (`> /dev/null`)\n"
    )
