"""Tasks of one's own (--tasks-file, docs/custom-tasks.md): declared in a temporary
Python file and a CSV, run end to end by the offline formula proposer, recorded with
the run, resumed from the record; every bad input refused in one line, before anything
is written."""

import asyncio
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
from helpers import CLEAN_ROWS, dataset_meta, grid, one_line_error, run_cli

from synth.custom_tasks import load_tasks_files
from synth.datasets.generators import custom
from synth.errors import SynthError
from tracker.browse import make_datasette
from tracker.datasets import find_dataset, save_dataset
from tracker.db import open_db
from tracker.migrations import migrations

FIRST_EQUALS_LAST = """\
import synth

@synth.task(kind="binary", lengths=(20, 50, 100))
def first_equals_last(x: str) -> int:
    return int(x[0] == x[-1])
"""
TABULAR = 'import synth\n\nsynth.tabular_task("toy", csv="toy.csv", label="Outcome", positive="1")\n'


def toy_csv(rows: int = 200, classes=(0, 1)) -> str:
    """A small table: a number, a count and a colour; Outcome is 1 when the number is above 5."""
    rng = random.Random(1)
    lines = ["a,b,color,Outcome"]
    for _ in range(rows):
        a = rng.random() * 10
        outcome = int(a > 5) if len(classes) == 2 else classes[0]
        lines.append(f"{a:.3f},{rng.randint(0, 5)},{rng.choice(['red', 'green'])},{outcome}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def files(workdir):
    (workdir / "tasks.py").write_text(FIRST_EQUALS_LAST + "\n" + TABULAR)
    (workdir / "toy.csv").write_text(toy_csv())
    return workdir


def small(*functions, lengths=(20,)):
    return [*grid(*functions, lengths=lengths, attempts=2), "--provider", "formula", "--time-budget", "0.5"]


@pytest.mark.slow
def test_a_binary_and_a_tabular_task_run_end_to_end_and_are_recorded(files):
    result = run_cli("run", "--tasks-file", "tasks.py", *small("first_equals_last", "toy"), "--run-id", "r1")
    assert result.exit_code == 0, result.output
    db = sqlite_utils.Database(files / "synth.db")
    trials = {r["fn"]: r for r in db["trials"].rows}
    assert trials["first_equals_last"]["val_acc"] == 1.0 and trials["first_equals_last"]["test_acc"] == 1.0
    assert trials["toy"]["status"] == "done"
    recorded = {r["fn"]: r for r in db.query("select * from run_task_definitions where run_id = 'r1'")}
    assert recorded["first_equals_last"]["file_text"] == (files / "tasks.py").read_text()
    assert recorded["first_equals_last"]["file"] == str(files / "tasks.py")
    assert recorded["toy"]["csv_sha256"] == hashlib.sha256((files / "toy.csv").read_bytes()).hexdigest()
    assert recorded["toy"]["kind"] == "tabular" and recorded["toy"]["csv"] == str(files / "toy.csv")
    keys = {r["fn"]: r["task_sha256"] for r in db["datasets"].rows}
    assert keys == {fn: recorded[fn]["task_sha256"] for fn in ("first_equals_last", "toy")}
    ds = make_datasette(files / "synth.db")
    response = asyncio.run(ds.client.get("/synth/own_tasks.json?_shape=array&run_id=r1"))
    ds.executor.shutdown()
    shown = {r["fn"]: (r["kind"], r["trials"], r["solved"]) for r in response.json()}
    assert shown == {"first_equals_last": ("binary", 1, 1), "toy": ("tabular", 1, shown["toy"][2])}
    report = run_cli("report", "-o", "report.html")
    assert report.exit_code == 0 and "first_equals_last" in (files / "report.html").read_text()
    # The recorded definition is enough to resume: the file and its CSV may be gone.
    (files / "tasks.py").unlink()
    (files / "toy.csv").unlink()
    assert run_cli("resume", "r1").exit_code == 0


def examples(db, fn):
    rows = db.query(
        "select e.split, e.input, e.label from examples e join datasets d on d.id = e.dataset_id where d.fn = ?",
        [fn],
    )
    return [(r["split"], r["input"], r["label"]) for r in rows]


@pytest.mark.slow
def test_datasets_are_labelled_balanced_leakage_free_and_deterministic(files):
    for db in ("a.db", "b.db"):
        args = grid("first_equals_last", "toy", train=20, val=20, test=40)
        sizes = [a for a in args if a not in ("--num-trials", "1")]
        assert run_cli("datasets", "build", "--tasks-file", "tasks.py", *sizes, "--db", db).exit_code == 0
    a, b = sqlite_utils.Database(files / "a.db"), sqlite_utils.Database(files / "b.db")
    assert [r["fingerprint"] for r in a["datasets"].rows] == [r["fingerprint"] for r in b["datasets"].rows]
    rows = examples(a, "first_equals_last")
    assert all(y == int(x[0] == x[-1]) and len(x) == 20 for _, x, y in rows)
    for split, size in (("train", 20), ("val", 20), ("test", 40)):
        labels = [y for s, _, y in rows if s == split]
        assert len(labels) == size and sum(labels) == size // 2
    splits_of = {}
    for s, x, _ in examples(a, "toy"):
        splits_of.setdefault(x, set()).add(s)
    assert all(len(s) == 1 for s in splits_of.values())


def test_a_changed_label_function_never_reuses_the_old_datasets(files):
    build = [
        "datasets",
        "build",
        "--tasks-file",
        "tasks.py",
        "--functions",
        "first_equals_last",
        "--lengths",
        "20",
    ]
    build += ["--test-size", "20"]
    assert run_cli(*build).exit_code == 0
    (files / "tasks.py").write_text(FIRST_EQUALS_LAST.replace("x[-1]", "x[1]"))
    assert run_cli(*build).exit_code == 0
    db = sqlite_utils.Database(files / "synth.db")
    assert len({r["task_sha256"] for r in db["datasets"].rows}) == db["datasets"].count == 2
    exported = run_cli("datasets", "export", "--functions", "first_equals_last", "--dataset-dir", "out")
    assert exported.exit_code == 0 and (files / "out" / "first_equals_last" / "L20").is_dir()


def test_a_resume_refuses_a_changed_file_naming_the_line(files):
    args = ["run", "--tasks-file", "tasks.py", *grid("first_equals_last", lengths=(20,), attempts=1)]
    assert run_cli(*args, "--dry-run", "--run-id", "r2").exit_code == 0
    (files / "tasks.py").write_text(FIRST_EQUALS_LAST.replace("x[-1]", "x[1]"))
    line = one_line_error(run_cli("resume", "r2", "--tasks-file", "tasks.py"), "tasks.py differs", "line 5")
    assert "x[-1]" in line and "x[1]" in line
    one_line_error(run_cli("run", "--resume", "r2", "--tasks-file", "tasks.py"), "line 5")


def test_a_resume_refuses_a_changed_csv(files):
    args = ["run", "--tasks-file", "tasks.py", *grid("toy", attempts=1, train=10, val=10, test=20)]
    assert run_cli(*args, "--dry-run", "--run-id", "r3").exit_code == 0
    (files / "toy.csv").write_text(toy_csv(rows=300))
    one_line_error(run_cli("resume", "r3", "--tasks-file", "tasks.py"), "task toy: its CSV", "differs")


def test_tasks_lists_them_from_the_flag_or_the_variable(files, monkeypatch):
    rows = json.loads(run_cli("tasks", "--json", "--tasks-file", "tasks.py").output)
    mine = {r["id"]: r for r in rows if r["file"]}
    assert (
        mine["first_equals_last"]["lengths"] == [20, 50, 100]
        and mine["first_equals_last"]["kind"] == "binary"
    )
    assert mine["toy"]["lengths"] == [3] and mine["toy"]["fixed_length"]
    monkeypatch.setenv("SYNTH_TASKS_FILE", "tasks.py")
    assert "first_equals_last" in run_cli("tasks").output


LABEL_RAISES = (
    'import synth\n\n@synth.task(kind="binary", lengths=(4,))\ndef bad(x):\n    return 1 // int(x[0])\n'
)

# (tasks file text, a CSV's text or None, the fragments its one line names)
BAD = [
    (None, None, ["tasks file missing.py does not exist"]),
    ("import synth\n\ndef f(x)\n", None, ["syntax error at line 3"]),
    (FIRST_EQUALS_LAST.replace("first_equals_last", "fn_a"), None, ["'fn_a'", "built-in task fn_a"]),
    (FIRST_EQUALS_LAST + FIRST_EQUALS_LAST[14:], None, ["'first_equals_last' is declared twice"]),
    (FIRST_EQUALS_LAST.replace('"binary"', '"ternary"'), None, ["unknown kind 'ternary'"]),
    (LABEL_RAISES, None, ["task bad", "raised ZeroDivisionError", "for the input '0"]),
    (FIRST_EQUALS_LAST.replace("int(x[0] == x[-1])", "2"), None, ["returned 2, not 0 or 1", "input '"]),
    (TABULAR.replace('"Outcome"', '"Class"'), toy_csv(), ["task 'toy'", "has no column 'Class'"]),
    (TABULAR, toy_csv(classes=(1,)), ["label column 'Outcome' holds only '1'", "both classes"]),
]


@pytest.mark.parametrize(
    "text, csv, fragments", BAD, ids=lambda v: str(v)[:30] if isinstance(v, list) else None
)
def test_bad_input_is_one_line_before_anything_is_written(workdir, text, csv, fragments):
    name = "missing.py" if text is None else "tasks.py"
    if text is not None:
        (workdir / name).write_text(text)
    if csv is not None:
        (workdir / "toy.csv").write_text(csv)
    one_line_error(run_cli("run", "--tasks-file", name, "--provider", "formula"), *fragments)
    assert not (workdir / "synth.db").exists() and not (workdir / "runs").exists()


def test_an_id_declared_in_two_files_names_both(workdir):
    for name in ("one.py", "two.py"):
        (workdir / name).write_text(FIRST_EQUALS_LAST)
    one_line_error(
        run_cli("tasks", "--tasks-file", "one.py", "--tasks-file", "two.py"),
        "'first_equals_last' is declared in both",
        "one.py",
        "two.py",
    )


def test_a_class_too_rare_to_draw_is_named(workdir):
    rare = FIRST_EQUALS_LAST.replace("int(x[0] == x[-1])", 'int(x == "1" * len(x))')
    (workdir / "tasks.py").write_text(rare)
    result = run_cli("run", "--tasks-file", "tasks.py", *grid("first_equals_last"), "--provider", "formula")
    one_line_error(result, "task first_equals_last", "positive inputs are too rare")
    assert not (workdir / "synth.db").exists()


GENERATED = """\
import synth

def halves(L, n, rng):
    ones = ["1" * (L // 2) + "".join(rng.choice(list("01"), L - L // 2)) for _ in range(n)]
    zeros = ["0" + "".join(rng.choice(list("01"), L - 1)) for _ in range(n)]
    return ones, zeros

@synth.task(kind="binary", lengths=(8,), generator=halves, id="starts_with_one",
            length_rule=lambda L: None if L >= 2 else "needs L >= 2")
def label(x):
    return int(x[0] == "1")
"""


def test_a_task_may_bring_its_own_generator_and_length_rule(tmp_path):
    (tmp_path / "gen.py").write_text(GENERATED)
    (t,) = load_tasks_files([tmp_path / "gen.py"])
    assert t.id == "starts_with_one" and t.length_rule(1) == "needs L >= 2"
    pos, neg = t.generate(8, 5, np.random.default_rng(0))
    assert all(x.startswith("1111") for x in pos) and all(x[0] == "0" for x in neg)
    (tmp_path / "gen.py").write_text(GENERATED.replace('"0" + "".join', '"1" + "".join'))
    (t,) = load_tasks_files([tmp_path / "gen.py"])
    with pytest.raises(SynthError, match="its generator gave '1.*' as a negative"):
        t.generate(8, 5, np.random.default_rng(0))


@pytest.mark.parametrize("kind, L", [("binary", 7), ("decimal", 5), ("graph", 20)])
def test_uniform_inputs_of_each_kind(kind, L):
    xs = custom.DRAWS[kind](np.random.default_rng(3), 200, L)
    assert len(xs) == 200 and all(len(x) == L for x in xs)
    if kind == "decimal":
        assert all(x.isdigit() and x[0] != "0" for x in xs)
    if kind == "graph":
        assert all(x[:1] == "u" and x[3] == "v" and x[18:] == "u0" for x in xs)
    balanced = custom.by_rejection("t", kind, custom.checked("t", lambda x: np.bool_(x[2] in "13579")))
    pos, neg = balanced(L, 30, np.random.default_rng(4))
    assert len(set(pos)) == len(set(neg)) == 30 and all(x[2] in "13579" for x in pos)


def test_the_walk_through_file_loads_as_written(tmp_path):
    page = (Path(__file__).parents[1] / "docs" / "custom-tasks.md").read_text()
    (tmp_path / "tasks.py").write_text(page.split("```python\n")[1].split("```")[0])
    header = "Pregnancies,Glucose,BloodPressure,SkinThickness,Insulin,BMI,Pedigree,Age,Outcome"
    rows = [
        ",".join([str(i % 7), str(90 + i), "70", "20", "0", "30.5", "0.4", str(20 + i), str(i % 2)])
        for i in range(50)
    ]
    (tmp_path / "pima.csv").write_text("\n".join([header, *rows]) + "\n")
    tasks = {t.id: t for t in load_tasks_files([tmp_path / "tasks.py"])}
    assert tasks["first_equals_last"].default_lengths == (20, 50, 100)
    assert tasks["pima"].fixed_length == 8 and tasks["pima"].kind == "tabular"


def test_a_database_from_before_custom_tasks_keeps_its_datasets_found(tmp_path):
    old = sqlite_utils.Database(tmp_path / "old.db")
    migrations.apply(old, stop_before="m007_custom_tasks")
    meta = {k: v for k, v in dataset_meta("f" * 64).items() if k != "task_sha256"}
    old["datasets"].insert(meta)
    old.close()
    db = open_db(tmp_path / "old.db")
    assert find_dataset(db, dataset_meta("f" * 64))["fingerprint"] == "f" * 64
    assert find_dataset(db, dataset_meta("f" * 64, task_sha256="a" * 64)) is None
    assert save_dataset(db, dataset_meta("e" * 64, task_sha256="a" * 64), CLEAN_ROWS) != 1


def test_a_length_too_short_for_the_classes_is_refused_up_front(files):
    result = run_cli(
        "run", "--tasks-file", "tasks.py", *grid("first_equals_last", lengths=(3,)), "--provider", "formula"
    )
    one_line_error(result, "first_equals_last at L=3: needs 20 distinct positive inputs but only 4 exist")
    assert not (files / "synth.db").exists()


def test_a_csv_too_small_for_the_test_split_is_capped_or_refused_with_strict_sizes(files):
    build = ["datasets", "build", "--tasks-file", "tasks.py", "--functions", "toy"]
    build += ["--train-size", "20", "--val-size", "20", "--test-size", "400"]
    one_line_error(
        run_cli(*build, "--strict-sizes"), "toy at L=3: needs 220 rows of each class", "--strict-sizes"
    )
    assert not (files / "synth.db").exists()
    capped = run_cli(*build)
    assert capped.exit_code == 0 and "toy at L=3: the source lacks rows of one class" in capped.stderr
    (row,) = sqlite_utils.Database(files / "synth.db")["datasets"].rows
    outcomes = [line.rsplit(",", 1)[1] for line in toy_csv().splitlines()[1:]]
    smaller = min(outcomes.count("0"), outcomes.count("1"))
    assert row["test_size"] == 400 and row["test_effective"] == 2 * (smaller - 20)


def verify_json(*args):
    result = run_cli("verify", *args, "--json")
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout)


