"""LLM-PV: propose-and-verify program learning experiments, recorded in SQLite.

The Python API (docs/python-api.md): ``synth.RunConfig``, ``synth.start_run``,
``synth.resume_run``, ``synth.export_run``, ``synth.verify_runs``, ``synth.build_grid``,
``synth.evaluate``, ``synth.merge_databases``, ``synth.SynthError``... and, for a tasks file of one's own
(docs/custom-tasks.md), ``synth.task`` and ``synth.tabular_task``. Each is imported when
first used, so that ``synth --help`` loads none of the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    "RunConfig": "synth.config",
    "RunResult": "synth.engine.entry",
    "start_run": "synth.engine.entry",
    "resume_run": "synth.engine.entry",
    "export_run": "synth.engine.entry",
    "build_grid": "synth.datasets.build",
    "export_datasets": "synth.datasets.build",
    "plan_grid": "synth.datasets.grid",
    "Sizes": "synth.datasets.grid",
    "TASKS": "synth.tasks",
    "get_task": "synth.tasks",
    "task": "synth.custom_tasks",
    "tabular_task": "synth.custom_tasks",
    "load_tasks_files": "synth.custom_tasks",
    "verify_runs": "synth.verification.verify",
    "evaluate": "synth.sandbox.evaluation",
    "Evaluation": "synth.sandbox.evaluation",
    "SynthError": "synth.errors",
    "RunFailed": "synth.errors",
    "RunInterrupted": "synth.errors",
    "load_study": "synth.study.spec",
    "run_study": "synth.study.run",
    "resume_study": "synth.study.run",
    "merge_databases": "tracker.merge",
}
__all__ = sorted(_API)

if TYPE_CHECKING:  # what editors and type checkers see (`as`: re-exported)
    from synth.config import RunConfig as RunConfig
    from synth.custom_tasks import load_tasks_files as load_tasks_files
    from synth.custom_tasks import tabular_task as tabular_task
    from synth.custom_tasks import task as task
    from synth.datasets.build import build_grid as build_grid
    from synth.datasets.build import export_datasets as export_datasets
    from synth.datasets.grid import Sizes as Sizes
    from synth.datasets.grid import plan_grid as plan_grid
    from synth.engine.entry import RunResult as RunResult
    from synth.engine.entry import export_run as export_run
    from synth.engine.entry import resume_run as resume_run
    from synth.engine.entry import start_run as start_run
    from synth.errors import RunFailed as RunFailed
    from synth.errors import RunInterrupted as RunInterrupted
    from synth.errors import SynthError as SynthError
    from synth.sandbox.evaluation import Evaluation as Evaluation
    from synth.sandbox.evaluation import evaluate as evaluate
    from synth.study.run import resume_study as resume_study
    from synth.study.run import run_study as run_study
    from synth.study.spec import load_study as load_study
    from synth.tasks import TASKS as TASKS
    from synth.tasks import get_task as get_task
    from synth.verification.verify import verify_runs as verify_runs
    from tracker.merge import merge_databases as merge_databases


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'synth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
