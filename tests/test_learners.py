"""The classical learners (logreg, forest, boosting, mlp, svm, knn) as proposers.

Each emitted program must predict exactly what its fitted estimator's ``predict`` does,
on every row of every split, through the real sandbox; settings are chosen on the
validation split alone; a proposal depends on the seed, trial and attempt only.
"""

import asyncio
import dataclasses
import json
import sys

import pytest
from helpers import assert_predicts_like, grid, one_line_error, request, run_cli

from synth.config import OFFLINE_PROVIDERS
from synth.providers import ProposeRequest
from synth.providers.offline import learners, make_offline_provider
from synth.providers.offline.base import rng_for
from tracker.db import open_db

LEARNERS = learners.LEARNERS
# (task, length, attempt): binary, decimal and graph inputs, all columns or a random half.
POINTS = [("fn_e", 20, 1), ("fn_i", 20, 2), ("fn_aa", 50, 1), ("fn_a", 50, 2)]


def fitted(ds, name, *, seed=42, trial=1, attempt=1, val=None):
    splits = ds.splits
    rng = rng_for(seed, trial, attempt)
    return learners.fit(
        name, splits["train"], ds.point.task.kind, rng, attempt, splits["val"] if val is None else val
    )


def test_every_learner_is_a_provider():
    assert set(LEARNERS) <= set(OFFLINE_PROVIDERS)
    assert set(learners.GRIDS) == set(learners.FIXED) == set(learners.EMITTERS) == set(LEARNERS)


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize("fn,length,attempt", POINTS)
def test_program_predicts_what_the_estimator_predicts(data, name, fn, length, attempt):
    ds = data(fn, length)
    f = fitted(ds, name, attempt=attempt)
    code = f.program()
    assert "import numpy" not in code and "sklearn" not in code
    assert_predicts_like(code, ds, f.predict)


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize("fn,length", [("fn_m", 14), ("fn_n", 20)])
def test_program_on_tabular_data(data, uci_dir, name, fn, length):
    """Adult (numbers and categories) and mushroom: the raw dict is read, by key."""
    ds = data(fn, length, uci_dir)
    f = fitted(ds, name)
    code = f.program()
    assert "x.get('x" in code
    assert_predicts_like(code, ds, f.predict)
    assert f.describe()["program_chars"] == len(code)


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNERS)
def test_settings_are_chosen_on_the_validation_split(data, name):
    """The chosen setting is the first of the best on validation; with the validation
    labels flipped, every score flips and the choice follows. The test split is never
    part of a request."""
    ds = data("fn_c", 20)
    f = fitted(ds, name)
    scores = f.val_scores
    assert len(scores) == len(learners.GRIDS[name]) and None not in scores
    assert f.params["chosen"] == learners.GRIDS[name][scores.index(max(scores))]
    flipped = fitted(ds, name, val=[(x, 1 - y) for x, y in ds.splits["val"]])
    assert flipped.val_scores == pytest.approx([1 - s for s in scores])
    assert flipped.params["chosen"] == learners.GRIDS[name][flipped.val_scores.index(max(flipped.val_scores))]
    assert "test" not in {field.name for field in dataclasses.fields(ProposeRequest)}


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNERS)
def test_proposals_are_deterministic_and_attempts_differ(data, name):
    ds = data("fn_a", 20)
    provider = make_offline_provider(name)

    async def propose(**at):
        try:
            return [await provider.propose(request(ds, **a)) for a in at["at"]]
        finally:
            await provider.aclose()

    first, again, second, other_trial = asyncio.run(propose(at=[{}, {}, {"attempt": 2}, {"trial": 2}]))
    assert first.text == again.text and first.raw == again.raw and first.request == again.request
    assert second.text != first.text and second.request["columns"] == 10  # a random half of 20
    if name in learners.SEEDED:  # a random state per trial
        assert other_trial.text != first.text
    else:  # nothing random in attempt 1: the same training split gives the same program
        assert other_trial.text == first.text
    assert first.request["chosen"] in learners.GRIDS[name]
    assert first.raw["program_chars"] == len(json.loads(first.text)["code"])


def test_one_label_in_training_gives_a_constant_program():
    train = [("0101", 1), ("0011", 1)]
    f = learners.fit("logreg", train, "binary", rng_for(0, 0, 1), 1, [("1111", 0)])
    assert f.program() == "def f(x):\n    return 1\n"
    assert f.predict(["0000"]).tolist() == [1]


def test_without_scikit_learn_the_run_says_to_install_the_extra(workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.ensemble", None)
    result = run_cli("run", "--provider", "mlp", *grid(), "--db", "w.db")
    one_line_error(result, "install the `baselines` extra")
    assert not (workdir / "w.db").exists() and not (workdir / "runs").exists()


@pytest.mark.slow
def test_a_run_records_the_learner_settings_and_its_programs(workdir):
    result = run_cli(
        "run", "--provider", "knn", *grid("fn_e", trials=2, attempts=2), "--reasoning-effort", "low",
        "--db", "w.db", "--run-id", "k",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("Warning: --reasoning-effort does not apply to --provider knn; ignored\n")
    db = open_db("w.db", readonly=True)
    rows = db.execute(
        "select r.request_json, r.raw_json, p.code from attempts a join responses r on r.attempt_id = a.id "
        "join programs p on p.hash = a.program_hash join evaluations e on e.attempt_id = a.id"
    ).fetchall()
    assert len(rows) >= 2
    for request_json, raw_json, code in rows:
        req, raw = json.loads(request_json), json.loads(raw_json)
        assert (
            req["proposer"] == "knn"
            and req["metric"] == "manhattan"
            and req["chosen"] in learners.GRIDS["knn"]
        )
        assert raw["program_chars"] == len(code) and raw["stored_points"] == 10
