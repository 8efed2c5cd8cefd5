"""The classical learners of the paper's comparison as proposers: logreg, forest,
boosting, mlp, svm and knn, each fitted with scikit-learn and written as ``f(x)``.

Each fits every setting of its small grid (``GRIDS``) on the training split, keeps the
one with the best validation accuracy (ties: the first in the grid; the test split is
never seen) and writes that model as a program that predicts exactly what its
``predict`` does: the learned parameters as literals, the input featurised as the
fit featurised it (vectors.py for logreg, mlp, svm, knn; the tree proposer's encoding
for forest and boosting, whose trees become nested if/else). The emitted programs use
``math`` alone.

Attempt 1 uses every column; attempt n > 1 a random half of them (a random subspace),
drawn, like every random state of the fit, from ``PCG64([seed, trial, attempt])``.
All work is counted (iterations, trees, grid points), never timed, and scikit-learn
runs on one thread, so a proposal is the same on any machine.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from synth.providers.base import ProviderError
from synth.providers.offline import tree
from synth.providers.offline.features import columns, parse, program
from synth.providers.offline.vectors import Vectoriser, vectoriser

# Trees of a forest, and leaves of a tree of a forest or of boosting: they bound the
# program (at most FOREST_TREES * (2 * FOREST_LEAVES - 1) nodes for a forest).
FOREST_TREES = 30
FOREST_LEAVES = 64
BOOSTING_LEAVES = 15
MLP_HIDDEN = 16

# Each learner's settings, tried in this order; the first of the best on validation wins.
GRIDS: dict[str, list[dict]] = {
    "logreg": [{"C": c} for c in (0.01, 0.1, 1.0, 10.0, 100.0)],
    "forest": [{"min_samples_leaf": m} for m in (1, 2, 5)],
    "boosting": [{"max_iter": n, "min_samples_leaf": m} for n, m in product((30, 100), (5, 20))],
    "mlp": [{"alpha": a} for a in (1e-4, 1e-2, 1.0)],
    "svm": [{"C": c} for c in (0.1, 1.0, 10.0, 100.0)],
    "knn": [{"n_neighbors": k} for k in (1, 3, 5, 9, 15)],
}
# What every setting of a learner shares (recorded with it).
FIXED: dict[str, dict] = {
    "logreg": {"max_iter": 1000},
    "forest": {"n_estimators": FOREST_TREES, "max_leaf_nodes": FOREST_LEAVES, "max_features": "sqrt"},
    "boosting": {
        "learning_rate": 0.1,
        "max_leaf_nodes": BOOSTING_LEAVES,
        "early_stopping": False,
        "random_state": 0,
    },
    "mlp": {"hidden_layer_sizes": [MLP_HIDDEN], "solver": "adam", "max_iter": 300},
    "svm": {"kernel": "rbf", "gamma": "scale"},
    "knn": {"algorithm": "brute", "metric": "manhattan"},
}
MAX_FLOAT = sys.float_info.max  # scikit-learn's empty heap slot (DBL_MAX)
SEEDED = ("forest", "mlp")  # random: a random_state drawn per attempt
LEARNERS = tuple(GRIDS)


def setting(learner: str) -> str:
    """The learner's settings in one line: its grid (chosen on validation), then the fixed ones."""
    grid = GRIDS[learner]
    tried = "; ".join(f"{k} in {'/'.join(str(g[k]) for g in grid)}" for k in grid[0])
    fixed = ", ".join(f"{k}={v}" for k, v in FIXED[learner].items())
    return f"{tried} (by val); {fixed}"


