"""The binary-string tasks (fn_a..fn_h, fn_j, fn_l), per TASKS.md: labels, generators.

Labels are computed on a (count, L) uint8 matrix of bits, a whole batch at a time;
``Task.label`` labels one string through the same code, so the generators and everyone
else agree on the truth by construction. The one exception is dyck2, whose batch check
is too slow for one string: its label is the plain stack rule, tested equal to it.

Capacities count distinct inputs a generator can produce at a length: all strings of
the class, except palindrome negatives (palindromes with one flip in the first half)
and dyck2 negatives (balanced words with 1..5 flips), where only those are reachable.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from hashlib import sha256

import numpy as np

from synth.datasets.generators import dyck
from synth.datasets.generators.base import (
    DEFAULT_LENGTHS,
    MAX_ROUNDS,
    Generator,
    Task,
    bits_to_strings,
    fill_by_label,
    random_bits,
)
from synth.datasets.generators.positions import positions
from synth.errors import InfeasibleError

# A capacity above this is reported as None ("more than any split we would ask for").
CAPACITY_LIMIT = 10**7
DYCK_LENGTHS = (100, 80, 60, 40, 20)
RULE30 = np.array([0, 1, 1, 1, 1, 0, 0, 0], dtype=np.uint8)
# Positives of sha256_parity among all 2**L strings, L = 1..24, counted once by
# enumeration (they are checked again by the tests for small L). From L = 25 on each
# class has about 2**(L-1) > 10**7 members.
SHA256_POSITIVES = (
    1,
    3,
    5,
    8,
    19,
    31,
    64,
    138,
    252,
    500,
    1033,
    2067,
    4152,
    8092,
    16407,
    32707,
    65432,
    130874,
    262406,
    523956,
    1049262,
    2097393,
    4195999,
    8390034,
)
# dyck2 negatives are counted by enumeration up to L=20. Every length from 24 on has
# more than 10**7 (10,896,890 at L=24; appending "()" maps those at L into L+4).
DYCK_ENUMERATED = 20

Labels = Callable[[np.ndarray], np.ndarray]
Draw = Callable[[np.random.Generator, int], np.ndarray]
Pair = tuple[list[str], list[str]]


def to_bits(xs: list[str]) -> np.ndarray:
    """Equal-length '0'/'1' strings as a (count, L) uint8 matrix (bits_to_strings
    reversed)."""
    width = len(xs[0]) if xs else 0
    raw = np.frombuffer("".join(xs).encode("ascii"), dtype=np.uint8)
    return (raw - ord("0")).reshape(len(xs), width)


# --- labels: (count, L) bits -> (count,) 0/1 ----------------------------------------


def _parity(columns: Callable[[int], slice | list[int]]) -> Labels:
    """Parity of the bits at ``columns(L)``."""
    return lambda bits: np.bitwise_xor.reduce(bits[:, columns(bits.shape[1])], axis=1)


def _contains(pattern: str) -> Labels:
    """Whether ``pattern`` occurs: each window of 8 bits read as one byte."""
    width, code = len(pattern), int(pattern, 2)

    def labels(bits: np.ndarray) -> np.ndarray:
        count, length = bits.shape
        windows = np.zeros((count, max(length - width + 1, 0)), dtype=np.uint8)
        for j in range(width):
            windows = (windows << 1) | bits[:, j : j + windows.shape[1]]
        return (windows == code).any(axis=1)

    return labels


def _palindrome(bits: np.ndarray) -> np.ndarray:
    return (bits == bits[:, ::-1]).all(axis=1)


def _automata_parity(bits: np.ndarray) -> np.ndarray:
    """One rule-30 step over the string padded with a 0 on each side, then parity."""
    padded = np.pad(bits, ((0, 0), (1, 1)))
    windows = 4 * padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]
    return np.bitwise_xor.reduce(RULE30[windows], axis=1)


def _sha256_parity(bits: np.ndarray) -> np.ndarray:
    """Parity of the 1 bits of SHA-256 over each row's ASCII string."""
    count, length = bits.shape
    raw = (bits + ord("0")).astype(np.uint8).tobytes()
    return np.fromiter(
        (
            int.from_bytes(sha256(raw[i : i + length]).digest(), "big").bit_count() & 1
            for i in range(0, count * length, length)
        ),
        dtype=np.uint8,
        count=count,
    )


