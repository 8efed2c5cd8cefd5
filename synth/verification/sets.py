"""The evaluation sets a program is verified on, each streamed in chunks of inputs with
their labels under every reading, so that a million inputs are never held at once.

- balanced: a stored dataset's test split (built like every dataset, from a seed domain
  of its own: see ``verify_seed``);
- exhaustive: every binary string of the length, in lexicographic order;
- sample: uniform random inputs of the length (for decimal: no leading zero; for
  graphs: floor(L/6) edges between uniform ids 01..99, padded as the generator pads);
- population: every row of a tabular task's source table, encoded as the run's dataset
  encoded its rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from synth.datasets.generators import graph
from synth.datasets.generators.base import bits_to_strings, random_bits
from synth.verification.readings import Labeller

# Inputs per sandboxed evaluation: a fork per 65,536 rows costs little, and bounds the
# parent's memory (strings, payload, labels) whatever the set's size.
CHUNK = 1 << 16

Chunk = tuple[list[str], dict[str, np.ndarray]]


@dataclass(frozen=True)
class EvalSet:
    kind: str  # balanced, exhaustive, sample or population
    key: str  # what makes it this set among the program's sets at its length
    length: int
    size: int
    chunks: Callable[[], Iterator[Chunk]]
    dataset_id: int | None = None


def verify_seed(*parts) -> int:
    """A seed of verify's own domain (31 bits, as derived dataset seeds): no training,
    validation or test data is drawn from it."""
    key = "|".join(map(str, ("verify", *parts)))
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") & 0x7FFFFFFF


def labelled(
    inputs: list[str], readings: dict[str, Labeller], known: dict[str, np.ndarray] | None = None
) -> Chunk:
    """The inputs with their labels under every reading; ``known``: labels already at
    hand for some readings (a stored split's), used instead of labelling again."""
    known = known or {}
    return inputs, {
        rule: known[rule] if rule in known else np.asarray(label(inputs), dtype=np.uint8)
        for rule, label in readings.items()
    }


def listed(
    kind: str,
    key: str,
    length: int,
    size: int,
    make: Callable[[], tuple[list[str], dict[str, np.ndarray]]],
    **kw,
) -> EvalSet:
    """A set made whole (a balanced split, a source table), then streamed in chunks;
    made only when it is checked: a verify run again, finding it stored, never labels
    or encodes it."""

    def chunks() -> Iterator[Chunk]:
        inputs, labels = make()
        for start in range(0, len(inputs), CHUNK):
            end = start + CHUNK
            yield inputs[start:end], {rule: truth[start:end] for rule, truth in labels.items()}

    return EvalSet(kind, key, length, size, chunks, **kw)


def exhaustive(length: int, readings: dict[str, Labeller]) -> EvalSet:
    """All 2**length binary strings, built chunk by chunk from their numbers."""
    total = 1 << length
    shifts = np.arange(length - 1, -1, -1, dtype=np.int64)

    def chunks() -> Iterator[Chunk]:
        for start in range(0, total, CHUNK):
            numbers = np.arange(start, min(start + CHUNK, total), dtype=np.int64)
            yield labelled(bits_to_strings(((numbers[:, None] >> shifts) & 1).astype(np.uint8)), readings)

    return EvalSet("exhaustive", "exhaustive", length, total, chunks)


def sample(kind: str, length: int, n: int, seed: int, readings: dict[str, Labeller]) -> EvalSet:
    """``n`` uniform random inputs of ``kind`` and ``length``, drawn chunk by chunk."""

    def chunks() -> Iterator[Chunk]:
        rng = np.random.Generator(np.random.PCG64(seed))
        for start in range(0, n, CHUNK):
            yield labelled(_uniform(kind, length, min(CHUNK, n - start), rng), readings)

    return EvalSet("sample", f"sample:{n}", length, n, chunks)


def _uniform(kind: str, length: int, count: int, rng: np.random.Generator) -> list[str]:
    if kind == "binary":
        return bits_to_strings(random_bits(rng, count, length))
    if kind == "decimal":
        digits = rng.integers(0, 10, size=(count, length), dtype=np.uint8)
        digits[:, 0] = rng.integers(1, 10, size=count, dtype=np.uint8)
        return bits_to_strings(digits)
    edges = length // 6
    ids = rng.integers(1, 100, size=(count, edges, 2))
    tail = graph.PADDING[: length - 6 * edges]
    return ["".join(f"u{a:02d}v{b:02d}" for a, b in row) + tail for row in ids.tolist()]
