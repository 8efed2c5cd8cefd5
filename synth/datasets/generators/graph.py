"""The graph task fn_aa graph_has_cycle: does an edge list hold more independent cycles
than its size allows by chance?

An input of L characters encodes E = floor(L/6) undirected edges of six characters,
``u``, two digits, ``v``, two digits (``u12v07`` is the edge 12-07); ``u00v00`` is padding.
With E' the non-padding edges, V their distinct vertices and C their connected
components, cycle_count = E' - V + C, and the label is 1 when
cycle_count > max(1, E'//6).

As in the published generator (arXiv 2510.14331), every graph has V = E vertices and E
edges:

- positives: floor(E/3) disjoint triangles; when E % 3 == 2 the two spare vertices get
  an edge, and when E % 3 >= 1 one more edge joins two vertices of different triangles.
  (The published code adds random new edges between triangle vertices, meant to stay
  "inside existing components"; triangles are complete, so such an edge always links two
  triangles.) cycle_count is floor(E/3) for every positive;
- negatives: a random recursive tree (vertex i hangs from a uniform earlier vertex) plus
  one uniform non-edge: a single component with cycle_count 1;
- then each graph's vertices get random distinct ids from 01..99, each edge a random
  direction, and the edges are shuffled; a graph is kept by its computed label (always
  its intended class from L = 36 on) and inputs are distinct.

Decisions where TASKS.md leaves room:

- The L - 6E characters after the last edge are the first L - 6E characters of a padding
  edge ``u00v00`` (L = 100 ends in ``u00v``); the label reads only the first 6E.
- L must lie in [36, 599]: below 36 (E < 6) positives have floor(E/3) <= 1 = threshold,
  so none exists (the published generator loops forever); above 599 a graph needs more
  than the 99 two-digit ids.
- The published generator also shuffles vertices before building; the random ids that
  follow make that shuffle change nothing in distribution, so it is left out.

Labels are computed for whole batches: the graphs are parsed from their strings with
numpy and their components found by min-label propagation with pointer jumping.
"""

from __future__ import annotations

import numpy as np

from synth.datasets.generators.base import MAX_ROUNDS, Task, fill_by_label
from synth.errors import InfeasibleError

ID = "fn_aa"
TARGET = "graph_has_cycle"
PADDING = "u00v00"
MIN_LENGTH = 36  # E >= 6: the smallest E with floor(E/3) > max(1, E//6)
MAX_LENGTH = 599  # E <= 99: one two-digit id per vertex


def length_rule(L: int) -> str | None:
    if L < MIN_LENGTH:
        return (
            f"{ID} ({TARGET}) needs L >= {MIN_LENGTH}, got L={L}: with fewer than 6 edges "
            "no graph of disjoint triangles exceeds the threshold max(1, E//6), so the "
            "positive class cannot be drawn (the published generator hangs there)"
        )
    if L > MAX_LENGTH:
        return (
            f"{ID} ({TARGET}) needs L <= {MAX_LENGTH}, got L={L}: a graph uses "
            "floor(L/6) vertices and there are only 99 two-digit ids (01..99)"
        )
    return None


def label(x: str) -> int:
    return int(labels([x])[0])


