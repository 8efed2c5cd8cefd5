"""The shape every task shares, and the sampling helpers generators have in common.

A generator draws ``n`` positive and ``n`` negative inputs for one length from an
explicitly seeded ``numpy.random.Generator``; it never touches global RNG state, so
the same seed gives the same inputs on every machine and Python version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from synth.errors import InfeasibleError

if TYPE_CHECKING:
    from synth.datasets.uci import Table

KINDS = ("binary", "decimal", "graph", "tabular")
DEFAULT_LENGTHS = (100, 50, 30, 25, 20)

# Rejection loops give up after this many rounds: a generator that cannot fill its
# classes must fail loudly, never hang (the published graph generator hung at L=30).
MAX_ROUNDS = 2000

Generator = Callable[[int, int, np.random.Generator], tuple[list[str], list[str]]]


@dataclass(frozen=True)
class Origin:
    """Where a researcher's task was declared (synth.custom_tasks): its tasks file, by
    path and exact text, and the SHA-256 of what defines the task, which keys its
    datasets: the file's text, or for a tabular task its CSV's content and label rule."""

    path: str
    text: str
    key: str
    csv: str | None = None
    csv_sha256: str | None = None


@dataclass(frozen=True)
class Task:
    """One hidden function: how to label an input and how to draw balanced data."""

    id: str
    target: str
    kind: str
    default_lengths: tuple[int, ...]
    # generate(L, n, rng) -> (n positives, n negatives); None for tabular tasks, which
    # sample rows of their source table instead (synth.datasets.generators.tabular.draw).
    generate: Generator | None
    # label(x) -> 0/1 for the input string; None for tabular tasks, whose labels come
    # from the source rows.
    label: Callable[[str], int] | None
    # Bump when a generator's output changes on purpose: it is part of the dataset key.
    version: int = 1
    # Returns why a length cannot be served (naming the rule), or None when it can.
    length_rule: Callable[[int], str | None] = field(default=lambda L: None)
    # Most distinct (positive, negative) inputs that exist at a length; None = more
    # than any split we would ask for.
    capacity: Callable[[int], tuple[int | None, int | None]] = field(default=lambda L: (None, None))
    # Whether inputs must be distinct at a length (some published generators allow
    # duplicates, which the leakage-free splitter then keeps within one split).
    unique: Callable[[int], bool] = field(default=lambda L: True)
    # Tabular tasks: the fixed number of features (their only length) and the name of
    # the source table (a key of synth.datasets.uci.SOURCES).
    fixed_length: int | None = None
    source: str | None = None
    # Tabular tasks: table(uci_dir) -> the parsed source table their rows are drawn from.
    table: Callable[[Path | None], Table] | None = None
    # A researcher's task: where it was declared; None for the built-in tasks.
    origin: Origin | None = None
    # labels(xs) -> 0/1 array for many equal-length inputs at once (verify labels a
    # million); None: label() one input at a time.
    labels: Callable[[list[str]], np.ndarray] | None = None
    # Rules defined per length (fn_b, fn_e, fn_f): the columns whose parity is the label
    # at length L. `synth verify` keeps the training length's columns on longer inputs
    # (the "extended" reading); None: the rule reads the same thing at every length.
    reads: Callable[[int], slice | list[int]] | None = None

    def label_all(self, xs: list[str]) -> np.ndarray:
        """0/1 labels of equal-length inputs, in one batch where the task has one."""
        if self.labels is not None:
            return np.asarray(self.labels(xs), dtype=np.uint8)
        return np.fromiter(map(self.label, xs), dtype=np.uint8, count=len(xs))

    @property
    def lengths(self) -> tuple[int, ...]:
        return (self.fixed_length,) if self.fixed_length else self.default_lengths


def bits_to_strings(bits: np.ndarray) -> list[str]:
    """Rows of a 0/1 uint8 matrix as '0'/'1' strings, without a Python loop per bit."""
    count, width = bits.shape
    if count == 0:
        return []
    # One line per row, decoded once and split in C: a million rows in ~0.1 s.
    chars = np.empty((count, width + 1), dtype=np.uint8)
    chars[:, :width] = bits
    chars[:, :width] += ord("0")
    chars[:, width] = ord("\n")
    return chars.tobytes().decode("ascii").split("\n")[:-1]


def random_bits(rng: np.random.Generator, count: int, length: int) -> np.ndarray:
    """A (count, length) uint8 matrix of uniform random bits."""
    return rng.integers(0, 2, size=(count, length), dtype=np.uint8)


def fill_by_label(
    rng: np.random.Generator,
    n: int,
    draw: Callable[[np.random.Generator, int], list[str]],
    label: Callable[[list[str]], np.ndarray],
    *,
    unique: bool = True,
    what: str = "inputs",
) -> tuple[list[str], list[str]]:
    """Draw batches with ``draw(rng, k)``, keep each input by ``label`` until both
    classes hold ``n``; with ``unique`` an input is kept only once (first come).

    ``label`` labels a whole batch at once (vectorised), returning 0/1 per input.
    """
    pos: list[str] = []
    neg: list[str] = []
    seen: set[str] = set()
    batch = max(64, 2 * n)
    for _ in range(MAX_ROUNDS):
        if len(pos) >= n and len(neg) >= n:
            return pos[:n], neg[:n]
        xs = draw(rng, batch)
        ys = label(xs)
        for x, y in zip(xs, ys):
            if unique:
                if x in seen:
                    continue
                seen.add(x)
            (pos if y else neg).append(x)
    raise InfeasibleError(
        f"could not draw {n} positive and {n} negative {what} "
        f"(got {len(pos)} and {len(neg)} after {MAX_ROUNDS} rounds)"
    )
