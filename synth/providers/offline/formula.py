"""The `formula` proposer: the shortest boolean formula that fits the training split.

Leaves are tests on one column (features.py): a character equal to a category (binary,
graph), a digit at most k (decimal), a tabular category or a threshold at evenly spaced
cuts of a numeric key. Formulas combine leaves with AND, OR, XOR and NOT and are
enumerated bottom-up by size (the number of leaves), so the first formula that fits
every training example is a shortest one. A formula is scored by its training accuracy
or its negation's, whichever is higher. Formulas are compared by their truth values on
the training rows (observational equivalence): one that computes the same values as an
earlier one, or their complement, is skipped, which keeps the search to distinct
behaviours. The search stops at a perfect fit, at ``max_size``, at ``max_candidates``
formulas (the budget: the same on any machine), or when ``time_budget`` runs out (a
safety cap only: the attempt is then recorded as incomplete); the best formula so far
is emitted (ties: the first found, so the shortest).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np

from synth.config import FORMULA_MAX_CANDIDATES, FORMULA_TIME_CAP
from synth.providers.offline.features import Member, Threshold, categories, columns, cuts, parse, program

if TYPE_CHECKING:
    from synth.providers.offline.features import Column, Test

# Distinct behaviours remembered, and formulas kept per size for building larger ones:
# beyond this the search goes on but forgets, bounding memory (about 150 MB a worker).
MAX_KEPT = 1 << 19
# How often (in pairs of formulas combined) the search looks at the clock.
_CLOCK_EVERY = 1024

# A formula is a tuple: ("test", Test), ("not", f), (op, f, g) for op in _OPS, or
# ("const", False) when no test separates any training rows.
_OPS = {"and": "and", "or": "or", "xor": "^"}


@dataclass
class FoundFormula:
    formula: tuple
    kind: str
    params: dict  # the search's settings (recorded as the request)
    size: int
    train_acc: float
    # Formulas looked at: max_candidates=this replays a search the clock stopped.
    candidates: int
    stopped: str  # "solved", "exhausted", "max_size", "max_candidates" or "time"

    @property
    def capped(self) -> bool:
        """Stopped by the clock: a result that depends on the machine."""
        return self.stopped == "time"

    def program(self) -> str:
        return program([f"return int({render(self.formula)})"], _tests(self.formula))

    def predict(self, inputs: list[str]) -> np.ndarray:
        rows = parse(self.kind, inputs)
        values = {t.column: t.column.values(rows) for t in _tests(self.formula)}
        return _truth(self.formula, values, len(rows)).astype(int)

    def describe(self) -> dict:
        return {
            "proposer": "formula",
            "formula": render(self.formula),
            "size": self.size,
            "train_acc": self.train_acc,
            "candidates": self.candidates,
            "stopped": self.stopped,
        }


def fit(
    train: list[tuple[str, int]],
    kind: str,
    rng: np.random.Generator,
    attempt: int = 1,
    *,
    time_budget: float = FORMULA_TIME_CAP,
    max_candidates: int | None = FORMULA_MAX_CANDIDATES,
    max_size: int = 8,
    max_thresholds: int = 8,
) -> FoundFormula:
    """Search formulas over the training split. Attempt 1 uses every column in order;
    attempt n > 1 a random half of the columns in a random order, so that the budget
    reaches larger formulas over other features."""
    deadline = time.perf_counter() + time_budget
    rows = parse(kind, [x for x, _ in train])
    cols = columns(kind, rows)
    if attempt > 1:
        cols = [cols[i] for i in rng.permutation(len(cols))[: math.ceil(len(cols) / 2)]]
    leaves = []
    for column in cols:
        values = column.values(rows)
        for test in _leaf_tests(column, values, max_thresholds):
            leaves.append((_bits(test.mask(values)), ("test", test)))
    target = _bits(np.array([label == 1 for _, label in train]))
    formula, correct, size, candidates, stopped = _search(
        leaves, target, len(train), deadline, max_candidates, max_size
    )
    params = {
        "time_budget": time_budget,
        "max_candidates": max_candidates,
        "max_size": max_size,
        "max_thresholds": max_thresholds,
        "columns": len(cols),
    }
    return FoundFormula(formula, kind, params, size, correct / len(train), candidates, stopped)


def _leaf_tests(column: Column, values: np.ndarray, max_thresholds: int) -> list[Test]:
    if column.numeric:
        cut = cuts(column, values)
        if len(cut) > max_thresholds:
            cut = cut[np.unique(np.linspace(0, len(cut) - 1, max_thresholds).round().astype(int))]
        return [Threshold(column, c) for c in cut.tolist()]
    # Last category first: a binary position's leaf reads x[i] == '1' (its complement,
    # x[i] == '0', is then the same behaviour and skipped).
    return [Member(column, (c,)) for c in reversed(categories(values))]


def _bits(mask: np.ndarray) -> int:
    """A boolean vector as an int, row i as bit i: formulas combine with &, |, ^."""
    return int.from_bytes(np.packbits(mask, bitorder="little").tobytes(), "little")


def _search(leaves, target: int, n: int, deadline: float, max_candidates, max_size):
    """Bottom-up enumeration by size. Returns (formula, correct, size, candidates, stopped).

    The hot loop (about half a microsecond per formula) keeps everything in locals and
    builds a formula as ``(k, left, right)``, the k-th join of ``_join``; only the best
    one is expanded into the readable form.
    """
    full = (1 << n) - 1
    cap = max_candidates if max_candidates is not None else math.inf
    seen = {0}  # behaviours up to complement (canonical: row 0 false); 0 = a constant
    room = MAX_KEPT
    levels: list[list[tuple[int, tuple]]] = [[], []]
    best_correct, best, best_size = -1, None, 0  # best: (formula, negated)
    count = pairs = 0

    def result(stopped: str):
        if best is None:  # every leaf is constant on the training rows: so is f
            return ("const", False), n - target.bit_count(), 0, count, stopped
        formula = _expand(best[0])
        return ("not", formula) if best[1] else formula, best_correct, best_size, count, stopped

    for v, formula in leaves:
        count += 1
        key = v ^ full if v & 1 else v
        if key in seen:
            continue
        seen.add(key)
        levels[1].append((v, formula))
        wrong = (v ^ target).bit_count()
        correct = max(wrong, n - wrong)
        if correct > best_correct:
            best_correct, best, best_size = correct, (formula, wrong > n - wrong), 1
            if correct == n:
                return result("solved")
    if not levels[1]:
        return result("exhausted")
    for size in range(2, max_size + 1):
        level = []
        keep = MAX_KEPT if size < max_size else 0  # the last size builds nothing larger
        for i in range(1, size // 2 + 1):
            small, large = levels[i], levels[size - i]
            for a, (va, fa) in enumerate(small):
                for vb, fb in islice(large, a + 1, None) if i == size - i else large:
                    if count >= cap:
                        return result("max_candidates")
                    pairs += 1
                    if pairs % _CLOCK_EVERY == 0 and time.perf_counter() > deadline:
                        return result("time")
                    count += 5
                    for k, v in enumerate((va & vb, va & ~vb, vb & ~va, va | vb, va ^ vb)):
                        key = v ^ full if v & 1 else v
                        if key in seen:
                            continue
                        if room:
                            seen.add(key)
                            room -= 1
                        if keep:
                            level.append((v, (k, fa, fb)))
                            keep -= 1
                        wrong = (v ^ target).bit_count()
                        correct = max(wrong, n - wrong)
                        if correct > best_correct:
                            best = ((k, fa, fb), wrong > n - wrong)
                            best_correct, best_size = correct, size
                            if correct == n:
                                return result("solved")
        levels.append(level)
    return result("max_size")


def _expand(formula: tuple) -> tuple:
    """A search node ``(k, left, right)`` as the readable tuple form (leaves unchanged)."""
    if formula[0] == "test":
        return formula
    k, a, b = formula[0], _expand(formula[1]), _expand(formula[2])
    # The five joins cover every binary connective up to complement (OR is NOT of AND
    # of NOTs; XNOR is NOT XOR), which the scoring's negation supplies.
    return (
        ("and", a, b),
        ("and", a, ("not", b)),
        ("and", ("not", a), b),
        ("or", a, b),
        ("xor", a, b),
    )[k]


def render(formula: tuple, parent: str | None = None) -> str:
    """The formula as a Python expression, parenthesised where precedence needs it."""
    kind = formula[0]
    if kind == "const":
        return str(formula[1])
    if kind == "test":
        text = formula[1].expr()
    elif kind == "not" and formula[1][0] == "test":
        text = formula[1][1].expr(negated=True)
    elif kind == "not":
        text = f"not {render(formula[1], 'not')}"
    else:
        text = f" {_OPS[kind]} ".join(render(f, kind) for f in formula[1:])
        return text if parent in (None, kind) else f"({text})"
    # A comparison or a `not` binds looser than ^.
    return f"({text})" if parent == "xor" else text


def _tests(formula: tuple) -> list[Test]:
    if formula[0] == "const":
        return []
    if formula[0] == "test":
        return [formula[1]]
    return [t for f in formula[1:] for t in _tests(f)]


def _truth(formula: tuple, values: dict, n: int) -> np.ndarray:
    kind = formula[0]
    if kind == "const":
        return np.full(n, formula[1])
    if kind == "test":
        return formula[1].mask(values[formula[1].column])
    if kind == "not":
        return ~_truth(formula[1], values, n)
    a, b = (_truth(f, values, n) for f in formula[1:])
    return {"and": a & b, "or": a | b, "xor": a ^ b}[kind]
