"""The graph task fn_aa: labels, data, length rule."""

import hashlib
import re

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from synth.datasets.generators import graph
from synth.errors import InfeasibleError

(TASK,) = graph.TASKS


def cycle_count(x):
    """E' - V + C by scipy, an implementation independent of the module's."""
    edges = [(int(x[i + 1 : i + 3]), int(x[i + 4 : i + 6])) for i in range(0, len(x) - 5, 6)]
    edges = [e for e in edges if e != (0, 0)]
    if not edges:
        return 0
    vertices = sorted({v for e in edges for v in e})
    index = {v: i for i, v in enumerate(vertices)}
    rows, cols = zip(*[(index[a], index[b]) for a, b in edges])
    adjacency = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(vertices),) * 2)
    return len(edges) - len(vertices) + connected_components(adjacency, directed=False)[0]


def edges_of(*cycles_and_paths):
    """Edge string of vertex sequences: (1, 2, 3, 1) is a triangle, (4, 5, 6) a path."""
    return "".join(f"u{a:02d}v{b:02d}" for seq in cycles_and_paths for a, b in zip(seq, seq[1:]))


@pytest.fixture(scope="module", params=TASK.default_lengths, ids=lambda L: f"L{L}")
def dataset(request):
    """A full-size draw (5,100 per class, the default grid's) at one default length."""
    L = request.param
    pos, neg = TASK.generate(L, 5100, np.random.default_rng(L))
    return L, pos, neg


@pytest.mark.slow
def test_every_label_is_the_truth(dataset):
    _, pos, neg = dataset
    assert [x for x in pos if TASK.label(x) != 1] == []
    assert [x for x in neg if TASK.label(x) != 0] == []


@pytest.mark.slow
def test_graphs_have_the_published_structure(dataset):
    L, pos, neg = dataset
    E = L // 6
    # Positives: floor(E/3) independent cycles (the triangles); negatives: exactly one.
    assert {cycle_count(x) for x in pos} == {E // 3}
    assert {cycle_count(x) for x in neg} == {1}


def test_classes_are_full_distinct_and_well_formed(dataset):
    L, pos, neg = dataset
    E = L // 6
    assert len(pos) == len(neg) == 5100
    assert len(set(pos + neg)) == 10200
    edge = re.compile(r"u(\d\d)v(\d\d)")
    tail = graph.PADDING[: L - 6 * E]
    for x in pos + neg:
        assert len(x) == L and x.endswith(tail)
        pairs = [tuple(sorted(map(int, m))) for m in edge.findall(x[: 6 * E])]
        assert len(pairs) == E == len(set(pairs))  # no padding, no repeated edge
        assert all(0 < a < b <= 99 for a, b in pairs)  # ids 01..99, no self-loop


@pytest.mark.slow
def test_batch_labels_agree_with_an_independent_count_on_random_graphs():
    rng = np.random.default_rng(9)
    ids = rng.integers(0, 12, size=(2000, 12, 2))
    ids[rng.random((2000, 12)) < 0.2] = 0  # some padding edges
    xs = ["".join(f"u{a:02d}v{b:02d}" for a, b in row) for row in ids]
    real = [12 - x.count("u00v00") for x in xs]  # 'u' only starts an edge
    expected = [int(cycle_count(x) > max(1, e // 6)) for x, e in zip(xs, real)]
    assert graph.labels(xs).tolist() == expected
    assert 0.1 < np.mean(expected) < 0.9


TWO_TRIANGLES = edges_of((1, 2, 3, 1), (4, 5, 6, 4))


@pytest.mark.parametrize(
    "x, expected",
    [
        (TWO_TRIANGLES, 1),  # 2 cycles > max(1, 6//6)
        (edges_of((1, 2, 3, 4, 5, 6, 7)), 0),  # a path: a tree
        (edges_of((1, 2, 3, 1), (4, 5, 6, 7)), 0),  # a triangle and a path: 1 cycle
        (edges_of((1, 2, 3, 1), (4, 5, 6, 4), (7, 8, 9, 7), (10, 11, 12, 13)), 1),  # 3 > 2
        (edges_of((1, 2, 3, 1), (4, 5, 6, 4), (7, 8, 9, 10, 11, 12, 13)), 0),  # 2 > 2: no
        (edges_of((0, 5, 6, 0), (1, 2, 3, 1)), 1),  # vertex 00 outside padding counts
        (TWO_TRIANGLES + "u00v00" * 6, 1),  # E' = 6, threshold 1 (not 12 and 2)
        (edges_of((1, 2, 3, 1)) + "u00v00" * 6, 0),  # padding adds no vertex, no loop
        (TWO_TRIANGLES + "u00v", 1),  # the characters after the last edge are ignored
        (edges_of((1, 2, 3, 1), (4, 5, 6, 7)) + "u00v0", 0),
    ],
)
def test_labels_by_hand(x, expected):
    assert TASK.label(x) == expected


def test_a_malformed_string_is_refused():
    with pytest.raises(ValueError, match="not a fn_aa graph string"):
        TASK.label("u01v02u02v03u03v01u04v05u05v06u06vxx")


@pytest.mark.parametrize("L, bound", [(30, "L >= 36"), (35, "L >= 36"), (600, "L <= 599")])
def test_length_rule_refuses_what_cannot_be_drawn(L, bound):
    message = TASK.length_rule(L)
    assert f"fn_aa (graph_has_cycle) needs {bound}, got L={L}" in message
    with pytest.raises(InfeasibleError, match=bound):
        TASK.generate(L, 10, np.random.default_rng(0))


@pytest.mark.parametrize("L", [36, 41, 599])
def test_extreme_lengths_draw(L):
    assert TASK.length_rule(L) is None
    pos, neg = TASK.generate(L, 100, np.random.default_rng(0))
    assert graph.labels(pos).sum() == 100 and graph.labels(neg).sum() == 0


def test_same_seed_same_data_other_seed_other_data():
    first = TASK.generate(50, 300, np.random.default_rng(7))
    assert TASK.generate(50, 300, np.random.default_rng(7)) == first
    assert TASK.generate(50, 300, np.random.default_rng(8)) != first


# sha256 of "\n".join(positives + negatives) at L=36, n=50, default_rng(1234): a change
# here means the data of every run changes (bump Task.version when it is on purpose).
GOLDEN = "db4ccf40dd9c9256220cf9666da8eba10bc05d8eb6077cf7cd8b98dded546fbf"


def test_golden_data():
    pos, neg = TASK.generate(36, 50, np.random.default_rng(1234))
    assert hashlib.sha256("\n".join(pos + neg).encode()).hexdigest() == GOLDEN


def test_registry_entry():
    assert (TASK.id, TASK.target, TASK.kind, TASK.default_lengths) == (
        "fn_aa",
        "graph_has_cycle",
        "graph",
        (100, 50),
    )
    assert TASK.capacity(100) == (None, None) and TASK.unique(100)
