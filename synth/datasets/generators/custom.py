"""Data for a researcher's task (synth.custom_tasks) that gives only a label function:
uniform inputs of its kind, kept by label until both classes are full. Every label it
returns is checked (0 or 1, never an exception), and so is every input of a generator
a task gives itself, so that a wrong label function fails naming the input, not later
as a dataset that silently lies.

The uniform inputs of each kind, drawn from the seeded Generator in batches:

- binary: L bits, each 0 or 1 with probability 1/2;
- decimal: an L-digit number with a non-zero leading digit, uniform among them;
- graph: floor(L/6) edges ``uAAvBB`` with ids AA, BB uniform in 01..99, then the first
  L - 6*floor(L/6) characters of the padding edge ``u00v00`` (as fn_aa's inputs).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np

from synth.datasets.generators.base import Generator, bits_to_strings, random_bits
from synth.datasets.generators.graph import edge_strings
from synth.errors import InfeasibleError, SynthError, shortened

# Kinds a label function alone can serve (tabular tasks draw rows of their CSV).
KINDS = ("binary", "decimal", "graph")
# Uniform draws per example asked for before a class is called too rare: a class of
# under 1% of the inputs needs a generator of its own.
DRAWS_PER_EXAMPLE = 100
# Inputs at one length few enough to label them all, counting what each class can hold.
ENUMERATED = 2**16


class LabelError(SynthError):
    """A label function that raised, or returned something other than 0 or 1."""


def draw_binary(rng: np.random.Generator, k: int, L: int) -> list[str]:
    return bits_to_strings(random_bits(rng, k, L))


def draw_decimal(rng: np.random.Generator, k: int, L: int) -> list[str]:
    digits = rng.integers(0, 10, size=(k, L), dtype=np.uint8)
    digits[:, 0] = rng.integers(1, 10, size=k, dtype=np.uint8)
    return bits_to_strings(digits)  # digits 0-9 as characters, as bits are


def draw_graph(rng: np.random.Generator, k: int, L: int) -> list[str]:
    ids = rng.integers(1, 100, size=(k, L // 6, 2))
    return edge_strings(ids[:, :, 0], ids[:, :, 1], L)


DRAWS: dict[str, Callable[[np.random.Generator, int, int], list[str]]] = {
    "binary": draw_binary,
    "decimal": draw_decimal,
    "graph": draw_graph,
}


def length_rule(kind: str) -> Callable[[int], str | None]:
    """The lengths a kind's uniform inputs exist at: a graph needs one edge."""
    if kind == "graph":
        return lambda L: None if L >= 6 else f"a graph input needs L >= 6 (one edge), got L={L}"
    return lambda L: None


def _shown(value: object) -> str:
    """A value for a one-line message: its repr, cut in the middle when long."""
    return shortened(repr(value), 60)


def capacity(kind: str, label: Callable[[str], int]) -> Callable[[int], tuple[int | None, int | None]]:
    """(positives, negatives) among every input of the kind at a length, counted by
    labelling them all where there are at most ENUMERATED (binary up to L=16, decimal up
    to L=4); None above, and for graphs."""

    @functools.cache
    def counts(L: int) -> tuple[int | None, int | None]:
        if kind == "binary" and 2**L <= ENUMERATED:
            inputs = ("".join(bits) for bits in itertools.product("01", repeat=L))
        elif kind == "decimal" and 9 * 10 ** (L - 1) <= ENUMERATED:
            inputs = map(str, range(10 ** (L - 1), 10**L))
        else:
            return None, None
        labels = [label(x) for x in inputs]
        return sum(labels), len(labels) - sum(labels)

    return counts


def checked(task_id: str, label: Callable[[str], object]) -> Callable[[str], int]:
    """``label`` refusing, with the task and the input named, anything but 0 or 1."""

    def labelled(x: str) -> int:
        try:
            y = label(x)
        except Exception as e:
            raise LabelError(
                f"task {task_id}: its label function raised {type(e).__name__} ({shortened(str(e), 80)}) "
                f"for the input {_shown(x)}"
            ) from None
        if isinstance(y, bool | int | np.integer | np.bool_) and y in (0, 1):
            return int(y)
        raise LabelError(
            f"task {task_id}: its label function returned {_shown(y)}, not 0 or 1, for the input {_shown(x)}"
        )

    return labelled


def by_rejection(task_id: str, kind: str, label: Callable[[str], int]) -> Generator:
    """n distinct inputs of each class, drawn uniformly and kept by ``label``; failing
    with the class named when it is too rare to fill."""

    def generate(L: int, n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        classes: tuple[list[str], list[str]] = ([], [])  # negatives, positives
        seen: set[str] = set()
        budget, drawn = max(10_000, DRAWS_PER_EXAMPLE * 2 * n), 0
        while min(map(len, classes)) < n and drawn < budget:
            batch = DRAWS[kind](rng, max(64, 2 * n), L)
            drawn += len(batch)
            for x in batch:
                if x not in seen:
                    seen.add(x)
                    classes[label(x)].append(x)
        rare = next((c for c in (1, 0) if len(classes[c]) < n), None)
        if rare is not None:
            name = ("negative", "positive")[rare]
            raise InfeasibleError(
                f"task {task_id}: {name} inputs are too rare to draw {n} of them "
                f"({len(classes[rare])} among {drawn:,} uniform inputs); "
                "give the task a generator of its own"
            )
        return classes[1][:n], classes[0][:n]

    return generate


def verified(task_id: str, generate: Generator, label: Callable[[str], int]) -> Generator:
    """A task's own generator, its every input checked against its label function."""

    def generated(L: int, n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        pos, neg = generate(L, n, rng)
        for cls, xs in ((1, pos), (0, neg)):
            if len(xs) != n:
                raise InfeasibleError(
                    f"task {task_id}: its generator gave {len(xs)} inputs of class {cls}, not {n}"
                )
            wrong = next((x for x in xs if not isinstance(x, str) or label(x) != cls), None)
            if wrong is not None:
                raise LabelError(
                    f"task {task_id}: its generator gave {_shown(wrong)} as a {('negative', 'positive')[cls]}, "
                    "but its label function says otherwise"
                )
        return list(pos), list(neg)

    return generated
