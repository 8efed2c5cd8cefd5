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
class Encoding:
    """Inputs as the numbers tree learners split on, and their splits as tests."""

    kind: str
    encoders: list[_Encoder]

    def matrix(self, inputs: list[str]) -> np.ndarray:
        """The feature matrix the model was fitted on, for any inputs of this kind."""
        rows = parse(self.kind, inputs)
        return np.column_stack([e.encode(e.column.values(rows)) for e in self.encoders])


def encoding(kind: str, train: list[tuple[str, int]], keep: list[int] | None = None) -> Encoding:
    """The encoding of the training split's columns (those in ``keep``, default all)."""
    rows = parse(kind, [x for x, _ in train])
    y = np.array([label for _, label in train])
    cols = columns(kind, rows)
    if keep is not None:
        cols = [cols[i] for i in keep]
    return Encoding(kind, [_encoder(c, c.values(rows), y) for c in cols])


def nested(node, children, test, leaf) -> tuple[list[str], list[Test]]:
    """A binary tree as lines of if/else, with the tests it uses: ``children(node)`` is
    (left, right) or None at a leaf, ``test(node)`` the test true for the left branch,
    ``leaf(node)`` a leaf's lines. Branches whose lines agree are merged."""
    kids = children(node)
    if kids is None:
        return leaf(node), []
    (a, tests_a), (b, tests_b) = (nested(k, children, test, leaf) for k in kids)
    if a == b:
        return a, tests_a
    t = test(node)
    lines = [f"if {t.expr()}:", *_indent(a), "else:", *_indent(b)]
    return lines, [t, *tests_a, *tests_b]


def _indent(lines: list[str]) -> list[str]:
    return [f"    {s}" for s in lines]


def sklearn_tree_lines(model, encoders: list[_Encoder], leaf) -> tuple[list[str], list[Test]]:
    """A fitted scikit-learn tree (``model.tree_``) as if/else; ``leaf(node)`` its lines."""
    t = model.tree_

    def children(node):
        return (
            None if t.children_left[node] == -1 else (int(t.children_left[node]), int(t.children_right[node]))
        )

    return nested(0, children, lambda node: encoders[t.feature[node]].split(t.threshold[node]), leaf)


@dataclass
class FittedTree:
    model: object  # sklearn.tree.DecisionTreeClassifier
    encoding: Encoding
    kind: str
    params: dict  # what was asked of scikit-learn (recorded as the request)
    train_acc: float
    capped = False  # no clock: the fit is bounded by the data

    def encode(self, inputs: list[str]) -> np.ndarray:
        return self.encoding.matrix(inputs)

    def program(self) -> str:
        value, classes = self.model.tree_.value, self.model.classes_

        def label(node: int) -> list[str]:
            # predict() takes the first class of highest weight; so does argmax.
            return [f"return {int(classes[np.argmax(value[node, 0])])}"]

        return program(*sklearn_tree_lines(self.model, self.encoding.encoders, label))

    def describe(self) -> dict:
        return {
            "proposer": "tree",
            "depth": int(self.model.get_depth()),
            "leaves": int(self.model.get_n_leaves()),
            "train_acc": self.train_acc,
        }


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
    enc = encoding(kind, train)
    X, y = enc.matrix([x for x, _ in train]), np.array([label for _, label in train])
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
    return FittedTree(model, enc, kind, params, train_acc)
