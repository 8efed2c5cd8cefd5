"""The five UCI tabular tasks (fn_m..fn_q): balanced samples of source rows, anonymised.

A row becomes one input line ``x0:0.37,x1:c03,...``: the i-th raw feature is key
``x{i}``; a numeric feature goes through its own affine map ``a*v + b`` and is written
with 2 decimals; a categorical value becomes ``c{j}``, j its index in the sorted
distinct values of that column over the whole source table, zero-padded to the width
of the largest index. A missing value (``?`` in Adult, empty in Mushroom) is a value
like any other, so it gets a code of its own.

The random draws, in this order, define the data (so changing the order changes every
dataset; bump the tasks' ``version`` if you must):

1. the affine maps: ``rng.normal(size=(k, 2))`` for the k numeric features in column
   order, row i being (a, b) of the i-th numeric feature (no draw when k = 0);
2. the positives: ``rng.choice(positive row indices, n, replace=False)``;
3. the negatives: ``rng.choice(negative row indices, n, replace=False)``.

Row indices count data rows of the source file from 0, in file order.
"""

from __future__ import annotations

import numpy as np

from synth.datasets.generators.base import Task
from synth.datasets.uci import SOURCES, Table, load_table
from synth.errors import InfeasibleError

# The dict a candidate program receives (value -> float where it parses as one): the
# sandbox child's own parser, so baselines fit on exactly what programs are given.
from synth.sandbox.zygote import features as parse_input  # noqa: F401


def _task(fn: str, target: str, source: str) -> Task:
    length = len(SOURCES[source].features)
    return Task(
        id=fn,
        target=target,
        kind="tabular",
        default_lengths=(length,),
        generate=None,
        label=None,
        length_rule=lambda L: None,  # tabular tasks ignore --lengths
        # Source tables hold identical rows (CDC has thousands, some in both classes),
        # so sampled inputs can repeat; the leakage-free splitter keeps copies together.
        unique=lambda L: False,
        fixed_length=length,
        source=source,
        table=lambda uci_dir: load_table(source, uci_dir=uci_dir),
    )


TASKS: list[Task] = [
    _task("fn_m", "adult_income", "adult"),
    _task("fn_n", "mushroom", "mushroom"),
    _task("fn_o", "cdc_diabetes", "cdc_diabetes"),
    _task("fn_p", "htru2", "htru2"),
    # Deviation: all 36 attributes (the published metadata says 35).
    _task("fn_q", "chess", "chess"),
]


def class_counts(table: Table) -> tuple[int, int]:
    """(positive rows, negative rows) of a source table."""
    positives = int(table.labels.sum())
    return positives, len(table) - positives


def affine_params(table: Table, rng: np.random.Generator) -> np.ndarray:
    """One (a, b) row per numeric feature, in column order; a and b ~ Normal(0, 1)."""
    return rng.normal(size=(len(table.numeric), 2))


def sample_rows(table: Table, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of n positive and n negative rows, each drawn without replacement."""
    pos, neg = class_counts(table)
    if n > min(pos, neg):
        raise InfeasibleError(
            f"UCI {table.source.title} has {pos} positive and {neg} negative rows; {n} of each were asked for"
        )
    return tuple(rng.choice(np.flatnonzero(table.labels == cls), size=n, replace=False) for cls in (1, 0))


def encode_rows(table: Table, rows: np.ndarray, params: np.ndarray) -> list[str]:
    """The anonymised input line of each row in ``rows``."""
    affine = dict(zip(sorted(table.numeric), params.tolist()))
    parts = []
    for i, column in enumerate(table.columns):
        codes = column.codes[rows]
        if i not in affine:
            width = len(str(len(column.values) - 1))
            names = [f"x{i}:c{j:0{width}d}" for j in range(len(column.values))]
        elif len(column.numbers) > len(codes) // 2:  # values mostly distinct: one per row
            a, b = affine[i]
            parts.append([f"x{i}:{v:.2f}" for v in (a * column.numbers[codes] + b).tolist()])
            continue
        else:  # each distinct value written once (a whole table is up to 250,000 rows)
            a, b = affine[i]
            names = [f"x{i}:{v:.2f}" for v in (a * column.numbers + b).tolist()]
        parts.append([names[j] for j in codes.tolist()])
    return [",".join(fields) for fields in zip(*parts)]


def draw(table: Table, n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """n positive and n negative anonymised rows (see the module docstring for the draws)."""
    params = affine_params(table, rng)
    positives, negatives = sample_rows(table, n, rng)
    return encode_rows(table, positives, params), encode_rows(table, negatives, params)
