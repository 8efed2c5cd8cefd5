"""The `tree` proposer: a CART decision tree fitted on the training split, written as f(x).

Columns are encoded so that scikit-learn's splits translate exactly into tests on the
raw values (see features.py): a numeric column becomes the index of its training gap
(``searchsorted`` over its cuts), so a split ``code <= r`` is ``value <= cuts[r]``,
exact even where float32 (scikit-learn's internal type) would round the values; a
categorical column becomes the rank of its category by training positive rate
(Breiman's ordering: exact for the best split at the root, an approximation below it),
so a split is membership in the categories ranked at or below it, and a category
unseen in training goes right. Subtrees whose branches agree are merged: the program
predicts what the tree predicts, with fewer lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth.providers.base import ProviderError
from synth.providers.offline.features import (
    Column,
    Member,
    Test,
    Threshold,
    categories,
    columns,
    cuts,
    parse,
    program,
)

# Python refuses more than 100 levels of indentation; a tree deeper than this would
# not compile. None (grow until pure) means this.
MAX_DEPTH = 64


def classifier():
    """scikit-learn's CART, imported only when a tree is wanted (an optional extra)."""
    try:
        from sklearn.tree import DecisionTreeClassifier
    except ImportError:
        raise ProviderError(
            "the tree proposer needs scikit-learn: pip install 'llm-pv[baselines]'",
            kind="config",
            fatal=True,
        ) from None
    return DecisionTreeClassifier


@dataclass(frozen=True)
class _Encoder:
    """One column as a number scikit-learn can split, and a split back as a test."""

    column: Column
    levels: list  # numeric: the cuts; categorical: categories by positive rate

    def encode(self, values: np.ndarray) -> np.ndarray:
        if self.column.numeric:
            return np.searchsorted(self.levels, values, side="left").astype(float)
        rank = {c: r for r, c in enumerate(self.levels)}
        return np.fromiter((rank.get(v, len(rank)) for v in values.tolist()), float, len(values))

    def split(self, threshold: float) -> Test:
        """The test true for the left branch of ``code <= threshold``."""
        r = int(np.floor(threshold))
        if self.column.numeric:
            return Threshold(self.column, self.levels[r])
        return Member(self.column, tuple(sorted(self.levels[: r + 1], key=repr)))


def _encoder(column: Column, values: np.ndarray, y: np.ndarray) -> _Encoder:
    if column.numeric:
        return _Encoder(column, cuts(column, values).tolist())
    cats = categories(values)
    rate = {c: y[Member(column, (c,)).mask(values)].mean() for c in cats}
    return _Encoder(column, sorted(cats, key=lambda c: (rate[c], repr(c))))


@dataclass
class FittedTree:
    model: object  # sklearn.tree.DecisionTreeClassifier
    encoders: list[_Encoder]
    kind: str
    params: dict  # what was asked of scikit-learn (recorded as the request)
    train_acc: float

    def encode(self, inputs: list[str]) -> np.ndarray:
        """The feature matrix the model was fitted on, for any inputs of this kind."""
        rows = parse(self.kind, inputs)
        return np.column_stack([e.encode(e.column.values(rows)) for e in self.encoders])

    def program(self) -> str:
        body, tests = self._branch(0)
        return program(["return " + str(body)] if isinstance(body, int) else body, tests)

    def describe(self) -> dict:
        return {
            "proposer": "tree",
            "depth": int(self.model.get_depth()),
            "leaves": int(self.model.get_n_leaves()),
            "train_acc": self.train_acc,
        }

    def _branch(self, node: int) -> tuple[int | list[str], list[Test]]:
        """A node as a label (a leaf) or as lines of if/else, with the tests it uses."""
        t = self.model.tree_
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == -1:
            # predict() takes the first class of highest weight; so does argmax.
            return int(self.model.classes_[np.argmax(t.value[node, 0])]), []
        (a, tests_a), (b, tests_b) = self._branch(left), self._branch(right)
        if a == b:
            return a, tests_a
        test = self.encoders[t.feature[node]].split(t.threshold[node])
        lines = [f"if {test.expr()}:", *_indent(a), "else:", *_indent(b)]
        return lines, [test, *tests_a, *tests_b]


def _indent(branch: int | list[str]) -> list[str]:
    return [f"    return {branch}"] if isinstance(branch, int) else [f"    {s}" for s in branch]


def fit(
    train: list[tuple[str, int]],
    kind: str,
    rng: np.random.Generator,
    attempt: int = 1,
    *,
    max_depth: int | None = None,
    min_samples_leaf: int = 1,
) -> FittedTree:
    """CART on the training split. Attempt 1 grows the tree to ``max_depth``; attempt
    n > 1 refits with that tree's depth halved n - 1 times (at least 1), a crude
    pruning that validation selection can pick when the full tree overfits."""
    rows = parse(kind, [x for x, _ in train])
    y = np.array([label for _, label in train])
    cols = columns(kind, rows)
    values = [c.values(rows) for c in cols]
    encoders = [_encoder(c, v, y) for c, v in zip(cols, values)]
    X = np.column_stack([e.encode(v) for e, v in zip(encoders, values)])
    params = {
        "max_depth": min(max_depth or MAX_DEPTH, MAX_DEPTH),
        "min_samples_leaf": min_samples_leaf,
        "random_state": int(rng.integers(2**31)),  # breaks ties between equal splits
    }
    model = classifier()(**params).fit(X, y)
    if attempt > 1:
        params["max_depth"] = max(1, model.get_depth() >> (attempt - 1))
        model = classifier()(**params).fit(X, y)
    train_acc = float((model.predict(X) == y).mean())
    return FittedTree(model, encoders, kind, params, train_acc)
