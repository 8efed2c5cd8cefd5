"""The grid a user asks for, checked whole before anything is written or spent:
``plan_grid`` refuses impossible requests with one message naming the grid point and
the rule, and returns each point with the sizes its data allows."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from synth.datasets.generators import tabular
from synth.datasets.generators.base import Task
from synth.errors import InfeasibleError, SynthError
from synth.tasks import default_functions, get_task

SPLITS = ("train", "val", "test")
# Examples x length a grid point may hold: ~200 times the largest of the published grid
# (10,200 x 100), and still within memory; far larger requests are refused, not tried.
MAX_SYMBOLS = 200_000_000


@dataclass(frozen=True)
class Sizes:
    train: int
    val: int
    test: int

    def __post_init__(self):
        for name in SPLITS:
            value = getattr(self, name)
            if value <= 0 or value % 2:
                raise SynthError(
                    f"--{name}-size must be a positive even number (got {value}): "
                    "every split is exactly half positives, half negatives"
                )

    @property
    def total(self) -> int:
        return self.train + self.val + self.test

    def as_dict(self) -> dict[str, int]:
        return {"train": self.train, "val": self.val, "test": self.test}


def derived_seed(fn: str, length: int, sizes: Sizes, seed: int) -> int:
    """The published per-dataset seed: SHA-256 of the request, first 8 bytes, 31 bits."""
    key = f"{fn}|L={length}|train={sizes.train + sizes.val}|test={sizes.test}|base_seed={seed}"
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class GridPoint:
    """One (task, length) of a grid with the sizes it asks for and the sizes it gets."""

    task: Task
    length: int
    sizes: Sizes  # requested
    effective: Sizes  # what the data allows (smaller only for capped tabular tests)
    seed: int

    @property
    def derived_seed(self) -> int:
        return derived_seed(self.task.id, self.length, self.sizes, self.seed)

    @property
    def label(self) -> str:
        return f"{self.task.id} at L={self.length}"

    @property
    def cap_warning(self) -> str | None:
        """What the user must be told when the data could not fill the requested test split."""
        if self.effective == self.sizes:
            return None
        e = self.effective
        return (
            f"{self.label}: the source lacks rows of one class; test split capped at {e.test} "
            f"of {self.sizes.test} requested (effective sizes {e.train}/{e.val}/{e.test})"
        )


def resolve_grid(functions: Sequence[str] | None, lengths: Sequence[int] | None) -> list[tuple[Task, int]]:
    """(task, length) pairs in request order; every refused length named in one message.

    Explicit lengths apply to every task but the tabular ones, whose length is fixed by
    their data; without lengths each task uses its own defaults.
    """
    tasks = [get_task(fn) for fn in dict.fromkeys(functions or default_functions())]
    pairs, refused = [], []
    for task in tasks:
        wanted = task.lengths if (lengths is None or task.fixed_length) else lengths
        for length in dict.fromkeys(wanted):
            reason = "length must be a positive integer" if length < 1 else task.length_rule(length)
            if reason:
                refused.append(f"{task.id} at L={length}: {reason}")
            else:
                pairs.append((task, length))
    if refused:
        raise InfeasibleError("; ".join(refused))
    return pairs


def plan_grid(
    functions: Sequence[str] | None,
    lengths: Sequence[int] | None,
    sizes: Sizes,
    seed: int,
    *,
    strict_sizes: bool = False,
    uci_dir: Path | None = None,
    notify=lambda message: None,
) -> list[GridPoint]:
    """Check the whole grid before anything is spent; return its points with effective
    sizes. ``notify`` is told of every test split capped to what the data allows.

    Tabular points are checked last: their check reads the source (downloading it when
    it is not cached), which a refusal elsewhere in the grid would make needless."""
    if not 0 <= seed < 2**63:  # stored as SQLite's 64-bit integer
        raise SynthError(f"--seed must be a whole number from 0 to 2^63 - 1 (got {seed})")
    pairs = resolve_grid(functions, lengths)
    if lengths is not None and all(task.fixed_length for task, _ in pairs):
        notify(
            f"Warning: --lengths is unused: {', '.join(dict.fromkeys(t.id for t, _ in pairs))} "
            "take their length from their data"
        )
    effective, refused = {}, []
    for task, length in sorted(pairs, key=lambda pair: pair[0].table is not None):
        if task.table and refused:
            break
        try:
            if sizes.total * length > MAX_SYMBOLS:
                raise InfeasibleError(
                    f"{sizes.total:,} examples of {length:,} symbols are more than a grid "
                    f"point may hold ({MAX_SYMBOLS:,} symbols)"
                )
            effective[task.id, length] = _effective_sizes(task, length, sizes, strict_sizes, uci_dir)
        except InfeasibleError as e:
            refused.append(f"{task.id} at L={length}: {e}")
    if refused:
        raise InfeasibleError("; ".join(refused))
    points = [GridPoint(task, length, sizes, effective[task.id, length], seed) for task, length in pairs]
    for point in points:
        if point.cap_warning:
            notify(f"Warning: {point.cap_warning}")
    return points


def _effective_sizes(task: Task, length: int, sizes: Sizes, strict: bool, uci_dir: Path | None) -> Sizes:
    per_class = sizes.total // 2
    if task.table:
        available = min(tabular.class_counts(task.table(uci_dir)))
        if per_class <= available:
            return sizes
        spare = available - (sizes.train + sizes.val) // 2
        if strict or spare < 1:
            raise InfeasibleError(
                f"needs {per_class} rows of each class but the source has only "
                f"{available} of its smaller class"
                + ("" if spare < 1 else " (drop --strict-sizes to cap the test split)")
            )
        return Sizes(sizes.train, sizes.val, 2 * spare)
    if task.unique(length):
        for cls, limit in zip(("positive", "negative"), task.capacity(length)):
            if limit is not None and per_class > limit:
                raise InfeasibleError(f"needs {per_class} distinct {cls} inputs but only {limit} exist")
    return sizes
