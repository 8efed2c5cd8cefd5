"""The binary-string tasks: labels by hand, generated data at every default grid point,
length rules, capacities against brute force, determinism, and a golden per task."""

import hashlib
import itertools

import numpy as np
import pytest

from synth.datasets.generators import dyck
from synth.datasets.generators.base import bits_to_strings
from synth.datasets.generators.binary import TASKS, to_bits
from synth.datasets.generators.positions import positions
from synth.errors import InfeasibleError

BY_ID = {t.id: t for t in TASKS}
N = 5100
GRID = [(t.id, L) for t in TASKS for L in t.default_lengths]


def all_strings(L):
    return ["".join(bits) for bits in itertools.product("01", repeat=L)]


def legal_lengths(task, upto):
    return [L for L in range(1, upto + 1) if task.length_rule(L) is None]


def test_the_ten_tasks_as_published():
    assert [(t.id, t.target) for t in TASKS] == [
        ("fn_a", "parity_all"),
        ("fn_b", "parity_first_half"),
        ("fn_c", "patternmatch1"),
        ("fn_d", "patternmatch2"),
        ("fn_e", "parity_rand_3"),
        ("fn_f", "parity_rand_10"),
        ("fn_g", "palindrome"),
        ("fn_h", "dyck2"),
        ("fn_j", "automata_parity"),
        ("fn_l", "sha256_parity"),
    ]
    assert {t.kind for t in TASKS} == {"binary"}
    assert BY_ID["fn_h"].default_lengths == (100, 80, 60, 40, 20)
    others = {t.default_lengths for t in TASKS if t.id != "fn_h"}
    assert others == {(100, 50, 30, 25, 20)}


def one_hot(L, *ones):
    return "".join("1" if i in ones else "0" for i in range(L))


@pytest.mark.parametrize(
    "fn, x, expected",
    [
        ("fn_a", "1011", 1),
        ("fn_a", "0000", 0),
        ("fn_a", "1", 1),
        ("fn_b", "1000", 1),
        ("fn_b", "0011", 0),
        ("fn_b", "10111", 1),  # first floor(5/2) = 2 characters: "10"
        ("fn_b", "11100", 0),
        ("fn_c", "0010101010", 1),
        ("fn_c", "1010101110101010", 1),
        ("fn_c", "10101011", 0),
        ("fn_c", "1010101", 0),
        ("fn_d", "0000111111", 1),
        ("fn_d", "00111110", 0),
        ("fn_d", "0011111", 0),
        ("fn_e", one_hot(20, 2), 1),  # positions at L=20: 2 14 18
        ("fn_e", one_hot(20, 2, 14), 0),
        ("fn_e", one_hot(20, 0, 1, 3), 0),
        ("fn_f", one_hot(20, 0), 1),  # 2 14 18 15 1 10 0 4 6 11
        ("fn_f", one_hot(20, 3, 5, 7), 0),
        ("fn_f", one_hot(20, 2, 14, 18, 15, 1, 10, 0, 4, 6, 11), 0),
        ("fn_g", "0110", 1),
        ("fn_g", "10101", 1),
        ("fn_g", "0100", 0),
        ("fn_g", "10111", 0),
        ("fn_h", "0001", 1),  # "()"
        ("fn_h", "0100", 0),  # ")("
        ("fn_h", "00101101", 1),  # "([])"
        ("fn_h", "00100111", 0),  # "([)]"
        ("fn_h", "0011", 0),  # "(]"
        ("fn_h", "0000", 0),  # "(("
        ("fn_h", "000", 0),
        # Rule 30 with 0 padding: 0110 -> windows 001 011 110 100 -> 1 1 0 1 -> odd.
        ("fn_j", "0110", 1),
        ("fn_j", "10110", 1),  # next row 10101
        ("fn_j", "10", 0),  # windows 010 100 -> 1 1
        ("fn_j", "11", 1),  # windows 011 110 -> 1 0
        ("fn_j", "0", 0),
    ],
)
def test_labels_by_hand(fn, x, expected):
    assert BY_ID[fn].label(x) == expected


@pytest.mark.parametrize(
    "x, digest, ones",
    [
        ("0", "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9", 147),
        ("1", "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b", 142),
    ],
)
def test_sha256_parity_of_known_digests(x, digest, ones):
    assert bin(int(digest, 16)).count("1") == ones
    assert BY_ID["fn_l"].label(x) == ones % 2