def sklearn():
    """scikit-learn's parts, imported only when a learner is wanted (an optional extra)."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.neural_network import MLPClassifier
        from sklearn.svm import SVC
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ProviderError(
            "the classical learners need scikit-learn: install the `baselines` extra "
            "(pip install 'llm-pv[baselines]')",
            kind="config",
            fatal=True,
        ) from None
    return {
        "logreg": LogisticRegression,
        "forest": RandomForestClassifier,
        "boosting": HistGradientBoostingClassifier,
        "mlp": MLPClassifier,
        "svm": SVC,
        "knn": KNeighborsClassifier,
        "threads": threadpool_limits,
    }


@dataclass
class FittedLearner:
    learner: str
    kind: str
    model: object | None  # None when the training split has one label only
    features: Vectoriser | tree.Encoding
    params: dict  # the settings chosen, the grid and what was drawn (recorded as the request)
    val_scores: list[float | None]
    train_acc: float
    constant: int = 0
    size: dict = field(default_factory=dict)
    code: str | None = None  # the program, once written
    capped = False  # no clock: every budget is counted

    def predict(self, inputs: list[str]) -> np.ndarray:
        """The estimator's own predictions (what the program must reproduce)."""
        if self.model is None:
            return np.full(len(inputs), self.constant)
        with sklearn()["threads"](1):
            return self.model.predict(self.features.matrix(inputs))

    def program(self) -> str:
        if self.code is None:
            self.code = (
                program([f"return {self.constant}"], [])
                if self.model is None
                else EMITTERS[self.learner](self)
            )
        return self.code

    def describe(self) -> dict:
        return {
            "proposer": self.learner,
            "train_acc": self.train_acc,
            "val_scores": self.val_scores,
            "program_chars": len(self.program()),
            **self.size,
        }


