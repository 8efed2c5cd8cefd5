"""Choosing each trial's result.

The published runner picked the best attempt by TEST accuracy; that leaks the test set
into the result. Here the result is the best attempt by validation accuracy (ties: the
earlier attempt). The test-oracle choice is recorded beside it, labelled as such.
An attempt with no evaluation (call failed, no program) scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence


def select(attempts: Sequence[tuple[int, float | None, float | None]]) -> dict:
    """attempts: (attempt number, val_acc, test_acc) in attempt order."""
    scored = [(n, v or 0.0, t or 0.0) for n, v, t in attempts]
    chosen = max(scored, key=lambda a: (a[1], -a[0]))
    oracle = max(scored, key=lambda a: (a[2], -a[0]))
    return {
        "selected_attempt": chosen[0],
        "val_acc": chosen[1],
        "test_acc": chosen[2],
        "oracle_attempt": oracle[0],
        "oracle_test_acc": oracle[2],
        "stopped_early": int(any(v == 1.0 for _, v, _ in scored)),
    }
