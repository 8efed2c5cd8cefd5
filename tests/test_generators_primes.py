"""The decimal prime tasks fn_i, fn_k, fn_v: labels, data, capacity, length rule."""

import hashlib

import gmpy2
import numpy as np
import pytest

from synth.datasets.generators import primes
from synth.datasets.generators.base import DEFAULT_LENGTHS
from synth.errors import InfeasibleError

TASKS = {t.id: t for t in primes.TASKS}
SPECS = {s.id: s for s in primes.SPECS}


@pytest.fixture(
    scope="module",
    params=[(fn, L) for fn in TASKS for L in DEFAULT_LENGTHS],
    ids=lambda p: f"{p[0]}-L{p[1]}",
)
def dataset(request):
    """A full-size draw (5,100 per class, the default grid's) of one task at one length."""
    fn, L = request.param
    pos, neg = TASKS[fn].generate(L, 5100, np.random.default_rng(L))
    return fn, L, pos, neg


@pytest.mark.slow
def test_every_label_is_the_truth(dataset):
    fn, _, pos, neg = dataset
    label = TASKS[fn].label
    assert [x for x in pos if label(x) != 1] == []
    assert [x for x in neg if label(x) != 0] == []


@pytest.mark.slow
def test_classes_are_full_distinct_and_exactly_L_digits(dataset):
    _, L, pos, neg = dataset
    assert len(pos) == len(neg) == 5100
    assert len(set(pos + neg)) == 10200
    assert {len(x) for x in pos + neg} == {L}
    assert all(x.isdigit() and x[0] != "0" for x in pos + neg)


@pytest.mark.parametrize("fn", ["fn_k", "fn_v"])
def test_negatives_do_not_give_the_label_away_by_the_last_digit(fn):
    offset = SPECS[fn].offset
    pos, neg = TASKS[fn].generate(20, 2000, np.random.default_rng(5))
    assert {(int(x) - offset) % 10 for x in neg} == set(primes.TAIL_DIGITS)
    assert {(int(x) - offset) % 10 for x in pos} == set(primes.TAIL_DIGITS)


def test_fn_i_negatives_may_end_in_any_digit():
    _, neg = TASKS["fn_i"].generate(20, 2000, np.random.default_rng(5))
    assert {int(x) % 10 for x in neg} == set(range(10))


@pytest.mark.parametrize(
    "x, expected",
    [
        ("11", 1),
        ("97", 1),
        ("91", 0),  # 7 * 13
        ("10", 0),
        ("561", 0),  # Carmichael number
        ("3215031751", 0),  # strong pseudoprime to bases 2, 3, 5 and 7
        ("1000000007", 1),
        ("618970019642690137449562111", 1),  # 2**89 - 1
        ("618970019642690137449562113", 0),  # 2**89 + 1, divisible by 3
    ],
)
@pytest.mark.parametrize("fn", ["fn_i", "fn_k"])
def test_prime_labels_by_hand(fn, x, expected):
    assert TASKS[fn].label(x) == expected


@pytest.mark.parametrize(
    "x, expected",
    [
        ("50", 1),  # 3
        ("49", 1),  # 2
        ("48", 0),  # 1
        ("47", 0),  # 0
        ("62", 0),  # 15
        ("144", 1),  # 97
        ("0050", 1),  # zero-padded 50
        ("0046", 0),  # -1
        ("0000", 0),
    ],
)
def test_prime_plus_47_labels_by_hand(x, expected):
    assert TASKS["fn_v"].label(x) == expected


def _reachable(spec, L):
    """Every input the published draw can produce at L, by trying every start and pair."""
    lo, hi, h, o = 10 ** (L - 1), 10**L, L // 2, spec.offset
    nexts = (int(gmpy2.next_prime(s)) + o for s in range(max(2, lo - o), hi - o - 1))
    positives = {n for n in nexts if n < hi}
    negatives = {
        a * b + o
        for a in range(10 ** (h - 1), 10**h)
        for b in range(10 ** (L - h - 1), 10 ** (L - h))
        if lo <= a * b + o < hi
        and (not spec.tail or a * b % 10 in primes.TAIL_DIGITS)
        and spec.label(str(a * b + o)) == 0
    }
    return positives, negatives