def fit(learner: str, train, kind: str, rng: np.random.Generator, attempt: int, val) -> FittedLearner:
    """Fit the grid on ``train``, keep the best on ``val`` (see the module's docstring)."""
    parts = sklearn()
    n_columns = len(columns(kind, parse(kind, [x for x, _ in train])))
    keep = None
    if attempt > 1:
        keep = sorted(rng.permutation(n_columns)[: math.ceil(n_columns / 2)].tolist())
    state = int(rng.integers(2**31))
    trees = learner in ("forest", "boosting")
    features = tree.encoding(kind, train, keep) if trees else vectoriser(kind, train, keep)
    X, y = features.matrix([x for x, _ in train]), np.array([label for _, label in train])
    params = {
        **FIXED[learner],
        "grid": GRIDS[learner],
        "columns": n_columns if keep is None else len(keep),
        **({"random_state": state} if learner in SEEDED else {}),
    }
    if len(set(y.tolist())) < 2:
        constant = int(y[0]) if len(y) else 0
        return FittedLearner(learner, kind, None, features, params, [], 1.0, constant)
    Xv = features.matrix([x for x, _ in val]) if val else None
    yv = np.array([label for _, label in val])
    best, scores = None, []
    with parts["threads"](1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: the iteration count is the budget
        for choice in GRIDS[learner]:
            model = parts[learner](**_arguments(learner, choice, params, len(y))).fit(X, y)
            score = float((model.predict(Xv) == yv).mean()) if val else None
            scores.append(score)
            if best is None or (score is not None and score > best[0]):
                best = (score, choice, model)
        train_acc = float((best[2].predict(X) == y).mean())
    params["chosen"] = best[1]
    fitted = FittedLearner(learner, kind, best[2], features, params, scores, train_acc)
    fitted.size = SIZES[learner](best[2])
    return fitted


def _arguments(learner: str, choice: dict, params: dict, n: int) -> dict:
    args = {**params, **choice}
    del args["grid"], args["columns"]
    if learner == "mlp":
        args["hidden_layer_sizes"] = tuple(args["hidden_layer_sizes"])
    if learner == "knn":  # odd and at most the training rows: no tied vote
        args["n_neighbors"] = min(args["n_neighbors"], n - (n % 2 == 0))
    return args


def _floats(values) -> str:
    return "(" + "".join(f"{float(v)!r}, " for v in values) + ")"


# logreg and mlp add the weights of the indicators set (``act``) with an itemgetter;
# index k, past the last indicator, holds a 0.0, named twice so that it always returns a
# tuple (adding 0.0 changes no sum).
_ITEMGETTER = "from operator import itemgetter"


def _logreg(f: FittedLearner) -> str:
    k = len(f.features.indicators)
    w = f.model.coef_[0]
    body = [
        f"s = {float(f.model.intercept_[0])!r} + sum(itemgetter({k}, {k}, *act)(_W))",
        "for w, v in zip(_WZ, z):",
        "    s += w * v",
        "return int(s > 0)",
    ]
    helpers = f"{_ITEMGETTER}\n\n_W = {_floats([*w[:k], 0.0])}\n_WZ = {_floats(w[k:])}"
    return f.features.program(body, helpers, listed=True)


def _mlp(f: FittedLearner) -> str:
    k = len(f.features.indicators)
    (w1, w2), (b1, b2) = f.model.coefs_, f.model.intercepts_
    units = "".join(f"    {_floats([*col, 0.0])},\n" for col in w1[:k].T)  # per hidden unit
    rows = "".join(f"    {_floats(row)},\n" for row in w1[k:])  # per number
    helpers = f"{_ITEMGETTER}\n\n_W1 = (\n{units})\n_W1Z = (\n{rows})\n_B1 = {_floats(b1)}\n_W2 = {_floats(w2[:, 0])}"
    body = [
        f"weights = itemgetter({k}, {k}, *act)",
        "h = [b + sum(weights(col)) for b, col in zip(_B1, _W1)]",
        "for v, row in zip(z, _W1Z):",
        "    h = [a + v * w for a, w in zip(h, row)]",
        f"r = {float(b2[0])!r}",
        "for a, w in zip(h, _W2):",
        "    if a > 0:",
        "        r += a * w",
        # predict(): the logistic output above 0.5 (never for r <= 0, and no overflow).
        "return int(r > 0 and 1.0 / (1.0 + math.exp(-r)) > 0.5)",
    ]
    return f.features.program(body, helpers, listed=True)


def _stored(f: FittedLearner, points: np.ndarray) -> str:
    """Training points as f computes inputs: their bits, then their numbers."""
    split = [f.features.split(p) for p in points]
    zs = "".join(f"    {_floats(z)},\n" for _, z in split)
    return f"_B = ({''.join(f'{b}, ' for b, _ in split)})\n_Z = (\n{zs})"


def _distance(f: FittedLearner, term: str) -> tuple[list[str], str, list[str]]:
    """The distance ``d`` from the input to a stored point (b, numbers): the indicators'
    mismatches, then each number's ``term`` (of ``{u}``, the input's, and ``{v}``, the
    point's), added in column order as scikit-learn adds them. Returns the lines that
    unpack the input's numbers, the loop's target for a point's, and the loop's lines."""
    n = len(f.features.numbers)
    lines = ["    d = float((bits ^ b).bit_count())"]
    lines += [f"    d += {term.format(u=f'u{j}', v=f'v{j}')}" for j in range(n)]
    if not n:
        return [], "zs", lines
    return [f"{_names('u', n)}= z"], f"({_names('v', n)})", lines


def _names(prefix: str, n: int) -> str:
    return "".join(f"{prefix}{j}, " for j in range(n))


def _svm(f: FittedLearner) -> str:
    m = f.model
    gamma = -float(m._gamma)
    # libsvm's decision: sum of coef * exp(-gamma * |x - sv|^2), class by class, minus rho;
    # above 0 is the first class.
    helpers = f"{_stored(f, m.support_vectors_)}\n_C = {_floats(m._dual_coef_[0])}"
    if f.features.numbers:
        unpack, point, distance = _distance(f, "({u} - {v}) * ({u} - {v})")
        kernel = [
            *unpack,
            f"for b, {point}, c in zip(_B, _Z, _C):",
            *distance,
            f"    s += c * math.exp({gamma!r} * d)",
        ]
    else:  # distances are whole numbers: the kernel's values, computed once, as libsvm does
        width = len(f.features.indicators)
        helpers += f"\n_K = tuple(math.exp({gamma!r} * float(d)) for d in range({width + 1}))"
        kernel = ["for b, c in zip(_B, _C):", "    s += c * _K[(bits ^ b).bit_count()]"]
    body = [
        "s = 0.0",
        *kernel,
        f"s -= {float(-m._intercept_[0])!r}",
        f"return {int(m.classes_[0])} if s > 0 else {int(m.classes_[1])}",
    ]
    return f.features.program(body, helpers)


def _knn(f: FittedLearner) -> str:
    m = f.model
    labels = m.classes_[m._y]
    helpers = f"{_stored(f, m._fit_X)}\n_Y = ({''.join(f'{int(v)}, ' for v in labels)})"
    k = m.n_neighbors
    # scikit-learn's search: each training point in order is pushed onto a max-heap of
    # the k nearest (utils/_heap.pyx), which decides which of several points at the same
    # distance are kept; the vote is then a majority of k (odd: never tied).
    unpack, point, distance = _distance(f, "abs({u} - {v})")
    body = [
        f"hv = [{MAX_FLOAT!r}] * {k}",
        f"hi = [-1] * {k}",
        *unpack,
        f"for i, (b, {point}) in enumerate(zip(_B, _Z)):",
        *distance,
        "    if d >= hv[0]:",
        "        continue",
        "    c = 0",
        "    while True:",
        "        left = 2 * c + 1",
        f"        if left >= {k}:",
        "            break",
        f"        if left + 1 >= {k} or hv[left] >= hv[left + 1]:",
        "            s = left",
        "        else:",
        "            s = left + 1",
        f"        if not (hv[s] > d if left + 1 >= {k} else d < hv[s]):",
        "            break",
        "        hv[c], hi[c] = hv[s], hi[s]",
        "        c = s",
        "    hv[c], hi[c] = d, i",
        f"return int(2 * sum(_Y[i] for i in hi) > {k})",
    ]
    return f.features.program(body, helpers)


def _forest(f: FittedLearner) -> str:
    lines, tests = ["p0 = p1 = 0.0"], []
    for est in f.model.estimators_:
        value = est.tree_.value[:, 0, :]
        proba = value / value.sum(axis=1, keepdims=True)  # as predict_proba computes it
        tree_lines, tree_tests = tree.sklearn_tree_lines(
            est,
            f.features.encoders,
            lambda node, p=proba: [f"p0 += {float(p[node, 0])!r}", f"p1 += {float(p[node, 1])!r}"],
        )
        lines += tree_lines
        tests += tree_tests
    n = len(f.model.estimators_)
    lines += [f"p0 /= {n}", f"p1 /= {n}", "return int(p1 > p0)"]
    return program(lines, tests)


def _boosting(f: FittedLearner) -> str:
    m, encoders = f.model, f.features.encoders
    lines, tests = [f"r = {float(m._baseline_prediction.ravel()[0])!r}"], []
    for (predictor,) in m._predictors:
        nodes = predictor.nodes

        def children(node, nodes=nodes):
            return None if nodes["is_leaf"][node] else (int(nodes["left"][node]), int(nodes["right"][node]))

        def test(node, nodes=nodes):
            return encoders[nodes["feature_idx"][node]].split(nodes["num_threshold"][node])

        tree_lines, tree_tests = tree.nested(
            0, children, test, lambda node, nodes=nodes: [f"r += {float(nodes['value'][node])!r}"]
        )
        lines += tree_lines
        tests += tree_tests
    lines += [
        # predict(): the larger of 1 - p and p = expit(r) (never class 1 for r <= 0).
        "if r <= 0:",
        "    return 0",
        "p = 1.0 / (1.0 + math.exp(-r))",
        "return int(p > 1.0 - p)",
    ]
    code = program(lines, tests)
    return code if code.startswith("import math") else "import math\n\n\n" + code


EMITTERS = {
    "logreg": _logreg,
    "forest": _forest,
    "boosting": _boosting,
    "mlp": _mlp,
    "svm": _svm,
    "knn": _knn,
}
# What bounds each program's size, recorded with it.
SIZES = {
    "logreg": lambda m: {"weights": int(m.coef_.size)},
    "forest": lambda m: {
        "trees": len(m.estimators_),
        "nodes": sum(int(e.tree_.node_count) for e in m.estimators_),
    },
    "boosting": lambda m: {"trees": len(m._predictors), "nodes": sum(len(p.nodes) for (p,) in m._predictors)},
    "mlp": lambda m: {"weights": int(sum(w.size for w in m.coefs_))},
    "svm": lambda m: {"support_vectors": int(len(m.support_))},
    "knn": lambda m: {"stored_points": int(m.n_samples_fit_), "n_neighbors": int(m.n_neighbors)},
}