def test_positions_match_the_published_table():
    published = {
        20: ("2 14 18", "2 14 18 15 1 10 0 4 6 11"),
        25: ("17 12 2", "17 12 2 0 22 20 21 6 8 18"),
        30: ("12 0 6", "12 0 6 25 8 15 10 18 16 23"),
        50: ("42 17 30", "42 17 30 34 20 25 0 8 36 18"),
        100: ("42 96 62", "42 96 62 98 46 95 60 24 78 16"),
    }
    for L, (three, ten) in published.items():
        assert positions(L, 3) == tuple(map(int, three.split()))
        assert positions(L, 10) == tuple(map(int, ten.split()))


@pytest.mark.parametrize("k", [3, 10])
def test_positions_are_distinct_and_in_range_for_every_length(k):
    for L in [*range(k, 130), 150, 1000, 1001]:
        chosen = positions(L, k)
        assert len(set(chosen)) == k and all(0 <= i < L for i in chosen)


def test_positions_outside_the_table_come_from_pcg64_seed_42():
    perm = np.random.Generator(np.random.PCG64(42)).permutation(129)
    assert positions(129, 10) == tuple(int(i) for i in perm[:10])
    assert positions(128, 10) != tuple(int(i) for i in perm[:10])


def test_positions_refuse_more_than_the_length():
    with pytest.raises(ValueError):
        positions(9, 10)


def test_to_bits_reverses_bits_to_strings():
    bits = np.random.default_rng(0).integers(0, 2, size=(7, 13), dtype=np.uint8)
    assert np.array_equal(to_bits(bits_to_strings(bits)), bits)


# --- every default grid point at full size --------------------------------------------


@pytest.fixture(scope="module", params=GRID, ids=[f"{fn}-L{L}" for fn, L in GRID])
def grid_point(request):
    fn, L = request.param
    task = BY_ID[fn]
    pos, neg = task.generate(L, N, np.random.default_rng(2024))
    return task, L, pos, neg


@pytest.mark.slow
def test_grid_point_sizes_and_lengths(grid_point):
    task, L, pos, neg = grid_point
    assert len(pos) == len(neg) == N
    assert {len(x) for x in pos + neg} == {L}
    assert set("".join(pos + neg)) <= {"0", "1"}


@pytest.mark.slow
def test_grid_point_labels(grid_point):
    task, L, pos, neg = grid_point
    assert [task.label(x) for x in pos] == [1] * N
    assert [task.label(x) for x in neg] == [0] * N


@pytest.mark.slow
def test_grid_point_uniqueness(grid_point):
    task, L, pos, neg = grid_point
    distinct = (len(set(pos)), len(set(neg)))
    if task.unique(L):
        assert distinct == (N, N)
    for have, most in zip(distinct, task.capacity(L)):
        assert most is None or have <= most


def test_unique_flags():
    allows_duplicates = {fn: [L for L in (*range(1, 40), 100) if not BY_ID[fn].unique(L)] for fn in BY_ID}
    assert allows_duplicates["fn_g"] == [*range(1, 40), 100]
    assert allows_duplicates["fn_d"] == [*range(1, 40), 100]
    assert allows_duplicates["fn_h"] == [20]
    others = set(BY_ID) - {"fn_d", "fn_g", "fn_h"}
    assert all(not allows_duplicates[fn] for fn in others)


# --- small and edge lengths -----------------------------------------------------------

# The four smallest legal lengths of each task, and an odd one.
EDGES = [(t.id, L) for t in TASKS for L in legal_lengths(t, 13)[:4] + [21] if t.length_rule(L) is None]


@pytest.mark.parametrize("fn, L", EDGES)
def test_small_lengths(fn, L):
    task = BY_ID[fn]
    n = min(c for c in (*task.capacity(L), 50) if c is not None)
    pos, neg = task.generate(L, n, np.random.default_rng(L))
    assert len(pos) == len(neg) == n
    assert {len(x) for x in pos + neg} == {L}
    assert [task.label(x) for x in pos + neg] == [1] * n + [0] * n
    if task.unique(L):
        assert len(set(pos)) == len(set(neg)) == n


def test_palindrome_negatives_flip_one_bit_of_the_first_half():
    # Odd L: the published code could flip the middle bit; ours never does.
    pos, neg = BY_ID["fn_g"].generate(21, 2000, np.random.default_rng(5))
    for p, q in zip(pos, neg):
        differ = [i for i in range(21) if p[i] != q[i]]
        assert len(differ) == 1 and differ[0] < 10


