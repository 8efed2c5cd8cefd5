"""The population standard deviation exactly as ``statistics.pstdev`` gives it (the exact
variance's square root, correctly rounded), several times faster for floats: each float
is an integer over a power of two, so its sums are integer sums over the largest such
denominator, where ``statistics`` adds a Fraction per value (a tenth of a ten-run report's
time). Anything but finite floats and ints goes to ``statistics``."""

from __future__ import annotations

import math
import statistics
import sys

# Bits of the integer square root taken before rounding to a float (statistics' width).
SQRT_BITS = 2 * sys.float_info.mant_dig + 3


def pstdev(values: list[float]) -> float:
    if not values or not set(map(type, values)) <= {float, int}:
        return statistics.pstdev(values)
    try:
        ratios = [v.as_integer_ratio() for v in values]
    except (OverflowError, ValueError):  # an infinity or a NaN
        return statistics.pstdev(values)
    scale = max(d for _, d in ratios)  # every denominator is a power of two: it divides this
    nums = [n * (scale // d) for n, d in ratios]
    count, total = len(nums), sum(nums)
    # variance = (count * sum(x^2) - sum(x)^2) / (count * scale)^2, exactly
    num, den = count * sum(x * x for x in nums) - total * total, (count * scale) ** 2
    common = math.gcd(num, den)
    return _sqrt_of_fraction(num // common, den // common)


def _sqrt_of_fraction(n: int, m: int) -> float:
    """sqrt(n/m) correctly rounded: an integer square root of SQRT_BITS bits, rounded to
    odd, then one rounding to a float (statistics._float_sqrt_of_frac)."""
    q = (n.bit_length() - m.bit_length() - SQRT_BITS) // 2
    if q >= 0:
        return float(_isqrt_to_odd(n, m << 2 * q) << q)
    return _isqrt_to_odd(n << -2 * q, m) / (1 << -q)


def _isqrt_to_odd(n: int, m: int) -> int:
    a = math.isqrt(n // m)
    return a | (a * a * m != n)
