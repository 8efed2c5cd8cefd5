"""The offline proposers `tree` and `formula` on real datasets, through the real sandbox.

The emitted program must predict exactly what was fitted (scikit-learn's predict on the
encoded features, or the formula's truth values) on every split, train, val and test.
"""

import asyncio
import json
import sys
import time

import numpy as np
import pytest
from helpers import GRIDS, TABULAR, assert_predicts_like, request, sandbox

from synth.extract import extract_program
from synth.providers import ProviderError
from synth.providers.offline import OFFLINE_PROVIDERS, formula, make_offline_provider, tree
from synth.providers.offline.base import rng_for
from synth.providers.offline.features import Column, Member

pytestmark = pytest.mark.anyio

# A formula budget counted in candidates: the same result on any machine.
FIXED_BUDGET = {"time_budget": 60.0, "max_candidates": 100_000}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def providers():
    """One provider of each kind per module, so worker processes start once."""
    made = {}

    def get(name, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in made:
            made[key] = make_offline_provider(name, **options)
        return made[key]

    yield get
    for provider in made.values():
        asyncio.run(provider.aclose())


def fitted_tree(ds, attempt=1):
    return tree.fit(ds.splits["train"], ds.point.task.kind, rng_for(42, 1, attempt), attempt)


@pytest.mark.slow
@pytest.mark.parametrize("fn,length", GRIDS)
@pytest.mark.parametrize("attempt", [1, 2])
def test_tree_program_predicts_what_sklearn_predicts(data, fn, length, attempt):
    ds = data(fn, length)
    fitted = fitted_tree(ds, attempt)
    assert_predicts_like(fitted.program(), ds, lambda xs: fitted.model.predict(fitted.encode(xs)))


@pytest.mark.slow
@pytest.mark.parametrize("fn,length", TABULAR)
def test_tree_program_on_tabular_data(data, uci_dir, fn, length):
    ds = data(fn, length, uci_dir)
    fitted = fitted_tree(ds)
    code = fitted.program()
    assert_predicts_like(code, ds, lambda xs: fitted.model.predict(fitted.encode(xs)))
    assert fitted.describe()["train_acc"] == 1.0
    assert "x.get('x" in code  # the raw dict is read, not an encoding of it


@pytest.mark.slow
def test_tree_reads_like_the_data(data, uci_dir):
    """Characters compared as characters, digits as numbers, tabular keys by value."""
    binary = fitted_tree(data("fn_e", 20)).program()
    assert binary.startswith("def f(x):\n    if x[") and "== '" in binary
    assert "if int(x[" in fitted_tree(data("fn_i", 20)).program()
    adult = fitted_tree(data("fn_m", 14, uci_dir)).program()
    assert "def _num(v):" in adult and "<= " in adult  # numbers: thresholds
    assert " in ('c" in adult or " == 'c" in adult  # categories: membership


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFLINE_PROVIDERS)
def test_tabular_programs_survive_missing_and_odd_values(data, uci_dir, providers, name):
    ds = data("fn_n", 20, uci_dir)  # mushroom: numeric and categorical keys
    provider = providers(name, **(FIXED_BUDGET if name == "formula" else {}))
    proposal = asyncio.run(provider.propose(request(ds)))
    odd = [
        "",
        "x0:abc",
        "x1:3.5,x2:nan,x0:inf",
        "x0:-inf,x9:",
        "y:1",
        ",".join(f"x{i}:c99" for i in range(20)),
        ",".join(f"x{i}:1e308" for i in range(20)),
    ]
    predictions = sandbox(extract_program(proposal.text).code, "tabular", odd)
    assert set(predictions) <= {0, 1}


@pytest.mark.slow
@pytest.mark.parametrize("fn,length", GRIDS)
def test_formula_program_predicts_what_the_formula_predicts(data, fn, length):
    ds = data(fn, length)
    kind = ds.point.task.kind
    found = formula.fit(ds.splits["train"], kind, rng_for(42, 1, 2), 2, **FIXED_BUDGET)
    assert_predicts_like(found.program(), ds, found.predict)


@pytest.mark.slow
@pytest.mark.parametrize("fn,length", TABULAR)
def test_formula_program_on_tabular_data(data, uci_dir, fn, length):
    ds = data(fn, length, uci_dir)
    found = formula.fit(ds.splits["train"], "tabular", rng_for(42, 1, 1), 1, **FIXED_BUDGET)
    assert found.train_acc > 0.6  # better than chance on every table
    assert_predicts_like(found.program(), ds, found.predict)


@pytest.mark.slow
def test_formula_finds_parity_of_three_positions(data, providers):
    """fn_e at L=20 is the parity of positions 2, 14 and 18: found from the 100 training
    examples with the default budget, it is right on every validation example."""
    ds = data("fn_e", 20)
    proposal = asyncio.run(providers("formula").propose(request(ds)))
    assert proposal.raw["stopped"] == "solved" and proposal.raw["size"] == 3
    assert proposal.raw["formula"] == "(x[2] == '1') ^ (x[14] == '1') ^ (x[18] == '1')"
    program = extract_program(proposal.text)
    assert (program.source, program.func_name) == ("json", "f")
    for split in ("val", "test"):
        inputs, labels = zip(*ds.splits[split])
        assert sandbox(program.code, "binary", list(inputs)) == list(labels)


