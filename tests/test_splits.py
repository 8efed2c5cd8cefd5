"""The leakage-free balanced splitter and the fingerprint, on hand-made examples."""

from collections import Counter

import numpy as np
import pytest

from synth.datasets.grid import Sizes, derived_seed
from synth.datasets.splits import fingerprint, split_leakage_free
from synth.errors import InfeasibleError, SynthError


def rng(seed=7):
    return np.random.Generator(np.random.PCG64(seed))


def test_derived_seed_is_the_published_formula():
    # sha256("fn_a|L=100|train=200|test=10000|base_seed=42")[:8] big-endian & 0x7FFFFFFF
    assert derived_seed("fn_a", 100, Sizes(100, 100, 10000), 42) == 1680269424
    assert derived_seed("fn_a", 100, Sizes(150, 50, 10000), 42) == 1680269424  # train+val only
    assert derived_seed("fn_a", 100, Sizes(100, 100, 10000), 43) != 1680269424


@pytest.mark.parametrize("bad", [(0, 100, 100), (100, 101, 100), (100, 100, -2)])
def test_sizes_must_be_positive_and_even(bad):
    with pytest.raises(SynthError, match="positive even"):
        Sizes(*bad)


def check_split(splits, sizes, pos, neg):
    for name in ("train", "val", "test"):
        labels = Counter(y for _, y in splits[name])
        assert labels[0] == labels[1] == getattr(sizes, name) // 2
    where = {}
    for name, rows in splits.items():
        for x, _ in rows:
            assert where.setdefault(x, name) == name, f"{x} in two splits"
    everything = Counter((x, y) for rows in splits.values() for x, y in rows)
    assert everything == Counter([(x, 1) for x in pos] + [(x, 0) for x in neg])


def test_unique_inputs_split_exactly():
    pos = [f"p{i}" for i in range(60)]
    neg = [f"n{i}" for i in range(60)]
    sizes = Sizes(20, 20, 80)
    splits = split_leakage_free(pos, neg, sizes, rng())
    check_split(splits, sizes, pos, neg)
    assert splits == split_leakage_free(pos, neg, sizes, rng())
    assert splits != split_leakage_free(pos, neg, sizes, rng(8))


def test_duplicates_stay_together_largest_first():
    pos = ["a"] * 9 + ["b"] * 4 + [f"p{i}" for i in range(47)]
    neg = ["z"] * 5 + [f"n{i}" for i in range(55)]
    sizes = Sizes(20, 20, 80)
    splits = split_leakage_free(pos, neg, sizes, rng())
    check_split(splits, sizes, pos, neg)


def test_mixed_label_duplicates_are_kept_together():
    # tabular sources can hold identical rows with different classes
    pos = ["same"] * 2 + [f"p{i}" for i in range(18)]
    neg = ["same"] * 3 + [f"n{i}" for i in range(17)]
    sizes = Sizes(10, 10, 20)
    check_split(split_leakage_free(pos, neg, sizes, rng()), sizes, pos, neg)


def test_a_group_larger_than_every_split_is_refused():
    pos = ["a"] * 30 + [f"p{i}" for i in range(10)]  # the largest split holds 20 positives
    neg = [f"n{i}" for i in range(40)]
    with pytest.raises(InfeasibleError, match="30 copies of one input fit in no split"):
        split_leakage_free(pos, neg, Sizes(20, 20, 40), rng())


def test_fingerprint_covers_content_order_and_split():
    splits = {"train": [("01", 1), ("00", 0)], "val": [("11", 0), ("10", 1)], "test": []}
    fp = fingerprint(splits)
    assert len(fp) == 64
    moved = {"train": [("01", 1)], "val": [("11", 0), ("10", 1)], "test": [("00", 0)]}
    relabelled = {**splits, "train": [("01", 0), ("00", 0)]}
    reordered = {**splits, "train": [("00", 0), ("01", 1)]}
    assert len({fp, fingerprint(moved), fingerprint(relabelled), fingerprint(reordered)}) == 4