@pytest.mark.slow
def test_verify_checks_own_tasks_from_the_record_and_says_what_a_table_task_cannot_give(files):
    run = run_cli("run", "--tasks-file", "tasks.py", *small("first_equals_last", "toy"), "--run-id", "r1")
    assert run.exit_code == 0, run.output
    assert run_cli("run", "--tasks-file", "tasks.py", *small("toy"), "--run-id", "r2").exit_code == 0
    (files / "tasks.py").unlink()  # what the run recorded is enough
    result, rows = verify_json("r1", "--lengths", "20", "60", "--samples", "2000")
    by = {(r["fn"], r["set"], r["eval_length"]): r for r in rows}
    assert set(by) == {
        ("first_equals_last", "balanced", 20),
        ("first_equals_last", "exhaustive", 20),
        ("first_equals_last", "balanced", 60),
        ("first_equals_last", "sample", 60),
        ("toy", "population", 3),
    }
    # formula finds x[0] == x[19]: the rule on every input at 20, chance at 60.
    assert by["first_equals_last", "exhaustive", 20]["n"] == 2**20
    assert by["first_equals_last", "exhaustive", 20]["exact"] is True
    assert 0.4 < by["first_equals_last", "sample", 60]["accuracy"] < 0.6
    assert by["first_equals_last", "sample", 60]["exact"] is False
    assert by["toy", "population", 3]["n"] == 200
    assert "toy is a table task of one length (3 features): --lengths does not apply" in result.stderr
    # Its CSV gone, a table task cannot be checked: said, not failed; the rest stands.
    (files / "toy.csv").unlink()
    result, rows = verify_json("r1", "--lengths", "20", "60", "--samples", "2000")
    assert {r["fn"] for r in rows} == {"first_equals_last"}
    assert "Warning: skipped task toy: a table task has no other lengths" in result.stderr
    assert "cannot read the CSV" in result.stderr
    one_line_error(run_cli("verify", "r2"), "nothing of run r2 can be verified", "toy.csv")
