"""The tabular tasks on the real UCI files (../shared/uci; skipped when absent):
counts as TASKS.md states them, and drawn examples checked against their source rows."""

import csv
import gzip

import numpy as np
import pytest

from synth.datasets import uci
from synth.datasets.generators import tabular
from synth.errors import InfeasibleError

# TASKS.md: task, source, fixed length, rows, positives.
COUNTS = [
    ("fn_m", "adult_income", "adult", 14, 32_561, 7_841),
    ("fn_n", "mushroom", "mushroom", 20, 61_069, 27_181),
    ("fn_o", "cdc_diabetes", "cdc_diabetes", 21, 253_680, 35_346),
    ("fn_p", "htru2", "htru2", 8, 17_898, 1_639),
    ("fn_q", "chess", "chess", 36, 3_196, 1_669),
]
NAMES = [c[2] for c in COUNTS]


@pytest.fixture(params=NAMES)
def table(request, uci_dir):
    return uci.load_table(request.param, uci_dir=uci_dir)


@pytest.fixture
def csv_rows(table):
    """The same file read by the csv module: (feature strings, class string) per row."""
    source = table.source
    opener = gzip.open if table.path.suffix == ".gz" else open
    with opener(table.path, "rt", newline="") as f:
        reader = csv.reader(f, delimiter=source.sep[0], skipinitialspace=source.sep == ", ")
        rows = [r for r in reader if r]
    if source.header:
        head, rows = rows[0], rows[1:]
        at = [head.index(n) for n in source.features]
        label = head.index(source.label)
    else:
        at, label = list(range(len(source.features))), len(source.features)
    return [([r[j] for j in at], r[label]) for r in rows]


@pytest.fixture
def distinct(csv_rows):
    """Sorted distinct raw values of each feature column, from the csv module's rows."""
    return [sorted(set(column)) for column in zip(*(f for f, _ in csv_rows))]


def test_the_registry_entries():
    assert [(t.id, t.target, t.source, t.fixed_length) for t in tabular.TASKS] == [c[:4] for c in COUNTS]
    for task in tabular.TASKS:
        assert task.kind == "tabular" and task.generate is None and task.label is None
        assert task.lengths == task.default_lengths == (task.fixed_length,)
        assert task.length_rule(100) is None and task.unique(task.fixed_length) is False


@pytest.mark.slow
@pytest.mark.parametrize("fn,target,name,length,rows,positives", COUNTS)
def test_row_and_class_counts_match_tasks_md(uci_dir, fn, target, name, length, rows, positives):
    table = uci.load_table(name, uci_dir=uci_dir)
    assert len(table) == rows and len(table.columns) == length
    assert tabular.class_counts(table) == (positives, rows - positives)


@pytest.mark.slow
def test_the_parser_agrees_with_the_csv_module(table, csv_rows, distinct):
    assert len(table) == len(csv_rows)
    every = max(1, len(csv_rows) // 3000)  # a spread of rows, for time on the big file
    for i in range(0, len(csv_rows), every):
        assert table.row(i) == tuple(csv_rows[i][0])
    labels = [int(label in table.source.positive) for _, label in csv_rows]
    assert table.labels.tolist() == labels
    assert [list(column.values) for column in table.columns] == distinct


@pytest.mark.slow
def test_drawn_examples_are_anonymised_source_rows_of_their_class(table):
    n = 150
    positives, negatives = tabular.draw(table, n, np.random.default_rng(7))
    assert len(positives) == len(negatives) == n
    # The affine maps are the generator's first draw, so a fresh generator gives them.
    params = tabular.affine_params(table, np.random.default_rng(7))
    assert params.shape == (len(table.numeric), 2)
    for examples, cls in ((positives, 1), (negatives, 0)):
        rows = np.flatnonzero(table.labels == cls)
        source_of = dict(zip(tabular.encode_rows(table, rows, params), rows.tolist()))
        assert all(x in source_of for x in examples)
        for x in examples[:5]:
            assert x == by_hand(table, source_of[x], params)


def by_hand(table, i, params):
    """Row i anonymised from its raw strings (which the test above checks against the
    csv module), written out the plain way."""
    affine = dict(zip(sorted(table.numeric), params.tolist()))
    distinct = [column.values for column in table.columns]
    fields = []
    for j, raw in enumerate(table.row(i)):
        if j in affine:
            a, b = affine[j]
            fields.append(f"x{j}:{a * float(raw) + b:.2f}")
        else:
            code = str(distinct[j].index(raw)).zfill(len(str(len(distinct[j]) - 1)))
            fields.append(f"x{j}:c{code}")
    return ",".join(fields)


@pytest.mark.slow
def test_draws_are_deterministic_and_depend_on_the_seed(table):
    first = tabular.draw(table, 40, np.random.default_rng(11))
    assert tabular.draw(table, 40, np.random.default_rng(11)) == first
    assert tabular.draw(table, 40, np.random.default_rng(12)) != first


def test_the_line_format(uci_dir):
    table = uci.load_table("mushroom", uci_dir=uci_dir)
    (x,), _ = tabular.draw(table, 1, np.random.default_rng(3))
    keys = [item.split(":")[0] for item in x.split(",")]
    assert keys == [f"x{i}" for i in range(20)]
    row = tabular.parse_input(x)
    assert all(isinstance(row[f"x{i}"], float) for i in (0, 8, 9))
    assert all(row[f"x{i}"].startswith("c") for i in range(20) if i not in (0, 8, 9))
    # cap-surface has 11 values and a missing one: 12 codes, c00..c11
    assert table.columns[2].values[0] == "" and len(table.columns[2].values) == 12
    assert len(row["x2"]) == 3


def test_parse_input():
    row = tabular.parse_input("x0:0.37,x1:c03,x2:-1.20,x3:c0")
    assert row == {"x0": 0.37, "x1": "c03", "x2": -1.2, "x3": "c0"}


def test_more_rows_than_a_class_holds_is_infeasible(uci_dir):
    table = uci.load_table("chess", uci_dir=uci_dir)
    assert len(tabular.draw(table, 1527, np.random.default_rng(0))[1]) == 1527
    with pytest.raises(InfeasibleError, match="1669 positive and 1527 negative rows; 1528"):
        tabular.draw(table, 1528, np.random.default_rng(0))
