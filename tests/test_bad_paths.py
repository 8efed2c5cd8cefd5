"""Files and streams at the edges: a price table that is a device, a pipe or huge; a
dataset folder whose layout meets a file; standard output that cannot be written; the
report's charts where V8 cannot start. Each is one line, never a traceback, and leaves
nothing half-written."""

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracker.dataset_files
from synth.cli import cli
from tracker.files import write_all_atomic

GRID = ["--functions", "fn_a", "--lengths", "20", "--num-trials", "1", "--train-size", "10",
        "--val-size", "10", "--test-size", "20"]  # fmt: skip


def synth(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def files_under(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}  # fmt: skip


def one_line_error(result, code=2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def done_run(tmp_path, monkeypatch):
    """A finished offline run in runs.db, in a fresh working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNTH_DB", raising=False)
    monkeypatch.delenv("SYNTH_PRICES", raising=False)
    result = synth("run", "--provider", "formula", "--max-candidates", 100, *GRID, "--attempts", 1,
                   "--db", "runs.db", "--run-id", "done")  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp_path


@pytest.fixture
def price_files(done_run):
    fifo = done_run / "prices.fifo"
    os.mkfifo(fifo)
    (done_run / "huge.json").write_text('{"models": {}, "pad": "' + "x" * (2 << 20) + '"}')
    (done_run / "latin1.json").write_bytes(b'{"models": {"caf\xe9": {}}}')
    (done_run / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    return done_run


@pytest.mark.parametrize("name, message", [
    ("/dev/zero", "cannot read price table /dev/zero: a device, not a plain file"),
    ("/dev/null", "cannot read price table /dev/null: a device, not a plain file"),
    ("prices.fifo", "cannot read price table prices.fifo: a pipe, not a plain file"),
    ("huge.json", "cannot read price table huge.json: 2,097,177 bytes, more than 1,048,576"),
    ("latin1.json", "price table latin1.json is not valid JSON: 'utf-8' codec can't decode"),
    ("deep.json", "price table deep.json is not valid JSON: maximum recursion depth"),
], ids=["zero", "null", "fifo", "huge", "latin1", "deep"])  # fmt: skip
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_price_table_that_is_no_small_plain_file_is_refused(name, message, how, price_files,
                                                              monkeypatch):
    """Before: /dev/zero was read until memory ran out, a FIFO hung."""
    before = files_under(price_files)
    if how == "flag":
        result = synth("report", "--db", "runs.db", "--prices", name, "-o", "r.html")
    else:
        monkeypatch.setenv("SYNTH_PRICES", name)
        result = synth("report", "--db", "runs.db", "-o", "r.html")
    assert one_line_error(result).startswith(f"Error: {message}")
    assert files_under(price_files) == before


def test_a_dataset_layout_that_meets_a_file_is_one_line(done_run):
    """`--dataset-dir d` where d/parity_all is a file: NotADirectoryError before."""
    (done_run / "d").mkdir()
    (done_run / "d" / "parity_all").write_text("a file where a folder goes")
    before = files_under(done_run / "d")
    run = synth("run", "--provider", "formula", "--max-candidates", 100, *GRID, "--attempts", 1,
                "--db", "runs.db", "--run-id", "mirrored", "--dataset-dir", "d")  # fmt: skip
    line = one_line_error(run)
    assert line.startswith("Error: cannot write datasets to d: d/parity_all/L20")
    assert line.endswith("Not a directory")
    exported = synth("datasets", "export", "--db", "runs.db", "--dataset-dir", "d")
    assert one_line_error(exported) == line
    assert files_under(done_run / "d") == before
    listed = json.loads(synth("runs", "--db", "runs.db", "--json").stdout)
    assert [r["run_id"] for r in listed] == ["done"], "the refused run was not recorded"


def test_a_full_disk_leaves_no_dataset_folder_without_its_meta(done_run, monkeypatch):
    real = tracker.dataset_files.write_atomic

    def full_at_meta(path, text):
        if path.name == "meta.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(tracker.dataset_files, "write_atomic", full_at_meta)
    result = synth("datasets", "export", "--db", "runs.db", "--dataset-dir", "out")
    assert one_line_error(result).endswith("meta.json: No space left on device")
    assert files_under(done_run / "out") == {}, "what the dataset got is undone"


@pytest.mark.parametrize("args", [
    ["tasks"], ["tasks", "--json"], ["runs", "--db", "runs.db"], ["show", "done", "--db", "runs.db"],
    ["report", "--db", "runs.db", "--format", "md"],
], ids=["tasks", "tasks-json", "runs", "show", "report-md"])  # fmt: skip
def test_standard_output_that_cannot_be_written_is_one_line(args, done_run):
    """`synth tasks > /dev/full`: an OSError traceback before."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "synth", *args], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr == "Error: cannot write to standard output: No space left on device\n"


def test_the_report_under_an_address_space_limit_has_no_charts_and_says_why(done_run):
    """Under `ulimit -v` (16 GiB here), V8 aborted `synth report` with SIGTRAP before."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))

    done = subprocess.run([sys.executable, "-m", "synth", "report", "--db", "runs.db", "-o", "r.html"],
                          stderr=subprocess.PIPE, text=True, preexec_fn=limit, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "Warning: the charts are not drawn: their JavaScript could not be made here (vl-convert's "
        "V8 cannot start under this address-space limit, `ulimit -v`); the tables hold every number",
        "report written to r.html",
    ]  # fmt: skip
    html = (done_run / "r.html").read_text()
    assert "the charts are not drawn" in html and "vegaEmbed(" not in html.split("<body>")[0]
    assert ">done<" in html or "done" in html  # the tables are there


@pytest.mark.parametrize("make", ["folder", "dangling"])
def test_a_uci_file_name_that_is_no_file_is_named(make, tmp_path, monkeypatch):
    """A folder named HTRU_2.csv in --uci-dir was reported as a missing file before."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNTH_UCI_BASE_URL", "http://127.0.0.1:9")  # nothing is downloaded
    monkeypatch.setenv("SYNTH_CACHE_DIR", str(tmp_path / "cache"))
    uci = tmp_path / "uci"
    uci.mkdir()
    if make == "folder":
        (uci / "HTRU_2.csv").mkdir()
    else:
        (uci / "HTRU_2.csv").symlink_to(tmp_path / "nowhere")
    result = synth("run", "--dry-run", "--functions", "fn_p", "--uci-dir", uci, "--db", "u.db")
    what = "a folder" if make == "folder" else "a link to nothing"
    assert one_line_error(result).startswith(f"Error: {uci / 'HTRU_2.csv'} is {what}, not the UCI file HTRU_2.csv")
    assert not (tmp_path / "u.db").exists()


def small_files():
    """Every file this process writes may hold 64 KiB: a write past it fails (EFBIG) as a
    full disk would."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))


def test_an_export_the_disk_cannot_hold_writes_none_of_its_files(tmp_path, monkeypatch):
    """`synth export` on a full disk left some of the JSONL, the CSV and the trial logs
    without their manifest."""
    monkeypatch.chdir(tmp_path)
    made = synth("run", "--provider", "formula", "--max-candidates", 100, "--functions", "fn_a",
                 "fn_b", "--lengths", 20, 30, "--num-trials", 10, "--attempts", 1, "--train-size",
                 10, "--val-size", 10, "--test-size", 20, "--db", "runs.db", "--run-id", "big")  # fmt: skip
    assert made.exit_code == 0, made.output
    done = subprocess.run([sys.executable, "-m", "synth", "export", "big", "--db", "runs.db",
                           "--out-dir", "out"], stderr=subprocess.PIPE, text=True,
                          preexec_fn=small_files, timeout=120)  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "File too large" in done.stderr, done.stderr
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_files_written_together_are_all_written_or_none(tmp_path):
    (tmp_path / "kept.txt").write_text("before")
    contents = {tmp_path / "kept.txt": "after", tmp_path / "new.txt": "new",
                tmp_path / "gone" / "x.txt": "its folder does not exist"}  # fmt: skip
    with pytest.raises(FileNotFoundError):
        write_all_atomic(contents)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]
    assert (tmp_path / "kept.txt").read_text() == "before"
    del contents[tmp_path / "gone" / "x.txt"]
    write_all_atomic(contents)
    assert (tmp_path / "kept.txt").read_text() == "after" and (tmp_path / "new.txt").read_text() == "new"