def test_corrupt_flips_one_to_five_distinct_bits():
    rng = np.random.default_rng(3)
    words = dyck.sample_words(rng, 4000, 40)
    flipped = (dyck.corrupt(rng, words) != words).sum(axis=1)
    assert set(flipped.tolist()) == {1, 2, 3, 4, 5}
    assert (dyck.corrupt(rng, words[:, :4]) != words[:, :4]).sum(axis=1).max() == 4


@pytest.mark.parametrize("L", [1, 2, 3, 4, 6, 8, 10, 12])
def test_dyck_batch_check_equals_the_rule_on_every_string(L):
    xs = all_strings(L)
    assert dyck.balanced(to_bits(xs)).tolist() == [dyck.is_balanced(x) for x in xs]


def test_dyck_words_sample_every_balanced_word():
    words = set(bits_to_strings(dyck.sample_words(np.random.default_rng(0), 4000, 12)))
    assert words == {x for x in all_strings(12) if dyck.is_balanced(x)}


# --- length rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, L, message",
    [
        ("fn_a", 0, "parity_all needs L >= 1"),
        ("fn_a", -3, "parity_all needs L >= 1"),
        ("fn_b", 1, "parity_first_half needs L >= 2"),
        ("fn_c", 7, "patternmatch1 needs L >= 8"),
        ("fn_d", 7, "patternmatch2 needs L >= 8"),
        ("fn_e", 2, "parity_rand_3 needs L >= 3"),
        ("fn_f", 9, "parity_rand_10 needs L >= 10"),
        ("fn_g", 1, "palindrome needs L >= 2"),
        ("fn_h", 22, "dyck2 needs a positive multiple of 4"),
        ("fn_h", 0, "dyck2 needs a positive multiple of 4"),
        ("fn_h", -4, "dyck2 needs a positive multiple of 4"),
        ("fn_j", 0, "automata_parity needs L >= 1"),
        ("fn_l", 0, "sha256_parity needs L >= 1"),
    ],
)
def test_length_rules_name_the_rule(fn, L, message):
    task = BY_ID[fn]
    assert message in task.length_rule(L)
    assert f"L={L}" in task.length_rule(L)
    with pytest.raises(InfeasibleError, match=message):
        task.generate(L, 2, np.random.default_rng(0))


@pytest.mark.parametrize(
    "fn, smallest",
    [
        ("fn_a", 1),
        ("fn_b", 2),
        ("fn_c", 8),
        ("fn_d", 8),
        ("fn_e", 3),
        ("fn_f", 10),
        ("fn_g", 2),
        ("fn_h", 4),
        ("fn_j", 1),
        ("fn_l", 1),
    ],
)
def test_smallest_legal_length(fn, smallest):
    task = BY_ID[fn]
    assert task.length_rule(smallest) is None
    assert task.length_rule(smallest - 1) is not None
    assert all(task.length_rule(L) is None for L in task.default_lengths)


def test_generate_refuses_more_distinct_inputs_than_exist():
    rng = np.random.default_rng(0)
    with pytest.raises(InfeasibleError, match="parity_all at L=10 has only 512 "):
        BY_ID["fn_a"].generate(10, 513, rng)
    with pytest.raises(InfeasibleError, match="patternmatch1 at L=8 has only 1 "):
        BY_ID["fn_c"].generate(8, 2, rng)


# --- capacities -----------------------------------------------------------------------


def palindrome_negatives(L):
    """Strings one flip away from a palindrome, the flip in the first half."""
    half = L // 2
    return {x for x in all_strings(L) if sum(x[i] != x[L - 1 - i] for i in range(half)) == 1}


def dyck_negatives(L):
    words = [x for x in all_strings(L) if dyck.is_balanced(x)]
    out = set()
    for word in words:
        for k in range(1, 6):
            for where in itertools.combinations(range(L), k):
                bits = list(word)
                for i in where:
                    bits[i] = "1" if bits[i] == "0" else "0"
                x = "".join(bits)
                if not dyck.is_balanced(x):
                    out.add(x)
    return out


def reachable(task, L):
    """The distinct positives and negatives a generator can produce, by brute force."""
    xs = all_strings(L)
    pos = {x for x in xs if task.label(x)}
    if task.id == "fn_g":
        return pos, palindrome_negatives(L)
    if task.id == "fn_h":
        return pos, dyck_negatives(L)
    return pos, set(xs) - pos


CAPACITY_CASES = [(t.id, L) for t in TASKS for L in legal_lengths(t, 12)]


