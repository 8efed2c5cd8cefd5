"""The task registry: every published hidden function by id, in the published order,
and the researcher's own tasks a command loaded (synth.custom_tasks)."""

from __future__ import annotations

from collections.abc import Iterable

from synth.datasets.generators import binary, graph, primes, tabular
from synth.datasets.generators.base import Task
from synth.errors import SynthError

# The published default grid, in its order.
DEFAULT_GRID = (
    "fn_a",
    "fn_b",
    "fn_c",
    "fn_d",
    "fn_e",
    "fn_f",
    "fn_g",
    "fn_h",
    "fn_i",
    "fn_j",
    "fn_k",
    "fn_l",
    "fn_v",
    "fn_m",
    "fn_n",
    "fn_o",
    "fn_p",
    "fn_q",
    "fn_aa",
)

_ALL = {t.id: t for t in (*binary.TASKS, *primes.TASKS, *graph.TASKS, *tabular.TASKS)}
TASKS: dict[str, Task] = {fn: _ALL[fn] for fn in DEFAULT_GRID}


# The researcher's tasks in use: those of the tasks files of the command running.
_CUSTOM: dict[str, Task] = {}


def use_custom_tasks(tasks: Iterable[Task]) -> None:
    """Make ``tasks`` (and no others) the custom tasks get_task knows."""
    _CUSTOM.clear()
    _CUSTOM.update((t.id, t) for t in tasks)


def custom_tasks() -> list[Task]:
    return list(_CUSTOM.values())


def default_functions() -> tuple[str, ...]:
    """The grid when none is named: the custom tasks when there are some (a tasks file
    is given to run its tasks), else the published grid."""
    return tuple(_CUSTOM) or DEFAULT_GRID


def get_task(fn: str) -> Task:
    try:
        return TASKS[fn] if fn in TASKS else _CUSTOM[fn]
    except KeyError:
        known = ", ".join((*DEFAULT_GRID, *_CUSTOM))
        hint = "" if _CUSTOM else "; a task of your own needs --tasks-file"
        raise SynthError(f"unknown task {fn!r} (known: {known}){hint}") from None
