"""Plain helpers the test modules share (fixtures live in conftest.py): the grid options
of a small run, running the CLI, its one-line errors, snapshots of a folder, and an
offline proposer's request and its program's predictions in the sandbox, and a run
recorded by hand; a LaTeX table read by its structure."""

import csv
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from synth.cli import cli
from synth.datasets.grid import SPLITS
from synth.providers import ProposeRequest
from synth.sandbox import evaluate
from tracker import runs as store

# Grid points the offline proposers are checked on: binary, decimal, graph; UCI tables.
GRIDS = [("fn_e", 20), ("fn_a", 50), ("fn_i", 20), ("fn_aa", 50)]
TABULAR = [("fn_m", 14), ("fn_n", 20), ("fn_p", 8), ("fn_q", 36)]


def grid(
    *functions: str,
    lengths=(20,),
    trials=1,
    attempts=None,
    train=10,
    val=10,
    test=20,
) -> list[str]:
    """The grid options of a small run (fn_a at L=20, one trial, 10/10/20 rows unless
    told otherwise); ``attempts``, ``train`` or ``val`` of None leave that option out."""
    args = ["--functions", *(functions or ("fn_a",)), "--lengths", *map(str, lengths)]
    args += ["--num-trials", str(trials)]
    if attempts is not None:
        args += ["--attempts", str(attempts)]
    for option, size in (("--train-size", train), ("--val-size", val), ("--test-size", test)):
        if size is not None:
            args += [option, str(size)]
    return args


def run_cli(*args, catch_exceptions=True):
    """`synth ARGS...` in this process (arguments may be numbers or paths)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=catch_exceptions)


def synth_process(cwd, *args, key="sk-test-not-a-real-key", **popen):
    """`python -m synth ARGS...` as a child process in ``cwd`` with OPENAI_API_KEY=``key``
    and no SYNTH_DB from the caller; stdout and stderr piped, as text."""
    env = {**os.environ, "OPENAI_API_KEY": key}
    env.pop("SYNTH_DB", None)
    return subprocess.Popen(
        [sys.executable, "-m", "synth", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def one_line_error(result, *fragments: str, code: int = 2) -> str:
    """The command ended with exit ``code`` through click (no exception escaped), without a
    traceback, and said so in one line on stderr, "Error: ..." holding every fragment;
    returns that line."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict:
    """Every entry under ``folder`` (but names ending in ``skip``): a regular file's bytes,
    "folder" for a folder, anything else its kind (never opened: a FIFO would block)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if skip and path.name.endswith(skip):
            continue
        mode = os.lstat(path).st_mode
        if stat.S_ISREG(mode):
            state[str(path.relative_to(folder))] = path.read_bytes()
        elif stat.S_ISDIR(mode):
            state[str(path.relative_to(folder))] = "folder"
        else:
            state[str(path.relative_to(folder))] = stat.S_IFMT(mode)
    return state


# What differs between two runs of the same grid: call timings and the server's reply ids.
VARYING = ("duration_ms", "response_id")


def exports(out: Path) -> dict:
    """A run's export files with the fields that differ between runs of one grid removed."""
    files = {}
    for path in sorted(out.glob("results_attempts*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        files[path.name] = [{k: v for k, v in r.items() if k not in VARYING} for r in rows]
    with open(out / "results_attempts.csv", newline="") as fh:
        files["csv"] = [{k: v for k, v in r.items() if k not in VARYING} for r in csv.DictReader(fh)]
    manifest = json.loads((out / "results_attempts_manifest.json").read_text())
    files["manifest"] = {k: manifest[k] for k in ("row_stats", "dataset_fingerprints", "status")}
    return files


def dataset_meta(fingerprint: str, fn: str = "fn_a", **over) -> dict:
    """A tiny binary dataset's metadata (L=4, two rows a split) for save_dataset."""
    base = dict(
        fingerprint=fingerprint,
        fn=fn,
        target=fn,
        kind="binary",
        length=4,
        train_size=2,
        val_size=2,
        test_size=2,
        train_effective=2,
        val_effective=2,
        test_effective=2,
        base_seed=42,
        derived_seed=1,
        generator_version=1,
        task_sha256="",
    )
    return {**base, **over}


# A dataset that leaks: 1001 is in train and test (same label), 1000 is in train and
# val with different labels (an input overlap that is no line overlap), 0010 repeats in
# test (a duplicate within a split).
LEAKY_ROWS = [
    ("train", 0, "1001", 1),
    ("train", 1, "1000", 0),
    ("val", 0, "0110", 1),
    ("val", 1, "1000", 1),
    ("test", 0, "1001", 1),
    ("test", 1, "0010", 0),
    ("test", 2, "0010", 0),
]
# Two examples a split, no input seen twice: a dataset that does not leak.
CLEAN_ROWS = [
    ("train", 0, "0001", 1),
    ("train", 1, "0000", 0),
    ("val", 0, "0111", 1),
    ("val", 1, "0011", 0),
    ("test", 0, "1000", 1),
    ("test", 1, "1100", 0),
]


def request(ds, *, seed=42, trial=1, attempt=1):
    """The ProposeRequest of an attempt on dataset ``ds``, as the runner makes it."""
    return ProposeRequest(
        prompt="not read by offline proposers",
        train=ds.splits["train"],
        kind=ds.point.task.kind,
        seed=seed,
        trial=trial,
        attempt=attempt,
        val=ds.splits["val"],
    )


def sandbox(code, kind, inputs):
    """The program's predictions, run as a model's program would be."""
    ev = evaluate(code, "f", kind, inputs, timeout=60)
    assert (ev.status, ev.n_errors) == ("ok", 0), ev.errors
    return ev.predictions


def assert_predicts_like(code, ds, predict):
    """The program predicts what ``predict`` does on every row of every split."""
    kind = ds.point.task.kind
    for split in SPLITS:
        inputs = [x for x, _ in ds.splits[split]]
        expected = [int(p) for p in predict(inputs)]
        assert sandbox(code, kind, inputs) == expected, split


def started_run(db, record: dict, grid: list[tuple[str, int, int]], num_trials: int) -> list[dict]:
    """A run recorded as `synth run` records it (``grid``: fn, length, dataset_id), then
    every trial started in order, as its runner starts each: the trials' rows."""
    store.create_run(db, record, [(*point, num_trials) for point in grid])
    keys = [
        {"fn": fn, "length": length, "trial": k, "dataset_id": d}
        for fn, length, d in grid
        for k in range(1, num_trials + 1)
    ]
    return [store.start_trial(db, record["run_id"], key) for key in keys]


def latex_rows(text: str) -> tuple[int, list[list[str]]]:
    """A booktabs tabular read by its structure: the number of columns it declares and
    each row's cells; fails on unbalanced braces or a missing rule."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "{}" and (i == 0 or text[i - 1] != "\\"):
            depth += 1 if ch == "{" else -1
            assert depth >= 0, f"a closing brace too many at {i}"
    assert depth == 0, "unbalanced braces"
    body = text[text.index("\\begin{tabular}") : text.index("\\end{tabular}")]
    spec = re.match(r"\\begin\{tabular\}\{([lrc]+)\}", body).group(1)
    lines = [line.strip() for line in body.splitlines()[1:]]
    assert [line for line in lines if line.endswith("rule")] == ["\\toprule", "\\midrule", "\\bottomrule"]
    rows = [re.split(r"(?<!\\)&", line.removesuffix("\\\\")) for line in lines if line.endswith("\\\\")]
    return len(spec), [[cell.strip() for cell in row] for row in rows]
