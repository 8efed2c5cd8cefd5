"""What a task's rule is at another length: the readings a program is scored against.

Most rules read the same thing at every length ("task" is the only reading). Rules
defined per length (fn_b: the first half; fn_e, fn_f: positions drawn for each length)
have a second reading on inputs longer than the training length: "extended", the
training length's rule kept (the same first floor(T/2) bits, the same positions).
At the training length both readings are the same rule, so only "task" is recorded;
on shorter inputs the training rule reads columns that do not exist, so neither is
"extended" there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from synth.datasets.generators.base import Task
from synth.datasets.generators.binary import to_bits

Labeller = Callable[[list[str]], np.ndarray]


def readings(task: Task, train_length: int, eval_length: int) -> dict[str, Labeller]:
    """{"task": labels} and, where the rule is defined per length and the inputs are
    longer than the training ones, "extended": the training rule's labels."""
    out: dict[str, Labeller] = {"task": task.label_all}
    if task.reads is not None and eval_length > train_length:
        columns = task.reads(train_length)
        out["extended"] = lambda xs: np.bitwise_xor.reduce(to_bits(xs)[:, columns], axis=1)
    return out