def _one(labels: Labels) -> Callable[[str], int]:
    """label(x) for a single string, through the batch code."""
    return lambda x: int(labels(to_bits([x]))[0])


# --- generators ---------------------------------------------------------------------


def _collect(
    rng: np.random.Generator,
    n: int,
    draw: Draw,
    keep: Labels | None = None,
    *,
    unique: bool,
    what: str,
) -> list[str]:
    """``n`` strings of one class from batches ``draw(rng, k)``, rows kept where
    ``keep(bits)`` holds; with ``unique`` each string once (first come).

    The one-class counterpart of ``fill_by_label``, for classes drawn by their own
    process (planted patterns, bracket walks) rather than filtered from one stream.
    """
    kept: list[str] = []
    seen: set[str] = set()
    batch = max(64, 2 * n)
    for _ in range(MAX_ROUNDS):
        if len(kept) >= n:
            return kept[:n]
        bits = draw(rng, batch)
        if keep is not None:
            bits = bits[keep(bits)]
        for x in bits_to_strings(bits):
            if unique:
                if x in seen:
                    continue
                seen.add(x)
            kept.append(x)
    raise InfeasibleError(f"could not draw {n} {what} (got {len(kept)} after {MAX_ROUNDS} rounds)")


def _filtered(labels: Labels) -> Generator:
    """Uniform random strings, each kept in the class its label says; inputs unique."""

    def generate(L: int, n: int, rng: np.random.Generator) -> Pair:
        return fill_by_label(
            rng,
            n,
            lambda r, k: bits_to_strings(random_bits(r, k, L)),
            lambda xs: labels(to_bits(xs)),
            what=f"strings of length {L}",
        )

    return generate


def _planted(pattern: str, unique: bool) -> Generator:
    """Positives: uniform strings with ``pattern`` written over a uniform window.
    Negatives: uniform strings without it."""
    contains = _contains(pattern)
    bits_of_pattern = to_bits([pattern])[0]
    width = len(pattern)

    def with_pattern(rng: np.random.Generator, k: int, L: int) -> np.ndarray:
        bits = random_bits(rng, k, L)
        start = rng.integers(0, L - width + 1, size=k)
        bits[np.arange(k)[:, None], start[:, None] + np.arange(width)] = bits_of_pattern
        return bits

    def generate(L: int, n: int, rng: np.random.Generator) -> Pair:
        pos = _collect(
            rng,
            n,
            lambda r, k: with_pattern(r, k, L),
            unique=unique,
            what=f"strings of length {L} with {pattern}",
        )
        neg = _collect(
            rng,
            n,
            lambda r, k: random_bits(r, k, L),
            lambda bits: ~contains(bits),
            unique=unique,
            what=f"strings of length {L} without {pattern}",
        )
        return pos, neg

    return generate


