"""Summary statistics of per-trial values (reports.accuracy groups them).

Means and standard deviations come from tracker.exports.summarise, so the report, `synth
show` and the exports print the same digits (SQLite's sum() adds naively; fmean rounds
once). The standard deviation is the population one, as in the published summaries; the
95% confidence interval of the mean uses Student's t with the sample standard deviation,
clipped to [0, 1] since the values are accuracies.
"""

from __future__ import annotations

import math
import statistics

from tracker.exports import summarise

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
T_975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
Z_975 = 1.959964


def t_975(df: int) -> float:
    """The t quantile: the table up to 30, then the Cornish-Fisher expansion (error < 1e-4)."""
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summary(values: list[float]) -> dict:
    """Mean, population std and the 95% CI of the mean."""
    if not values:
        return {"mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean, std = summarise(values)
    n = len(values)
    if n < 2:
        return {"mean": mean, "std": std, "ci_low": None, "ci_high": None}
    half = t_975(n - 1) * std / math.sqrt(n - 1)  # t * sample std / sqrt(n)
    return {"mean": mean, "std": std, "ci_low": max(0.0, mean - half), "ci_high": min(1.0, mean + half)}


def summaries(**named: list[float]) -> dict:
    """``<name>_mean``, ``_std``, ``_ci_low`` and ``_ci_high`` of each list of values."""
    return {f"{name}_{k}": v for name, values in named.items() for k, v in summary(values).items()}


def means(**named: list[float]) -> dict:
    """``<name>_mean`` of each list of values (summarise's mean, without the exact
    standard deviation nobody reads here); None for an empty list."""
    return {f"{name}_mean": mean(values) for name, values in named.items()}


def mean(values: list[float]) -> float | None:
    """The exactly rounded mean; None for no values."""
    return statistics.fmean(values) if values else None
