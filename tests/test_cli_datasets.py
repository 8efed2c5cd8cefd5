"""`synth tasks` and `synth datasets build|list|export` as a user runs them."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from synth.cli import cli
from synth.tasks import DEFAULT_GRID


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNTH_DB", raising=False)

    def invoke(*args):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


SMALL = ["--train-size", 10, "--val-size", 10, "--test-size", 20]


def test_tasks_lists_all_nineteen(run):
    out = run("tasks", "--json")
    rows = json.loads(out.output)
    assert [r["id"] for r in rows] == list(DEFAULT_GRID)
    by_id = {r["id"]: r for r in rows}
    assert by_id["fn_h"]["lengths"] == [100, 80, 60, 40, 20]
    assert by_id["fn_aa"]["lengths"] == [100, 50]
    assert by_id["fn_q"] == {
        "id": "fn_q",
        "target": "chess",
        "kind": "tabular",
        "lengths": [36],
        "fixed_length": True,
        "file": None,
    }
    text = run("tasks").output
    assert "graph_has_cycle" in text and "36 (fixed)" in text


@pytest.mark.slow
def test_build_list_export_published_layout(run, tmp_path):
    r = run("datasets", "build", "--functions", "fn_a", "fn_g", "--lengths", "20,25", *SMALL, "--db", "x.db")
    assert r.exit_code == 0, r.output
    assert "4 built, 0 already stored" in r.stderr
    again = run("datasets", "build", "--functions", "fn_a,fn_g", "--lengths", 20, 25, *SMALL, "--db", "x.db")
    assert "0 built, 4 already stored" in again.stderr
    listed = json.loads(run("datasets", "list", "--json", "--db", "x.db").output)
    assert {(d["fn"], d["length"]) for d in listed} == {
        ("fn_a", 20),
        ("fn_a", 25),
        ("fn_g", 20),
        ("fn_g", 25),
    }

    r = run(
        "datasets", "export", "--db", "x.db", "--dataset-dir", "out", "--functions", "fn_a", "--lengths", 20
    )
    assert r.exit_code == 0, r.output
    ds = next(d for d in listed if (d["fn"], d["length"]) == ("fn_a", 20))
    folder = tmp_path / "out" / "parity_all" / "L20" / f"seed{ds['derived_seed']}"
    assert r.stdout.strip() == str(folder.relative_to(tmp_path))
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "test.txt", "train.txt", "val.txt"]
    lines = (folder / "train.txt").read_text().splitlines()
    assert len(lines) == 10
    for line in lines:
        x, y = line.split(" -> ")
        assert len(x) == 20 and set(x) <= {"0", "1"} and int(y) == x.count("1") % 2
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["fn"] == "fn_a" and meta["target_name"] == "parity_all" and meta["length"] == 20
    assert meta["sizes"] == {
        "requested": {"train": 10, "val": 10, "test": 20},
        "effective": {"train": 10, "val": 10, "test": 20},
    }
    assert meta["fingerprint"] == ds["fingerprint"] and meta["derived_seed"] == ds["derived_seed"]
    assert meta["generator_version"] == ds["generator_version"]


def test_tabular_test_split_is_capped_with_a_warning(run, uci_dir):
    r = run("datasets", "build", "--functions", "fn_q", "--db", "t.db", "--uci-dir", uci_dir)
    assert r.exit_code == 0, r.output
    assert (
        "fn_q at L=36: the source lacks rows of one class; test split capped at 2854 of 10000" in r.stderr
    )  # chess: 1,527 nowin - 100
    (row,) = json.loads(run("datasets", "list", "--json", "--db", "t.db").output)
    assert (row["test_size"], row["test_effective"]) == (10000, 2854)
    strict = run(
        "datasets", "build", "--functions", "fn_q", "--db", "s.db", "--uci-dir", uci_dir, "--strict-sizes"
    )
    assert strict.exit_code == 2 and "fn_q at L=36" in strict.stderr


@pytest.mark.slow
def test_fingerprints_identical_across_processes_and_databases(tmp_path):
    def build(name):
        db = tmp_path / name
        args = [
            "datasets",
            "build",
            "--functions",
            "fn_c",
            "fn_h",
            "fn_i",
            "fn_aa",
            "--lengths",
            40,
            "--train-size",
            20,
            "--val-size",
            20,
            "--test-size",
            40,
            "--db",
            db,
        ]
        subprocess.run([sys.executable, "-m", "synth", *map(str, args)], check=True, capture_output=True)
        out = subprocess.run(
            [sys.executable, "-m", "synth", "datasets", "list", "--json", "--db", str(db)],
            check=True,
            capture_output=True,
            text=True,
        )
        return {(d["fn"], d["length"]): d["fingerprint"] for d in json.loads(out.stdout)}

    first = build("a.db")
    assert len(first) == 4
    assert first == build("b.db")


BAD = [
    (["--functions", "fn_zz"], "unknown task 'fn_zz'"),
    (["--functions", "fn_a", "--lengths", "0"], "fn_a at L=0: length must be a positive integer"),
    (["--functions", "fn_a", "--lengths", "-3"], "fn_a at L=-3: length must be a positive"),
    (["--functions", "fn_a", "--lengths", "ten"], "--lengths takes whole numbers"),
    (["--functions", "fn_h", "--lengths", "22"], "fn_h at L=22"),
    (["--functions", "fn_aa", "--lengths", "30"], "fn_aa at L=30"),
    (["--functions", "fn_a", "--lengths", "4"], "fn_a at L=4: needs 5100 distinct"),
    (["--functions", "fn_a", "--train-size", "99"], "--train-size must be a positive even number"),
    (["--functions", "fn_a", "--test-size", "0"], "--test-size must be a positive even number"),
    (["--functions", "fn_a", "--db", "no/such/dir/x.db"], "folder no/such/dir does not exist"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(run, tmp_path, args, message):
    r = run("datasets", "build", *args)
    assert r.exit_code == 2
    assert message in r.stderr
    assert "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir()), "nothing may be written"


def test_missing_uci_file_offline_is_refused(run, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_UCI_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("SYNTH_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    r = run("datasets", "build", "--functions", "fn_p", "--uci-dir", tmp_path / "empty")
    assert r.exit_code == 1 and "HTRU_2.csv" in r.stderr  # the network failed, not the input
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "synth.db").exists()


def test_not_a_database_is_refused(run, tmp_path):
    (tmp_path / "x.db").write_text("not sqlite")
    r = run("datasets", "build", "--functions", "fn_a", "--lengths", 20, "--db", "x.db")
    assert r.exit_code == 2 and "x.db is not a SQLite database" in r.stderr
    assert (tmp_path / "x.db").read_text() == "not sqlite"
