"""reports.frames: the main tables as pandas DataFrames (tests/report_fixtures.py), and
`import reports` without pandas."""

import subprocess
import sys

import pytest
import sqlite_utils

from reports import ReportError, frames

pd = pytest.importorskip("pandas", reason="reports.frames needs the analysis extra (pandas)")


def test_every_frame_holds_its_rows_with_task_names(report_db):
    got = frames(report_db)
    assert set(got) == {"runs", "trials", "attempts", "datasets"}
    assert all(isinstance(f, pd.DataFrame) for f in got.values())
    db = sqlite_utils.Database(report_db)
    counts = {"runs": "runs", "trials": "trials", "attempts": "attempts", "datasets": "datasets"}
    assert {name: len(f) for name, f in got.items()} == {n: db[t].count for n, t in counts.items()}
    names = dict(db.execute("select fn, target from datasets").fetchall())
    assert [names[fn] for fn in got["trials"]["fn"]] == list(got["trials"]["task"])
    assert {"task", "selected_code", "test_acc"} <= set(got["trials"].columns)
    assert {"task", "code", "val_acc", "selected"} <= set(got["attempts"].columns)
    assert {"task", "clean", "input_overlap"} <= set(got["datasets"].columns)
    assert got["runs"]["seed"].notna().all()


def test_frames_of_some_runs(report_db):
    got = frames(report_db, ["r2"])
    assert set(got["runs"]["run_id"]) == set(got["trials"]["run_id"]) == {"r2"}
    assert set(got["attempts"]["run_id"]) <= {"r2"}
    with pytest.raises(ReportError, match="no run 'nope' in the database"):
        frames(report_db, ["r2", "nope"])


def test_reports_work_without_pandas_and_frames_says_what_to_install(report_db):
    """With no pandas (None in sys.modules: importing it fails), `import reports` and the
    report work; only frames needs it, and says so in one line."""
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "import reports\n"
        "assert reports.analyse(sys.argv[1], ['r1'])['leaderboard']\n"
        "try:\n    reports.frames(sys.argv[1])\nexcept reports.ReportError as e:\n    print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(report_db)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "reports.frames needs pandas: pip install 'llm-pv[analysis]'\n"
