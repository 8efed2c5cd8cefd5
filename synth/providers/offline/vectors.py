"""Inputs as numeric vectors, for the learners that need one (logreg, mlp, svm, knn),
and the Python that computes the same vector inside an emitted ``f(x)``.

The columns are the tree proposer's (features.py). A categorical column becomes 0/1
indicators, one per training category (one only, of the second category, when there
are two: ``x[3] == '1'`` for a binary position); a category never seen in training sets
none. A numeric column (a digit, a numeric tabular key) is standardised with the
training mean and standard deviation; a missing key or a value that is not a finite
number reads as the training mean. Indicators come first, then the numbers: the
indicators' partial sums (a distance, a count) are whole numbers, exact in floating
point in any order, so an emitted program that adds them as a bit count and then the
numeric terms in column order computes the same float as scikit-learn does.

In ``f`` the indicators are the bits of one integer, ``bits`` (bit j: indicator j), or
the list of the set ones, ``act``; the standardised numbers are a list, ``z``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synth.providers.offline.features import Column, Member, categories, columns, parse, program


@dataclass(frozen=True)
class Number:
    column: Column
    mean: float
    scale: float

    def raw(self) -> str:
        """The column's value in f; a tabular key that is missing or not finite reads
        as the mean (``_num`` gives -inf for the first two)."""
        ref = self.column.ref
        return f"({ref} if -math.inf < {ref} < math.inf else {self.mean!r})" if self.column.binding else ref

    def values(self, rows: list) -> np.ndarray:
        v = self.column.values(rows)
        return np.where(np.isfinite(v), v, self.mean)


@dataclass
class Vectoriser:
    """The vector of an input: indicators (Member tests), then standardised numbers."""

    kind: str
    indicators: list[Member]
    numbers: list[Number]

    def matrix(self, inputs: list[str]) -> np.ndarray:
        """The features scikit-learn is fitted on and predicts from."""
        rows = parse(self.kind, inputs)
        cols = [m.mask(m.column.values(rows)).astype(float) for m in self.indicators]
        cols += [(n.values(rows) - n.mean) / n.scale for n in self.numbers]
        return np.column_stack(cols) if cols else np.zeros((len(rows), 0))

    def program(self, body: list[str], helpers: str = "", *, listed: bool = False) -> str:
        """``f(x)``: the indicators, as ``bits`` or (``listed``) as ``act``, the list of
        the indices of those set, and ``z`` computed from x, then ``body``; ``helpers``
        (module level literals) above it."""
        lines = ["act = []" if listed else "bits = 0"]
        for j, m in enumerate(self.indicators):
            lines += [f"if {m.expr()}:", f"    act.append({j})" if listed else f"    bits |= {1 << j}"]
        terms = ", ".join(f"({n.raw()} - {n.mean!r}) / {n.scale!r}" for n in self.numbers)
        lines.append(f"z = [{terms}]")
        code = program(lines + body, [*self.indicators, *self.numbers])
        top = [helpers] if helpers else []
        if "math." in "".join(body) + helpers and not code.startswith("import math"):
            top.insert(0, "import math")
        return "".join(f"{t}\n\n\n" for t in top) + code

    def split(self, point: np.ndarray) -> tuple[int, list[float]]:
        """A row of the matrix as f computes it: (bits, z)."""
        k = len(self.indicators)
        bits = sum(1 << j for j in range(k) if point[j])
        return bits, point[k:].tolist()


def vectoriser(kind: str, train: list[tuple[str, int]], keep: list[int] | None = None) -> Vectoriser:
    """The vectoriser of the training inputs, over the columns ``keep`` (default: all)."""
    rows = parse(kind, [x for x, _ in train])
    cols = columns(kind, rows)
    if keep is not None:
        cols = [cols[i] for i in keep]
    indicators, numbers = [], []
    for c in cols:
        values = c.values(rows)
        if c.numeric:
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if len(finite) else 0.0
            std = float(finite.std()) if len(finite) else 0.0
            numbers.append(Number(c, mean, std if std > 0 and math.isfinite(std) else 1.0))
        else:
            cats = categories(values)
            indicators += [Member(c, (cat,)) for cat in (cats[1:] if len(cats) == 2 else cats)]
    return Vectoriser(kind, indicators, numbers)