@pytest.mark.parametrize("L", [2, 3, 4])
@pytest.mark.parametrize("fn", list(TASKS))
def test_capacity_counts_what_the_draw_can_reach(fn, L):
    positives, negatives = _reachable(SPECS[fn], L)
    assert TASKS[fn].capacity(L) == (len(positives), len(negatives))


# L-digit primes from pi(10**k) = 4, 25, 168, 1229, 9592, 78498, 664579, 5761455.
@pytest.mark.parametrize("fn", list(TASKS))
def test_capacity_at_six_digits_matches_the_prime_counting_function(fn):
    pos, _ = TASKS[fn].capacity(6)
    # fn_v's p runs over (10**5 - 47, 10**6 - 47): 99961, 99971, 99989 and 99991 join,
    # 999953, 999959, 999961, 999979 and 999983 leave.
    assert pos == {"fn_i": 68906, "fn_k": 68906, "fn_v": 68906 + 4 - 5}[fn]


@pytest.mark.slow
def test_capacity_is_exact_to_eight_digits_and_unbounded_past_ten_million():
    assert TASKS["fn_i"].capacity(8) == (5761455 - 664579, None)  # 17.9M products
    assert all(TASKS[fn].capacity(9) == (None, None) for fn in TASKS)


@pytest.mark.slow
@pytest.mark.parametrize("fn, cls", [("fn_i", 0), ("fn_k", 1), ("fn_v", 1)])
def test_draw_fills_a_class_to_capacity_and_fails_past_it(fn, cls):
    task = TASKS[fn]
    limit = min(task.capacity(2))
    drawn = task.generate(2, limit, np.random.default_rng(3))[cls]
    assert {int(x) for x in drawn} == _reachable(SPECS[fn], 2)[cls]
    which = ("positive", "negative")[cls]
    with pytest.raises(InfeasibleError, match=f"{limit + 1} distinct {which} {fn} inputs"):
        task.generate(2, limit + 1, np.random.default_rng(3))


@pytest.mark.parametrize("fn", list(TASKS))
def test_length_rule_refuses_single_digits(fn):
    task = TASKS[fn]
    assert task.length_rule(2) is None
    message = task.length_rule(1)
    assert f"{fn} ({task.target}) needs L >= 2" in message
    with pytest.raises(InfeasibleError, match="needs L >= 2"):
        task.generate(1, 10, np.random.default_rng(0))
    assert task.capacity(1) == (0, 0)


@pytest.mark.parametrize("fn", list(TASKS))
def test_same_seed_same_data_other_seed_other_data(fn):
    draw = TASKS[fn].generate
    first = draw(25, 300, np.random.default_rng(7))
    assert draw(25, 300, np.random.default_rng(7)) == first
    assert draw(25, 300, np.random.default_rng(8)) != first


# sha256 of "\n".join(positives + negatives) at L=20, n=50, default_rng(1234): a change
# here means the data of every run changes (bump Task.version when it is on purpose).
GOLDEN = {
    "fn_i": "f3155bc01c2140e3c519f8dd5cc73042f60a35ddf624df613e969dc085420cc6",
    "fn_k": "eda582c5efaded993ba92869b4e51ebf5e7084c8c293f5c678d988c4af614023",
    "fn_v": "801236e34b97cc34f8145ac818d0cc5b1f8fc26fe6fa0c96ac201f0b6df9c12d",
}


@pytest.mark.parametrize("fn", list(TASKS))
def test_golden_data(fn):
    pos, neg = TASKS[fn].generate(20, 50, np.random.default_rng(1234))
    assert hashlib.sha256("\n".join(pos + neg).encode()).hexdigest() == GOLDEN[fn]


def test_uniform_draws_cover_any_interval_evenly():
    values = primes._uniform(np.random.default_rng(0), 10**30 + 5, 10**30 + 7, 3000)
    counts = [values.count(10**30 + k) for k in (5, 6, 7)]
    assert sum(counts) == 3000
    assert all(900 < c < 1100 for c in counts)  # sd is 26


def test_registry_entries():
    assert [(t.id, t.target, t.kind) for t in primes.TASKS] == [
        ("fn_i", "prime_decimal", "decimal"),
        ("fn_k", "prime_decimal_tf_check", "decimal"),
        ("fn_v", "prime_plus_47", "decimal"),
    ]
    assert all(t.default_lengths == DEFAULT_LENGTHS and t.unique(20) for t in primes.TASKS)
