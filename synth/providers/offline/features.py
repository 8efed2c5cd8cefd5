"""What the offline proposers see of an input, and the Python that reads it back.

Both proposers fit on columns (a character position, or a tabular key) and split on
tests (a threshold on a number, membership in a set of categories). A test computes
its truth values on the data with the same semantics as the Python expression it
writes into the emitted ``f(x)``, so an emitted program predicts exactly what was fitted.

Reading rules, the same in the fit and in the emitted program:
- binary and graph: each character is a category (``x[3] == '1'``, ``x[7] in ('2', '5')``);
- decimal: each digit is a number (``int(x[3]) <= 4``);
- tabular: the dict the sandbox passes (``synth.datasets.generators.tabular.parse_input``); a key
  whose training values are all numbers is numeric, read by ``_num`` (a missing key or a
  value that is not a number counts as -inf, below every threshold); any other key is
  categorical, read with ``x.get`` (a missing key is ``None``, a category of its own).
"""

from __future__ import annotations

import keyword
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from synth.datasets.generators.tabular import parse_input

MISSING = -math.inf

# The tabular reader, emitted verbatim above f when a numeric key is used; `_number`
# below is the same rule for the fit.
_NUM_HELPER = '''\
import math


def _num(v):
    """The value as a number; a missing key or a non-number counts as -inf."""
    return v if isinstance(v, (int, float)) and v == v else -math.inf'''

# Names an emitted program already uses, so a tabular key never shadows them.
_RESERVED = {"x", "f", "math", "_num"}


def _number(v) -> float:
    return float(v) if isinstance(v, (int, float)) and v == v else MISSING


@dataclass(frozen=True, eq=False)
class Column:
    """One raw feature: how the fit reads it from a row, and how f names it."""

    ref: str  # the expression tests use in f: "x[3]", "int(x[3])" or a bound local "x3"
    read: Callable[[object], object]  # row -> value, with the semantics of `ref`
    numeric: bool
    integral: bool = False  # numbers are whole (digits): thresholds are written as ints
    binding: str | None = None  # tabular: the line at the top of f that binds `ref`

    def values(self, rows: list) -> np.ndarray:
        """This column over parsed rows: float64 when numeric, else an object array."""
        if self.numeric:
            return np.fromiter(map(self.read, rows), float, len(rows))
        out = np.empty(len(rows), dtype=object)
        out[:] = list(map(self.read, rows))
        return out


def parse(kind: str, inputs: Iterable[str]) -> list:
    """Rows as f receives them: the string itself, or the tabular dict."""
    return [parse_input(x) for x in inputs] if kind == "tabular" else list(inputs)


def columns(kind: str, rows: list) -> list[Column]:
    """The columns of the training rows (their positions, or their keys in first-seen order)."""
    if kind == "tabular":
        keys = dict.fromkeys(k for row in rows for k in row)
        return [_tabular_column(k, i, rows) for i, k in enumerate(keys)]
    length = max(map(len, rows))
    if kind == "decimal":
        return [
            Column(f"int(x[{i}])", lambda r, i=i: int(r[i]), numeric=True, integral=True)
            for i in range(length)
        ]
    return [Column(f"x[{i}]", operator.itemgetter(i), numeric=False) for i in range(length)]


def _tabular_column(key: str, index: int, rows: list) -> Column:
    safe = key.isidentifier() and not keyword.iskeyword(key) and not key.startswith("_")
    name = key if safe and key not in _RESERVED else f"col{index}"
    if all(type(row[key]) is float for row in rows if key in row):
        return Column(
            name, lambda r: _number(r.get(key)), numeric=True, binding=f"{name} = _num(x.get({key!r}))"
        )
    return Column(name, lambda r: r.get(key), numeric=False, binding=f"{name} = x.get({key!r})")


def cuts(column: Column, values: np.ndarray) -> np.ndarray:
    """Where a numeric column can be split: one cut per gap between consecutive distinct
    training values, ``lo <= cut < hi``, so that ``value <= cut`` splits the training
    rows at that gap. Whole numbers cut at lo (``int(x[3]) <= 4``); other values at the
    midpoint (CART's choice) rounded to the fewest decimals that stay inside the gap."""
    u = np.unique(values)
    if column.integral:
        return u[:-1]
    return np.array([_between(lo, hi) for lo, hi in zip(u[:-1].tolist(), u[1:].tolist())])


def _between(lo: float, hi: float) -> float:
    mid = lo / 2 + hi / 2
    if math.isfinite(mid):
        for digits in range(17):
            t = round(mid, digits)
            if lo < t < hi:
                return t
    return lo  # -inf (a missing value) next to a number, or no decimal fits the gap


def categories(values: np.ndarray) -> list:
    """The distinct categories of a column (strings, and None for a missing key) in a
    fixed order. A number in a categorical column is never named in a test: it reads as
    none of the categories, in the fit as in f."""
    return sorted({v for v in values.tolist() if v is None or isinstance(v, str)}, key=repr)


@dataclass(frozen=True)
class Threshold:
    """``value <= cut`` on a numeric column."""

    column: Column
    cut: float

    def expr(self, negated: bool = False) -> str:
        return f"{self.column.ref} {'>' if negated else '<='} {self._literal()}"

    def mask(self, values: np.ndarray) -> np.ndarray:
        return values <= self.cut

    def _literal(self) -> str:
        if math.isinf(self.cut):
            return "-math.inf" if self.cut < 0 else "math.inf"
        return str(int(self.cut)) if self.column.integral else repr(float(self.cut))


@dataclass(frozen=True)
class Member:
    """``value in categories`` on a categorical column (``==`` for a single one)."""

    column: Column
    categories: tuple

    def expr(self, negated: bool = False) -> str:
        if len(self.categories) == 1:
            return f"{self.column.ref} {'!=' if negated else '=='} {self.categories[0]!r}"
        return f"{self.column.ref} {'not in' if negated else 'in'} {self.categories!r}"

    def mask(self, values: np.ndarray) -> np.ndarray:
        cats = self.categories
        return np.fromiter((v in cats for v in values.tolist()), bool, len(values))


Test = Threshold | Member


def program(body: list[str], tests: Iterable[Test]) -> str:
    """The source of ``f(x)``: helpers and bindings for the columns ``tests`` use, then ``body``."""
    used = list(dict.fromkeys(t.column for t in tests))
    lines = []
    if any(c.binding and c.numeric for c in used):
        lines += [_NUM_HELPER, "", ""]
    lines.append("def f(x):")
    lines += [f"    {c.binding}" for c in used if c.binding]
    lines += [f"    {line}" for line in body]
    return "\n".join(lines) + "\n"
