"""The decimal prime tasks: fn_i prime_decimal, fn_k prime_decimal_tf_check, fn_v prime_plus_47.

An input is a string of L decimal digits read as a number n. fn_i and fn_k label n 1
when it is prime; fn_v when n - 47 >= 2 and n - 47 is prime. The three differ only in an
offset (0, or 47 for fn_v) and in whether a negative's composite must end in 1, 3, 7 or 9
(fn_k, fn_v: so the last digit alone does not give the label away), so one generator
serves all three. As in the published generators (arXiv 2510.14331):

- positives: n = p + offset, p the next prime after a start drawn uniformly from
  [max(2, 10**(L-1) - offset), 10**L - offset - 2]; kept when n < 10**L;
- negatives: n = a*b + offset for a uniform floor(L/2)-digit a and ceil(L/2)-digit b;
  kept when n has L digits, the last-digit rule holds and label(n) is 0 (the published
  fn_v's "not prime" check; a product in range is always composite for fn_i and fn_k);
- positives are drawn first, then negatives; inputs are distinct.

Decisions where TASKS.md leaves room:

- fn_v's range is the published one: n has L digits with a non-zero leading digit, so the
  zero padding TASKS.md mentions never shows in generated inputs; label() still reads a
  zero-padded string as its number ("0050" -> 50 - 47 = 3, prime).
- Big random integers are drawn as decimal digits from the seeded Generator, a digit
  string past the interval being drawn again, so every interval is exactly uniform at
  any L.
- Primality is GMP's: gmpy2.next_prime for positives, gmpy2.is_prime for labels (both
  Baillie-PSW based, like the sympy calls of the published code). next_prime is the whole
  cost of generation: about 0.45 ms per prime at L=100, 2.3 s for 5,100 positives; a numpy
  pre-sieve in front of gmpy2's tests was measured and gains nothing, and gmpy2 keeps the
  GIL, so threads do not help either.
- capacity(L) is exact up to L = 8 (a sieve, and every product marked in a bitmap: about
  1.5 s and 200 MB at L = 8) and None above: from 9 digits on each class has more than
  10**7 members (fn_k's negatives, the fewest: the 2,000 four-digit a >= 5000 ending in
  1, 3, 7 or 9 times the 7,330 primes in [20000, 10**5) alone give 14.7 million distinct
  products).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gmpy2
import numpy as np

from synth.datasets.generators.base import DEFAULT_LENGTHS, MAX_ROUNDS, Task
from synth.errors import InfeasibleError

# Last digits a fn_k / fn_v negative's composite may end in: those every prime > 5 ends in.
TAIL_DIGITS = (1, 3, 7, 9)
# capacity() counts a class exactly up to this size; larger classes are None.
CAPACITY_LIMIT = 10**7
# Longest L whose classes are counted (sieve and products below 10**8).
EXACT_UP_TO = 8


@dataclass(frozen=True)
class PrimeTask:
    """What separates the three tasks: the offset, and the last-digit rule for negatives."""

    id: str
    target: str
    offset: int
    tail: bool

    def label(self, x: str) -> int:
        return int(self._positive(int(x)))

    def length_rule(self, L: int) -> str | None:
        if L >= 2:
            return None
        return (
            f"{self.id} ({self.target}) needs L >= 2, got L={L}: its negatives multiply "
            "a floor(L/2)-digit and a ceil(L/2)-digit number"
        )

    def capacity(self, L: int) -> tuple[int | None, int | None]:
        return _class_sizes(L, self.offset, self.tail)

    def generate(self, L: int, n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        if reason := self.length_rule(L):
            raise InfeasibleError(reason)
        at = f"{self.id} inputs at L={L}"
        pos = _collect(rng, n, lambda k: self._primes(rng, k, L), f"positive {at}")
        neg = _collect(rng, n, lambda k: self._products(rng, k, L), f"negative {at}")
        return [str(x) for x in pos], [str(x) for x in neg]

    def task(self) -> Task:
        return Task(
            id=self.id,
            target=self.target,
            kind="decimal",
            default_lengths=DEFAULT_LENGTHS,
            generate=self.generate,
            label=self.label,
            length_rule=self.length_rule,
            capacity=self.capacity,
        )

    def _positive(self, n: int) -> bool:
        m = n - self.offset
        return m >= 2 and bool(gmpy2.is_prime(m))

    def _primes(self, rng: np.random.Generator, k: int, L: int) -> Iterator[int]:
        """Positive candidates from k random starts, lazily: next_prime is the cost."""
        lo, hi = 10 ** (L - 1), 10**L
        for start in _uniform(rng, max(2, lo - self.offset), hi - self.offset - 2, k):
            n = int(gmpy2.next_prime(start)) + self.offset
            if n < hi:
                yield n

    def _products(self, rng: np.random.Generator, k: int, L: int) -> Iterator[int]:
        """Negative candidates from k random (a, b) pairs."""
        lo, hi, h = 10 ** (L - 1), 10**L, L // 2
        a = _uniform(rng, 10 ** (h - 1), 10**h - 1, k)
        b = _uniform(rng, 10 ** (L - h - 1), 10 ** (L - h) - 1, k)
        for c in map(int.__mul__, a, b):
            n = c + self.offset
            if lo <= n < hi and (not self.tail or c % 10 in TAIL_DIGITS) and not self._positive(n):
                yield n


def _uniform(rng: np.random.Generator, lo: int, hi: int, count: int) -> list[int]:
    """``count`` integers uniform on [lo, hi] at any size: the decimal digits of
    hi - lo wide strings from ``rng``, a string past the interval drawn again."""
    span = hi - lo + 1
    width = len(str(span - 1))
    out: list[int] = []
    for _ in range(MAX_ROUNDS):  # a round keeps over 10% of its strings
        raw = (rng.integers(0, 10, size=(count, width), dtype=np.uint8) + ord("0")).tobytes()
        values = map(int, (raw[i : i + width] for i in range(0, len(raw), width)))
        out.extend(lo + v for v in values if v < span)
        if len(out) >= count:
            return out[:count]
    raise InfeasibleError(f"could not draw {count} integers in [{lo}, {hi}]")


def _collect(
    rng: np.random.Generator, n: int, candidates: Callable[[int], Iterator[int]], what: str
) -> list[int]:
    """The first ``n`` distinct values from rounds of ``candidates(k)``, in draw order."""
    found: dict[int, None] = {}  # an insertion-ordered set
    for _ in range(MAX_ROUNDS):
        if len(found) == n:
            break
        for x in candidates(max(64, 2 * (n - len(found)))):
            found[x] = None
            if len(found) == n:
                break
    if len(found) < n:
        raise InfeasibleError(
            f"could not draw {n} distinct {what} (got {len(found)} after {MAX_ROUNDS} rounds)"
        )
    return list(found)


@functools.cache
def _class_sizes(L: int, offset: int, tail: bool) -> tuple[int | None, int | None]:
    """(positives, negatives) the generator can reach at L; None above CAPACITY_LIMIT."""
    if L < 2:
        return 0, 0
    if L > EXACT_UP_TO:
        return None, None
    lo, hi, h = 10 ** (L - 1), 10**L, L // 2
    prime = _prime_flags(hi)
    # next_prime(start) > start >= max(2, lo - offset), and p + offset < hi.
    positives = int(prime[max(2, lo - offset) + 1 : hi - offset].sum())
    # Composites c = a*b with lo <= c + offset < hi, as a bitmap over [c_lo, c_hi).
    c_lo, c_hi = max(0, lo - offset), hi - offset
    product = np.zeros(c_hi - c_lo, dtype=bool)
    for a in range(10 ** (h - 1), 10**h):
        first = max(10 ** (L - h - 1), -(-c_lo // a))
        last = min(10 ** (L - h) - 1, (c_hi - 1) // a)
        if first <= last:
            product[a * first - c_lo : a * last - c_lo + 1 : a] = True
    product[prime[c_lo:c_hi]] = False  # only a or b = 1 (L <= 3) can give a prime
    digits = TAIL_DIGITS if tail else range(10)
    negatives = sum(int(product[(d - c_lo) % 10 :: 10].sum()) for d in digits)
    return tuple(None if c > CAPACITY_LIMIT else c for c in (positives, negatives))


def _prime_flags(limit: int) -> np.ndarray:
    """flags[i] is True when i < limit is prime (sieve of Eratosthenes)."""
    flags = np.ones(limit, dtype=bool)
    flags[:2] = False
    for i in range(2, math.isqrt(limit - 1) + 1):
        if flags[i]:
            flags[i * i :: i] = False
    return flags


SPECS = (
    PrimeTask("fn_i", "prime_decimal", offset=0, tail=False),
    PrimeTask("fn_k", "prime_decimal_tf_check", offset=0, tail=True),
    PrimeTask("fn_v", "prime_plus_47", offset=47, tail=True),
)
TASKS: list[Task] = [spec.task() for spec in SPECS]
