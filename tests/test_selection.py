"""Trial selection by validation accuracy, and the published summary statistics."""

import pytest

from synth.selection import select
from tracker.exports import summarise


def test_selects_by_validation_not_test():
    result = select([(1, 0.9, 0.95), (2, 0.95, 0.80), (3, 0.7, 0.99)])
    assert (result["selected_attempt"], result["val_acc"], result["test_acc"]) == (2, 0.95, 0.80)
    assert (result["oracle_attempt"], result["oracle_test_acc"]) == (3, 0.99)
    assert result["stopped_early"] == 0


def test_ties_go_to_the_earlier_attempt():
    result = select([(1, 0.5, 0.4), (2, 0.8, 0.9), (3, 0.8, 0.95), (4, 0.2, 0.95)])
    assert result["selected_attempt"] == 2
    assert result["oracle_attempt"] == 3


def test_failed_attempts_score_zero_and_early_stop_is_seen():
    result = select([(1, None, None), (2, 1.0, 0.97)])
    assert result["selected_attempt"] == 2 and result["stopped_early"] == 1
    only_failures = select([(1, None, None), (2, None, None)])
    assert (only_failures["selected_attempt"], only_failures["val_acc"]) == (1, 0.0)


def test_summary_is_mean_and_population_std():
    mean, std = summarise([1.0, 0.5, 0.75, 0.75])
    assert mean == pytest.approx(0.75)
    assert std == pytest.approx(0.1767766953)