def _palindromes(L: int, n: int, rng: np.random.Generator) -> Pair:
    """Positives: a random first half, mirrored. Negatives: each positive with one bit
    flipped among its first floor(L/2) positions, paired as in the published code.
    Deviation: that code could flip the middle bit of an odd L (still a palindrome)."""
    first = random_bits(rng, n, (L + 1) // 2)
    pos = np.concatenate([first, first[:, : L // 2][:, ::-1]], axis=1)
    neg = pos.copy()
    neg[np.arange(n), rng.integers(0, L // 2, size=n)] ^= 1
    return bits_to_strings(pos), bits_to_strings(neg)


def _dyck_unique(L: int) -> bool:
    """Only 1,344 balanced words of 20 bits exist: the published generator allows
    duplicates at L=20, and only there."""
    return L != 20


def _dyck_words(L: int, n: int, rng: np.random.Generator) -> Pair:
    """Positives: balanced words by the published walk. Negatives: fresh words with
    1..5 flips, kept only if no longer balanced."""
    unique = _dyck_unique(L)
    pos = _collect(
        rng,
        n,
        lambda r, k: dyck.sample_words(r, k, L),
        unique=unique,
        what=f"balanced words of length {L}",
    )
    neg = _collect(
        rng,
        n,
        lambda r, k: dyck.corrupt(r, dyck.sample_words(r, k, L)),
        lambda bits: ~dyck.balanced(bits),
        unique=unique,
        what=f"corrupted words of length {L}",
    )
    return pos, neg


# --- length rules and capacities ------------------------------------------------------


def _at_least(target: str, minimum: int, reason: str) -> Callable[[int], str | None]:
    def rule(L: int) -> str | None:
        if L < minimum:
            return f"{target} needs L >= {minimum} ({reason}); got L={L}"
        return None

    return rule


def _dyck_rule(L: int) -> str | None:
    if L < 1 or L % 4:
        return f"dyck2 needs a positive multiple of 4 (2 bits a bracket, brackets in pairs); got L={L}"
    return None


def _capped(count: int) -> int | None:
    return count if count <= CAPACITY_LIMIT else None


def _halves(L: int) -> tuple[int | None, int | None]:
    """A parity of at least one bit: exactly half of all strings in each class."""
    half = _capped(2 ** (L - 1))
    return half, half


@cache
def _avoiding(pattern: str, L: int) -> int:
    """Strings of length L in which ``pattern`` does not occur: a count over the states
    of the pattern's matching automaton (how long a prefix of it the string ends in)."""

    def advance(state: int, bit: str) -> int:
        text = pattern[:state] + bit
        while not pattern.startswith(text):
            text = text[1:]
        return len(text)

    width = len(pattern)
    moves = [[advance(state, bit) for bit in "01"] for state in range(width)]
    counts = [1] + [0] * (width - 1)
    for _ in range(L):
        nxt = [0] * width
        for state, count in enumerate(counts):
            for to in moves[state]:
                if to < width:
                    nxt[to] += count
        counts = nxt
    return sum(counts)


def _pattern_capacity(pattern: str) -> Callable[[int], tuple[int | None, int | None]]:
    def capacity(L: int) -> tuple[int | None, int | None]:
        without = _avoiding(pattern, L)
        return _capped(2**L - without), _capped(without)

    return capacity


def _palindrome_capacity(L: int) -> tuple[int | None, int | None]:
    palindromes = 2 ** ((L + 1) // 2)
    return _capped(palindromes), _capped(palindromes * (L // 2))


def _dyck_capacity(L: int) -> tuple[int | None, int | None]:
    if L > DYCK_ENUMERATED:
        return _capped(dyck.count_words(L)), None
    return _capped(dyck.count_words(L)), _capped(dyck.count_corruptions(L))


@cache
def _automata_capacity(L: int) -> tuple[int | None, int | None]:
    """Exact class sizes: a count over states (previous bit, current bit, parity so far)
    while the string grows, closing with the right padding 0."""
    counts = {(0, bit, 0): 1 for bit in (0, 1)}  # left padding 0, first bit
    for _ in range(L - 1):
        nxt: dict[tuple[int, int, int], int] = {}
        for (left, centre, parity), count in counts.items():
            for right in (0, 1):
                out = int(RULE30[4 * left + 2 * centre + right])
                key = (centre, right, parity ^ out)
                nxt[key] = nxt.get(key, 0) + count
        counts = nxt
    ones = [0, 0]
    for (left, centre, parity), count in counts.items():
        ones[parity ^ int(RULE30[4 * left + 2 * centre])] += count
    return _capped(ones[1]), _capped(ones[0])


def _sha256_capacity(L: int) -> tuple[int | None, int | None]:
    if L > len(SHA256_POSITIVES):
        return None, None
    positives = SHA256_POSITIVES[L - 1]
    return _capped(positives), _capped(2**L - positives)


# --- the tasks ------------------------------------------------------------------------


def _task(
    id: str,
    target: str,
    labels: Labels,
    generate: Generator,
    capacity: Callable[[int], tuple[int | None, int | None]],
    length_rule: Callable[[int], str | None] | None = None,
    unique: Callable[[int], bool] = lambda L: True,
    default_lengths: tuple[int, ...] = DEFAULT_LENGTHS,
    label: Callable[[str], int] | None = None,
    reads: Callable[[int], slice | list[int]] | None = None,
) -> Task:
    """A binary Task whose generate() refuses what length_rule and capacity rule out,
    instead of drawing for MAX_ROUNDS rounds before giving up. ``label`` defaults to
    the batch ``labels`` applied to one string."""
    rule = length_rule or _at_least(target, 1, "a string has at least one bit")

    def checked(L: int, n: int, rng: np.random.Generator) -> Pair:
        problem = rule(L)
        if problem:
            raise InfeasibleError(problem)
        if unique(L):
            for have, name in zip(capacity(L), ("positive", "negative")):
                if have is not None and n > have:
                    raise InfeasibleError(
                        f"{target} at L={L} has only {have} distinct {name} inputs, {n} asked for"
                    )
        return generate(L, n, rng)

    return Task(
        id=id,
        target=target,
        kind="binary",
        default_lengths=default_lengths,
        generate=checked,
        label=label or _one(labels),
        length_rule=rule,
        capacity=capacity,
        unique=unique,
        labels=lambda xs: labels(to_bits(xs)),
        reads=reads,
    )


def _parity_task(
    id: str,
    target: str,
    columns: Callable[[int], slice | list[int]],
    rule: Callable[[int], str | None] | None = None,
    per_length: bool = False,
) -> Task:
    """A parity task; ``per_length``: its columns depend on L (see Task.reads)."""
    labels = _parity(columns)
    return _task(id, target, labels, _filtered(labels), _halves, rule, reads=columns if per_length else None)


def _pattern_task(id: str, target: str, pattern: str, unique: bool) -> Task:
    return _task(
        id,
        target,
        _contains(pattern),
        _planted(pattern, unique),
        _pattern_capacity(pattern),
        _at_least(target, len(pattern), f"the length of its pattern {pattern}"),
        lambda L: unique,
    )


TASKS: list[Task] = [
    _parity_task("fn_a", "parity_all", lambda L: slice(None)),
    _parity_task(
        "fn_b",
        "parity_first_half",
        lambda L: slice(0, L // 2),
        _at_least("parity_first_half", 2, "its first half must not be empty"),
        per_length=True,
    ),
    _pattern_task("fn_c", "patternmatch1", "10101010", unique=True),
    _pattern_task("fn_d", "patternmatch2", "00111111", unique=False),
    _parity_task(
        "fn_e",
        "parity_rand_3",
        lambda L: list(positions(L, 3)),
        _at_least("parity_rand_3", 3, "it reads 3 distinct positions"),
        per_length=True,
    ),
    _parity_task(
        "fn_f",
        "parity_rand_10",
        lambda L: list(positions(L, 10)),
        _at_least("parity_rand_10", 10, "it reads 10 distinct positions"),
        per_length=True,
    ),
    _task(
        "fn_g",
        "palindrome",
        _palindrome,
        _palindromes,
        _palindrome_capacity,
        _at_least("palindrome", 2, "every string of length 1 is a palindrome"),
        unique=lambda L: False,
    ),
    _task(
        "fn_h",
        "dyck2",
        dyck.balanced,
        _dyck_words,
        _dyck_capacity,
        _dyck_rule,
        unique=_dyck_unique,
        default_lengths=DYCK_LENGTHS,
        label=lambda x: int(dyck.is_balanced(x)),
    ),
    _task(
        "fn_j",
        "automata_parity",
        _automata_parity,
        _filtered(_automata_parity),
        _automata_capacity,
    ),
    _task(
        "fn_l",
        "sha256_parity",
        _sha256_parity,
        _filtered(_sha256_parity),
        _sha256_capacity,
    ),
]