@pytest.mark.slow
@pytest.mark.parametrize("fn, L", CAPACITY_CASES)
def test_capacity_by_brute_force(fn, L):
    task = BY_ID[fn]
    pos, neg = reachable(task, L)
    assert task.capacity(L) == (len(pos), len(neg))


@pytest.mark.parametrize("fn, L", [(fn, L) for fn, L in CAPACITY_CASES if L <= 8 and BY_ID[fn].unique(L)])
def test_generators_reach_their_capacity(fn, L):
    """Asked for all distinct inputs of its smaller class, a generator finds them."""
    task = BY_ID[fn]
    pos, neg = task.generate(L, min(task.capacity(L)), np.random.default_rng(1))
    want_pos, want_neg = reachable(task, L)
    assert set(pos) <= want_pos and set(neg) <= want_neg
    if len(want_pos) <= len(want_neg):
        assert set(pos) == want_pos
    else:
        assert set(neg) == want_neg


def test_sha256_counts_by_enumeration():
    task = BY_ID["fn_l"]
    for L in range(1, 17):
        ones = sum(
            int.from_bytes(hashlib.sha256(x.encode()).digest(), "big").bit_count() & 1 for x in all_strings(L)
        )
        assert task.capacity(L) == (ones, 2**L - ones)


@pytest.mark.slow
def test_automata_counts_by_enumeration():
    task = BY_ID["fn_j"]
    for L in range(1, 15):
        ones = sum(task.label(x) for x in all_strings(L))
        assert task.capacity(L) == (ones, 2**L - ones)


@pytest.mark.parametrize(
    "fn, L, expected",
    [
        ("fn_a", 24, (2**23, 2**23)),
        ("fn_a", 25, (None, None)),
        ("fn_f", 100, (None, None)),
        ("fn_c", 24, (862032, None)),  # positives: 2**24 minus the strings without it
        ("fn_g", 40, (2**20, None)),
        ("fn_g", 46, (2**23, None)),
        ("fn_g", 47, (None, None)),
        ("fn_h", 20, (1344, 828612)),  # the enumeration checked up to L=12 above
        ("fn_h", 24, (8448, None)),  # Catalan(6) * 2**6; 10,896,890 negatives
        ("fn_h", 36, (4862 * 2**9, None)),
        ("fn_h", 40, (None, None)),
        ("fn_j", 24, (8390656, 8386560)),
        ("fn_l", 24, (8390034, 2**24 - 8390034)),
        ("fn_l", 25, (None, None)),
    ],
)
def test_capacity_limits(fn, L, expected):
    assert BY_ID[fn].capacity(L) == expected


# --- determinism and goldens ----------------------------------------------------------


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_same_seed_same_data_other_seed_other_data(task):
    L = 20
    first = task.generate(L, 200, np.random.default_rng(7))
    assert task.generate(L, 200, np.random.default_rng(7)) == first
    assert task.generate(L, 200, np.random.default_rng(8)) != first


GOLDEN = {
    "fn_a": "5a99a21eb41cb039e93177102649839d69f3fc19e95103f4e65aa1d1243a9abc",
    "fn_b": "ff8f84584c19111789833c0fbacab420c3b1bd59a678742c559983cd2d35ae3b",
    "fn_c": "7bb6d813b0303a877d1582f6c2c81f62dc06a528fbdece4cfe156992ab5d555b",
    "fn_d": "c9db03b471a0a8a53f3ced98e72c3ee1bd5fcababa20b5f28c293ce171b47c4d",
    "fn_e": "1cf203d10b9217aa68f538bc77c3da9e89f6155343878eee3df00a4fbad0d88b",
    "fn_f": "908dfa231e70c9494ccfe260eddcdb305843119687b91f0bc9a44c6b6bb3c5d5",
    "fn_g": "737d4af2e917925456885af41b7a50c479f17af73a68f1c86c80859127392978",
    "fn_h": "0506d91525bc649c2fa448787244eda771694b9a2a2367fd77dcb2d2adcb9fe2",
    "fn_j": "eb2447ed966e867f0dfb675d40609772758ca46b2f0e35b80d43fe9fa20503a6",
    "fn_l": "f86e8c7e28d03fd01e46f49ccf90a4d167c65ecfed83e744a8115a2fcf279848",
}


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_golden_at_L20(task):
    """Pinned output: if this fails, a generator changed; bump the task's version."""
    pos, neg = task.generate(20, 50, np.random.Generator(np.random.PCG64(1234)))
    digest = hashlib.sha256("\n".join(pos + neg).encode()).hexdigest()
    assert digest == GOLDEN[task.id]