def labels(xs: list[str]) -> np.ndarray:
    """0/1 labels of equal-length graph strings, computed for the whole batch at once."""
    u, v = _parse(xs)
    real = (u != 0) | (v != 0)
    return (_cycle_counts(u, v, real) > np.maximum(1, real.sum(axis=1) // 6)).astype(np.int8)


def generate(L: int, n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    if reason := length_rule(L):
        raise InfeasibleError(reason)
    E = L // 6

    def draw(rng: np.random.Generator, k: int) -> list[str]:
        u1, v1 = _triangles(rng, k // 2, E)
        u0, v0 = _tree_plus_edge(rng, k - k // 2, E)
        return _encode(rng, np.vstack([u1, u0]), np.vstack([v1, v0]), L)

    return fill_by_label(rng, n, draw, labels, what=f"{ID} graphs at L={L}")


def _parse(xs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Edge endpoints of each string as two (len(xs), E) arrays of ids 0..99."""
    L = len(xs[0])
    E = L // 6
    chars = np.frombuffer("".join(xs).encode("ascii"), dtype=np.uint8).reshape(len(xs), L)
    digits = chars[:, : 6 * E].reshape(len(xs), E, 6)[:, :, [1, 2, 4, 5]].astype(np.intp)
    digits -= ord("0")
    if digits.size and not (digits.min() >= 0 and digits.max() <= 9):
        raise ValueError(f"not a {ID} graph string: edges are 'u', two digits, 'v', two digits")
    return digits[:, :, 0] * 10 + digits[:, :, 1], digits[:, :, 2] * 10 + digits[:, :, 3]


def _cycle_counts(u: np.ndarray, v: np.ndarray, real: np.ndarray) -> np.ndarray:
    """E' - V + C per row; vertices and components count only the ``real`` edges."""
    m = u.shape[0]
    row, col = np.nonzero(real)
    # Vertex id i of row r is node 100 * r + i of one graph holding all rows.
    a, b = 100 * row + u[row, col], 100 * row + v[row, col]
    present = np.zeros(100 * m, dtype=bool)
    present[a] = present[b] = True
    # Every node ends labelled with the smallest node of its component.
    node = np.arange(100 * m)
    root = node
    while True:
        low = np.minimum(root[a], root[b])
        new = root.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, root):
            break
        root = new
    vertices = present.reshape(m, 100).sum(axis=1)
    components = (present & (root == node)).reshape(m, 100).sum(axis=1)
    return real.sum(axis=1) - vertices + components


def _triangles(rng: np.random.Generator, m: int, E: int) -> tuple[np.ndarray, np.ndarray]:
    """m positive graphs on vertices 0..E-1: disjoint triangles, then the spare edges."""
    t, spare = divmod(E, 3)
    tri = np.arange(3 * t).reshape(t, 3)
    u = [np.broadcast_to(tri.ravel(), (m, 3 * t))]
    v = [np.broadcast_to(np.roll(tri, -1, axis=1).ravel(), (m, 3 * t))]
    if spare == 2:
        u.append(np.full((m, 1), 3 * t))
        v.append(np.full((m, 1), 3 * t + 1))
    if spare:
        # A uniform pair of vertices in different triangles: y skips x's triangle.
        x = rng.integers(0, 3 * t, m)
        y = rng.integers(0, 3 * t - 3, m)
        y += 3 * (y >= x - x % 3)
        u.append(x[:, None])
        v.append(y[:, None])
    return np.hstack(u), np.hstack(v)


def _tree_plus_edge(rng: np.random.Generator, m: int, E: int) -> tuple[np.ndarray, np.ndarray]:
    """m negative graphs on vertices 0..E-1: a random recursive tree and one non-edge."""
    child = np.arange(1, E)
    parent = rng.integers(0, child, size=(m, E - 1))
    up = np.hstack([np.full((m, 1), -1), parent])  # up[i] = parent of vertex i, root -1
    x, y = np.empty(m, dtype=np.intp), np.empty(m, dtype=np.intp)
    todo = np.arange(m)
    for _ in range(MAX_ROUNDS):  # at least 2/3 of the pairs are non-edges for E >= 6
        if not todo.size:
            break
        a = rng.integers(0, E, todo.size)
        b = rng.integers(0, E - 1, todo.size)
        b += b >= a
        adjacent = (up[todo, a] == b) | (up[todo, b] == a)
        x[todo[~adjacent]], y[todo[~adjacent]] = a[~adjacent], b[~adjacent]
        todo = todo[adjacent]
    if todo.size:
        raise InfeasibleError(f"{ID}: could not add a cycle edge to {todo.size} trees")
    return (
        np.hstack([parent, x[:, None]]),
        np.hstack([np.broadcast_to(child, (m, E - 1)), y[:, None]]),
    )


def _encode(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, L: int) -> list[str]:
    """Graph strings of length L: random ids, random directions, shuffled edges."""
    m, E = u.shape
    ids = rng.permuted(np.tile(np.arange(1, 100), (m, 1)), axis=1)
    rows = np.arange(m)[:, None]
    a, b = ids[rows, u], ids[rows, v]
    flip = rng.integers(0, 2, size=(m, E), dtype=bool)
    a, b = np.where(flip, b, a), np.where(flip, a, b)
    order = rng.permuted(np.tile(np.arange(E), (m, 1)), axis=1)
    return edge_strings(np.take_along_axis(a, order, axis=1), np.take_along_axis(b, order, axis=1), L)


def edge_strings(a: np.ndarray, b: np.ndarray, L: int) -> list[str]:
    """Strings of length L of the edges a[i, j]-b[i, j] (ids 1..99), padded as inputs are."""
    m, E = a.shape
    chars = np.empty((m, E, 6), dtype=np.uint8)
    chars[:, :, 0], chars[:, :, 3] = ord("u"), ord("v")
    chars[:, :, 1], chars[:, :, 2] = ord("0") + a // 10, ord("0") + a % 10
    chars[:, :, 4], chars[:, :, 5] = ord("0") + b // 10, ord("0") + b % 10
    filler = np.frombuffer(PADDING[: L - 6 * E].encode("ascii"), dtype=np.uint8)
    text = np.hstack([chars.reshape(m, 6 * E), np.tile(filler, (m, 1))]).tobytes().decode("ascii")
    return [text[i : i + L] for i in range(0, len(text), L)]


TASKS: list[Task] = [
    Task(
        id=ID,
        target=TARGET,
        kind="graph",
        default_lengths=(100, 50),
        generate=generate,
        label=label,
        length_rule=length_rule,
        labels=labels,
    )
]