@pytest.mark.slow
@pytest.mark.parametrize("name,options", [("tree", {}), ("formula", FIXED_BUDGET)])
async def test_proposals_are_deterministic(data, providers, name, options):
    ds = data("fn_a", 20)  # parity of all 20 bits: no small program fits, attempts differ
    provider = providers(name, **options)
    first = await provider.propose(request(ds))
    again = await provider.propose(request(ds))
    assert first.text == again.text and first.raw == again.raw
    others = [await provider.propose(request(ds, attempt=n)) for n in (2, 3)]
    assert len({first.text, *(p.text for p in others)}) > 1


@pytest.mark.slow
async def test_proposal_is_recorded_like_a_models(data, providers):
    ds = data("fn_e", 20)
    p = await providers("tree").propose(request(ds, seed=7, trial=3, attempt=2))
    assert (p.status, p.incomplete_reason, p.response_id) == ("completed", None, None)
    usage = (
        p.input_tokens,
        p.cached_tokens,
        p.output_tokens,
        p.reasoning_tokens,
        p.tool_calls,
        p.tool_output_chars,
    )
    assert usage == (0, 0, 0, 0, 0, 0)
    assert p.duration_ms > 0
    assert set(json.loads(p.text)) == {"code"}
    assert p.raw["proposer"] == "tree" and p.raw["train_acc"] > 0.5
    request_json = json.dumps(p.request)
    assert p.request["seed"] == 7 and p.request["trial"] == 3 and p.request["attempt"] == 2
    assert p.request["max_depth"] < tree.MAX_DEPTH  # attempt 2 halves the depth
    assert ds.splits["train"][0][0] not in request_json  # parameters, never data
    json.dumps(p.raw)


@pytest.mark.slow
async def test_event_loop_stays_responsive(data, providers):
    """A 1-second search runs while a ticker on the loop keeps ticking."""
    ds = data("fn_a", 50)
    provider = providers("formula", time_budget=1.0, max_candidates=None)
    await provider.propose(request(ds, attempt=9))  # start the worker outside the measure
    gaps = []

    async def tick():
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    proposal = await provider.propose(request(ds))
    ticker.cancel()
    assert proposal.raw["stopped"] == "time" and proposal.duration_ms >= 1000
    assert (proposal.status, proposal.incomplete_reason) == ("incomplete", "time_cap")
    assert len(gaps) > 20 and max(gaps) < 0.5  # never blocked for the search's 1 s


def test_tree_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.tree", None)
    with pytest.raises(ProviderError) as info:
        make_offline_provider("tree")
    assert (info.value.kind, info.value.fatal) == ("config", True)
    assert "pip install 'llm-pv[baselines]'" in str(info.value)


@pytest.mark.parametrize("name,options", [("ridge", {}), ("formula", {"depth": 3}), ("knn", {"k": 3})])
def test_unknown_proposer_or_option_is_refused(name, options):
    with pytest.raises(ProviderError) as info:
        make_offline_provider(name, **options)
    assert info.value.fatal and info.value.kind == "config"
    assert "unknown" in str(info.value)


def test_numeric_cuts_are_exact_where_float32_is_not():
    """Adult's fnlwgt-like values need more digits than float32 holds; the encoding by
    gaps keeps every training value apart, and the cut sits between its neighbours."""
    train = [
        (f"x0:{v}", y) for v, y in [("1234567.78", 0), ("1234567.79", 1), ("1234567.80", 0), ("5.00", 1)]
    ]
    assert len(np.unique(np.float32([1234567.78, 1234567.79, 1234567.80]))) == 1
    fitted = tree.fit(train, "tabular", rng_for(0, 0, 1))
    assert fitted.train_acc == 1.0
    code = fitted.program()
    assert "x0 <= 1234567.785" in code and "x0 <= 1234567.795" in code
    inputs = ["x0:1234567.785", "x0:1234567.795", "x0:1234567.8", "x0:1", "x0:nope", "x1:c1"]
    assert sandbox(code, "tabular", inputs) == fitted.model.predict(fitted.encode(inputs)).tolist()


def test_formula_rendering_needs_no_extra_parentheses():
    a, b, c = (("test", Member(Column(f"x{i}", None, numeric=False), ("1",))) for i in range(3))
    cases = [
        (("xor", a, ("xor", b, c)), "(x0 == '1') ^ (x1 == '1') ^ (x2 == '1')"),
        (("and", ("not", a), ("or", b, c)), "x0 != '1' and (x1 == '1' or x2 == '1')"),
        (("xor", ("not", ("and", a, b)), c), "(not (x0 == '1' and x1 == '1')) ^ (x2 == '1')"),
        (("const", False), "False"),
    ]
    for tree_form, text in cases:
        assert formula.render(tree_form) == text


@pytest.mark.parametrize("kind", ["binary", "tabular"])
def test_formula_on_data_no_test_separates(kind):
    """Every leaf constant on the training rows: the formula is a constant, still a program."""
    x = "0101" if kind == "binary" else "x0:c1"
    found = formula.fit([(x, 1), (x, 0)], kind, rng_for(0, 0, 1), 1, **FIXED_BUDGET)
    assert (found.formula, found.stopped, found.train_acc) == (("const", False), "exhausted", 0.5)
    assert sandbox(found.program(), kind, [x]) == [0]


def test_timed_out_search_replays_from_its_candidate_count(data):
    ds = data("fn_a", 20)
    timed = formula.fit(
        ds.splits["train"], "binary", rng_for(42, 1, 1), 1, time_budget=0.3, max_candidates=None
    )
    assert timed.stopped == "time"
    replay = formula.fit(
        ds.splits["train"], "binary", rng_for(42, 1, 1), 1, time_budget=60, max_candidates=timed.candidates
    )
    assert (replay.stopped, replay.candidates) == ("max_candidates", timed.candidates)
    assert replay.program() == timed.program()
