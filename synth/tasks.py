"""The task registry: every published hidden function by id, in the published order."""

from __future__ import annotations

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


def get_task(fn: str) -> Task:
    try:
        return TASKS[fn]
    except KeyError:
        raise SynthError(f"unknown task {fn!r} (known: {', '.join(DEFAULT_GRID)})") from None
