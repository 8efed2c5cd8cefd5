"""Drawing one grid point's examples and dealing them into leakage-free splits: a pure
function of the grid point (and the UCI source files), fingerprinted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth.datasets.generators import tabular
from synth.datasets.grid import SPLITS, GridPoint, Sizes
from synth.errors import InfeasibleError


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
        if task.table:
            pos, neg = tabular.draw(task.table(uci_dir), n, rng)
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
    return {s: [examples[i] for i in np.asarray(chosen[s])[rng.permutation(len(chosen[s]))]] for s in SPLITS}


def fingerprint(splits: dict[str, list[tuple[str, int]]]) -> str:
    """SHA-256 over every example and the split it is in, in order."""
    h = hashlib.sha256()
    for s in SPLITS:
        for x, y in splits[s]:
            h.update(f"{s}\t{x}\t{y}\n".encode())
    return h.hexdigest()
