"""The fixed positions read by parity_rand_3 (fn_e) and parity_rand_10 (fn_f).

The published code takes the first k entries of ``torch.randperm(L)`` after
``torch.manual_seed(42)``. Those positions are kept as data, not recomputed (no torch
dependency): ``synth/data/parity_rand_positions.tsv`` holds them for every L from k to
128 and for some larger L (150, 160, 200, 256, 300, 400, 500, 512, 1000).

For an L outside that table the positions are the first k entries of
``numpy.random.Generator(numpy.random.PCG64(42)).permutation(L)``: deterministic and
documented, but not what the published code would pick, so results at such lengths are
not comparable with published ones.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import numpy as np

TABLE = "data/parity_rand_positions.tsv"
FALLBACK_SEED = 42


def positions(length: int, k: int) -> tuple[int, ...]:
    """The k fixed 0-based positions in a string of ``length``, in table order."""
    if not 1 <= k <= length:
        raise ValueError(f"cannot choose {k} positions among {length}")
    known = _table().get((length, k))
    if known is not None:
        return known
    perm = np.random.Generator(np.random.PCG64(FALLBACK_SEED)).permutation(length)
    return tuple(int(i) for i in perm[:k])


@cache
def _table() -> dict[tuple[int, int], tuple[int, ...]]:
    """(L, k) -> positions, read once from the package data. Columns: L, then one per k
    (header ``k3``, ``k10``); an empty cell means L < k."""
    header, *rows = files("synth").joinpath(TABLE).read_text("ascii").splitlines()
    ks = [int(name.removeprefix("k")) for name in header.split("\t")[1:]]
    table = {}
    for row in rows:
        length, *cells = row.split("\t")
        for k, cell in zip(ks, cells):
            if cell.strip():
                table[int(length), k] = tuple(int(i) for i in cell.split())
    return table
