"""Datasets: the grid a user asks for, checked up front, then drawn, split and fingerprinted.

Everything here is decided before anything is written or spent: ``plan_grid`` refuses
impossible requests with one message naming the grid point and the rule, and
``build_dataset`` is a pure function of the grid point (and the UCI source files).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth import uci
from synth.errors import InfeasibleError, SynthError
from synth.generators import tabular
from synth.generators.base import Task
from synth.tasks import DEFAULT_GRID, get_task

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


def resolve_grid(
    functions: Sequence[str] | None, lengths: Sequence[int] | None
) -> list[tuple[Task, int]]:
    """(task, length) pairs in request order; every refused length named in one message.

    Explicit lengths apply to every task but the tabular ones, whose length is fixed by
    their data; without lengths each task uses its own defaults.
    """
    tasks = [get_task(fn) for fn in dict.fromkeys(functions or DEFAULT_GRID)]
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
        notify(f"Warning: --lengths is unused: {', '.join(dict.fromkeys(t.id for t, _ in pairs))} "
               "take their length from their data")  # fmt: skip
    effective, refused = {}, []
    for task, length in sorted(pairs, key=lambda pair: pair[0].source is not None):
        if task.source and refused:
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


def _effective_sizes(
    task: Task, length: int, sizes: Sizes, strict: bool, uci_dir: Path | None
) -> Sizes:
    per_class = sizes.total // 2
    if task.source:
        available = min(tabular.class_counts(uci.load_table(task.source, uci_dir=uci_dir)))
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
                raise InfeasibleError(
                    f"needs {per_class} distinct {cls} inputs but only {limit} exist"
                )
    return sizes


@dataclass(frozen=True)
class Dataset:
    point: GridPoint
    splits: dict[str, list[tuple[str, int]]]
    fingerprint: str


def build_dataset(point: GridPoint, *, uci_dir: Path | None = None) -> Dataset:
    """Draw, split and fingerprint one grid point's data, deterministically from its seed."""
    rng = np.random.Generator(np.random.PCG64(point.derived_seed))
    n = point.effective.total // 2
    task = point.task
    try:
        if task.source:
            pos, neg = tabular.draw(uci.load_table(task.source, uci_dir=uci_dir), n, rng)
        else:
            pos, neg = task.generate(point.length, n, rng)
        splits = split_leakage_free(pos, neg, point.effective, rng)
    except InfeasibleError as e:
        raise InfeasibleError(f"{point.label}: {e}") from None
    return Dataset(point, splits, fingerprint(splits))


def split_leakage_free(
    pos: list[str], neg: list[str], sizes: Sizes, rng: np.random.Generator
) -> dict[str, list[tuple[str, int]]]:
    """Deal examples into exactly balanced splits, all copies of an input in one split.

    Groups of identical inputs are placed greedily, largest first, each into the split
    with the most room left for it; single inputs then fill what is left, in a random
    order, so each split is a uniform draw. Each split is shuffled at the end.
    """
    examples = [(x, 1) for x in pos] + [(x, 0) for x in neg]
    order = rng.permutation(len(examples))
    groups: dict[str, list[int]] = {}
    for i in order:
        groups.setdefault(examples[i][0], []).append(int(i))
    room = {s: [getattr(sizes, s) // 2, getattr(sizes, s) // 2] for s in SPLITS}  # [neg, pos]
    chosen: dict[str, list[int]] = {s: [] for s in SPLITS}
    singles: list[list[int]] = [[], []]
    for members in sorted(groups.values(), key=len, reverse=True):
        if len(members) == 1:
            singles[examples[members[0]][1]].append(members[0])
            continue
        need = [0, 0]
        for i in members:
            need[examples[i][1]] += 1
        fits = [s for s in SPLITS if room[s][0] >= need[0] and room[s][1] >= need[1]]
        if not fits:
            raise InfeasibleError(
                f"cannot split without leakage: {len(members)} copies of one input "
                f"fit in no split (sizes {sizes.train}/{sizes.val}/{sizes.test})"
            )
        best = max(fits, key=lambda s: sum(room[s]))
        room[best][0] -= need[0]
        room[best][1] -= need[1]
        chosen[best].extend(members)
    for label in (0, 1):
        rest = iter(singles[label])
        for s in SPLITS:
            chosen[s].extend(next(rest) for _ in range(room[s][label]))
    return {
        s: [examples[i] for i in np.asarray(chosen[s])[rng.permutation(len(chosen[s]))]]
        for s in SPLITS
    }


def fingerprint(splits: dict[str, list[tuple[str, int]]]) -> str:
    """SHA-256 over every example and the split it is in, in order."""
    h = hashlib.sha256()
    for s in SPLITS:
        for x, y in splits[s]:
            h.update(f"{s}\t{x}\t{y}\n".encode())
    return h.hexdigest()
