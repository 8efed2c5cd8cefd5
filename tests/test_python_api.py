"""The Python front door: `import synth` names the public API lazily, and the notebook
session of docs/python-api.md runs as written."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import synth

DOC = Path(__file__).parent.parent / "docs" / "python-api.md"


def test_the_front_door_names_the_api():
    assert synth.RunConfig.__module__ == "synth.config"
    assert synth.start_run.__module__ == synth.resume_run.__module__ == "synth.engine.entry"
    assert synth.build_grid.__module__ == "synth.datasets.build"
    assert issubclass(synth.RunFailed, synth.SynthError)
    assert set(synth.__all__) <= set(dir(synth))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        synth.nothing  # noqa: B018


def test_synth_help_imports_none_of_the_engine():
    """`synth --help` stays fast: the CLI module loads no engine, sandbox, SDK or store
    (sqlite-utils alone took 0.25 s, numpy with it)."""
    code = (
        "import sys, synth.cli; loaded = set(sys.modules); "
        "print([m for m in ('synth.engine.entry', 'synth.sandbox.evaluation', 'openai', "
        "'reports', 'tracker.db', 'sqlite_utils', 'numpy') if m in loaded])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_resolve_takes_given_then_environment_then_defaults():
    environ = {"SYNTH_CONCURRENCY": "7", "SYNTH_MODEL": "from-env", "SYNTH_TIMEOUT": ""}
    config = synth.RunConfig.resolve(environ, model="given", concurrency=None, num_trials=2)
    assert (config.model, config.concurrency, config.num_trials) == ("given", 7, 2)
    assert config.timeout == synth.RunConfig().timeout  # set to nothing: unset
    with pytest.raises(synth.SynthError, match="SYNTH_CONCURRENCY must be a whole number"):
        synth.RunConfig.resolve({"SYNTH_CONCURRENCY": "٣"})
    with pytest.raises(TypeError, match="no setting colour"):
        synth.RunConfig.resolve(colour="blue")


@pytest.mark.slow
def test_the_notebook_session_of_the_docs_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    # As a notebook runs code, with no script file: worker processes have none to import
    # again, so the page's code needs no `if __name__ == "__main__":` guard.
    notebook = "import sys; exec(compile(sys.stdin.read(), 'notebook', 'exec'))"
    done = subprocess.run(
        [sys.executable, "-c", notebook],
        input="\n".join(blocks),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "completed runs/notebook/results_attempts.csv"
    board = [line.split() for line in lines if line.startswith(("fn_a ", "fn_g "))]
    assert {(row[0], row[1]) for row in board} == {("fn_a", "20"), ("fn_g", "20")}
    assert all(0.0 <= float(row[3]) <= 1.0 for row in board)
    trials = [line for line in lines if line.startswith("{'fn'")]
    assert len(trials) == 4  # 2 tasks x 2 trials, from the trial_results view
    manifest = json.loads((tmp_path / "runs/notebook-again/results_attempts_manifest.json").read_text())
    assert manifest["run_id"] == "notebook"
