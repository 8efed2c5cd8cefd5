"""The report's analyses against values worked out by hand from tests/report_fixtures.py."""

import json
import random
import statistics
from statistics import mean

import pytest

from reports import ReportError
from reports.analyses import analyse_scope
from reports.scope import resolve_scope
from reports.stats import summary, t_975
from tracker.db import open_db
from tracker.exact_stats import pstdev
from tracker.exports import summarise
from tracker.prices import PriceError, load_prices

ALL = ["r0", "r1", "r2", "r3", "r4"]


@pytest.fixture(scope="module")
def db(report_db):
    db = open_db(report_db, readonly=True)
    yield db
    db.conn.close()


def report_of(db, run_ids=None, filters=None):
    return analyse_scope(db, resolve_scope(db, run_ids, filters), load_prices(), "test.db")


@pytest.fixture(scope="module")
def report(db):
    return report_of(db, ALL)


def by(rows, *keys):
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows}


def test_grid_points_over_selected_trials(report):
    points = by(report.grid_points, "run_id", "fn")
    assert set(points) == {("r1", "fn_a"), ("r1", "fn_b"), ("r2", "fn_a"), ("r2", "fn_b"), ("r3", "fn_a")}
    a = points[("r1", "fn_a")]  # trial 1 selects attempt 2 (val 1.0, test 0.75); trial 2 scores 0
    assert a["trials"] == 2 and a["solved"] == 1 and a["attempts_mean"] == 2.5
    assert (a["test_mean"], a["test_std"], a["test_min"], a["test_max"]) == (0.375, 0.375, 0.0, 0.75)
    assert (a["val_mean"], a["val_std"]) == (0.5, 0.5)
    assert (a["test_ci_low"], a["test_ci_high"]) == (0.0, 1.0)  # t(1) = 12.7: clipped
    assert a["gap_mean"] == pytest.approx(0.125)
    # attempt 1 scored 0.5 and 0 (no program): the selection gains 0.125, as the oracle
    assert a["first_test_mean"] == 0.25 and a["oracle_test_mean"] == 0.375
    assert a["improvement_selected"] == a["improvement_oracle"] == pytest.approx(0.125)
    b = points[("r1", "fn_b")]  # trial 1: val ties at 0.5 -> attempt 1 (test 1.0)
    assert (b["test_mean"], b["test_std"], b["val_mean"], b["gap_mean"]) == (0.75, 0.25, 0.75, 0.0)
    tree = points[("r3", "fn_a")]
    assert tree["provider"] == "tree" and tree["trials"] == 1
    assert tree["test_std"] == 0.0 and tree["test_ci_low"] is None and tree["test_ci_high"] is None


def test_offline_proposers_have_no_reasoning_effort(report):
    runs = by(report.runs, "run_id")
    assert runs["r3"]["provider"] == "tree" and runs["r3"]["reasoning_effort"] is None
    assert runs["r1"]["provider"] == "openai" and runs["r1"]["reasoning_effort"] == "high"


def test_dry_runs_and_unfinished_trials_have_no_results(report):
    assert not {r["run_id"] for r in report.grid_points} & {"r0", "r4"}
    assert {r["run_id"] for r in report.programs} == {"r1", "r2", "r3"}


def test_run_results_attempt_one_selected_and_test_oracle(report):
    r1 = by(report.run_results, "run_id")["r1"]
    assert r1["trials"] == 4
    assert r1["first_test_mean"] == 0.5 and r1["test_mean"] == 0.5625
    assert r1["oracle_test_mean"] == 0.5625
    r2 = by(report.run_results, "run_id")["r2"]  # fn_a trial 2: 0.5 at attempt 1, 1.0 at 2
    assert (r2["first_test_mean"], r2["test_mean"]) == (0.8125, 0.9375)
    assert r2["improvement_selected"] == pytest.approx(0.125)


def test_leaderboard_ranks_proposers_over_their_runs(report):
    rows = [(r["fn"], r["provider"], r["runs"], r["trials"], r["test_mean"]) for r in report.leaderboard]
    assert rows == [
        ("fn_a", "tree", 1, 1, 0.75),
        ("fn_a", "openai", 2, 4, 0.6875),
        ("fn_b", "openai", 2, 4, 0.8125),
    ]
    fn_b = report.leaderboard[2]  # test accuracies 1.0, 0.5, 0.75, 1.0
    assert fn_b["test_std"] == pytest.approx(0.207289, abs=1e-6)
    assert fn_b["test_ci_low"] == pytest.approx(0.8125 - 3.182 * 0.207289 / 3**0.5, abs=1e-5)
    assert fn_b["test_ci_high"] == 1.0


@pytest.fixture
def own_db(report_db, tmp_path):
    """A writable copy of the fixture database, for a test that changes it."""
    path = tmp_path / "own.db"
    path.write_bytes(report_db.read_bytes())
    db = open_db(path)
    yield db
    db.conn.close()


def test_the_leaderboard_keeps_settings_apart_but_pools_seeds(own_db):
    own_db.execute(
        "update runs set config = json_set(config, '$.reasoning_effort', 'low') where run_id = 'r2'"
    )
    own_db.conn.commit()
    rows = report_of(own_db, ALL).leaderboard
    assert {(r["fn"], r["provider"], r["setting"], r["attempts"], r["runs"]) for r in rows} == {
        ("fn_a", "tree", None, 3, 1),
        ("fn_a", "openai", "high", 3, 1),
        ("fn_a", "openai", "low", 3, 1),
        ("fn_b", "openai", "high", 3, 1),
        ("fn_b", "openai", "low", 3, 1),
    }


def test_means_are_the_exports_means_to_the_last_digit(own_db):
    """SQLite adds naively (0.5 + 0.47 + 0.45 + 0.45 = 1.8699999999999999); the exports'
    fmean rounds once (0.4675 prints as 0.468): the report must print what `show` does."""
    trials = [
        r[0]
        for r in own_db.execute("select id from trials where fn = 'fn_b' and status = 'done' order by id")
    ]
    values = [0.5, 0.47, 0.45, 0.45]
    assert len(trials) == len(values)
    for trial_id, value in zip(trials, values):
        own_db.execute("update trials set test_acc = ? where id = ?", [value, trial_id])
    own_db.conn.commit()
    (row,) = [r for r in report_of(own_db, ALL).leaderboard if r["fn"] == "fn_b"]
    assert row["test_mean"] == summarise(values)[0] == 0.4675
    assert f"{row['test_mean']:.3f}" == "0.468"
    values = [2853 / 2854, 1 / 3, 2 / 7, 5 / 9]  # 17 significant digits each
    for trial_id, value in zip(trials, values):
        own_db.execute("update trials set test_acc = ? where id = ?", [value, trial_id])
    own_db.conn.commit()
    (row,) = [r for r in report_of(own_db, ALL).leaderboard if r["fn"] == "fn_b"]
    assert (row["test_mean"], row["test_std"]) == summarise(values), "every bit of every value"


def test_seed_spread_across_runs_sharing_a_grid(report):
    spread = by(report.seed_spread, "fn")
    assert set(spread) == {"fn_a", "fn_b"}  # the tree ran one seed: no spread
    a = spread["fn_a"]  # run means: r1 0.375, r2 1.0
    assert (a["seeds"], a["runs"], sorted(a["seed_list"].split(","))) == (2, 2, ["1", "2"])
    assert (a["test_mean"], a["test_std"], a["test_min"], a["test_max"]) == (0.6875, 0.3125, 0.375, 1.0)
    assert spread["fn_b"]["test_mean"] == 0.8125 and spread["fn_b"]["test_std"] == 0.0625


def test_leakage_audit_of_every_dataset(report):
    audit = {(d["fn"], d["base_seed"]): d for d in report.leakage}
    assert len(audit) == 4
    leaky = audit[("fn_b", 1)]
    assert sorted(leaky["runs"]) == ["r1"]
    assert [leaky[f"{s}_rows"] for s in ("train", "val", "test")] == [2, 2, 4]
    assert [leaky[f"{s}_duplicates"] for s in ("train", "val", "test")] == [0, 0, 1]
    assert (leaky["input_train_val"], leaky["input_train_test"], leaky["input_val_test"]) == (1, 1, 0)
    assert (leaky["line_train_val"], leaky["line_train_test"], leaky["line_val_test"]) == (1, 0, 0)
    assert leaky["input_overlap"] == 2 and leaky["clean"] is False
    assert sorted(audit[("fn_a", 1)]["runs"]) == ["r0", "r1", "r3", "r4"]
    assert all(d["clean"] for key, d in audit.items() if key != ("fn_b", 1))


def test_raw_vs_clean_leaves_out_leaky_datasets(report):
    assert {r["length"] for r in report.raw_vs_clean} == {4}  # per grid point, not across lengths
    rows = by(report.raw_vs_clean, "provider", "fn")
    b = rows[("openai", "fn_b")]  # r1 on the leaky B1 (1.0, 0.5), r2 on B2 (0.75, 1.0)
    assert (b["trials"], b["raw_test_mean"], b["clean_trials"], b["clean_test_mean"]) == (4, 0.8125, 2, 0.875)
    a = rows[("openai", "fn_a")]
    assert a["raw_test_mean"] == a["clean_test_mean"] == 0.6875
    assert rows[("tree", "fn_a")]["clean_test_mean"] == 0.75


def test_compile_and_extraction_statistics(report):
    stats = by(report.compile, "run_id")
    assert "r0" not in stats  # a dry run proposes nothing
    r1 = stats["r1"]
    assert (r1["attempts"], r1["call_failed"], r1["extract_failed"], r1["evaluated"]) == (9, 1, 1, 7)
    assert (r1["compile_ok"], r1["answered"], r1["compile_ok_rate"]) == (6, 8, 0.75)
    assert (r1["ran_ok"], r1["with_row_errors"], r1["pending"]) == (5, 2, 0)
    assert stats["r2"]["compile_ok_rate"] == 1.0
    assert (stats["r4"]["pending"], stats["r4"]["answered"], stats["r4"]["compile_ok_rate"]) == (1, 0, None)


def test_failure_classes_and_most_common_errors(report):
    classes = {(r["run_id"], r["stage"], r["class"]): r["attempts"] for r in report.failure_classes}
    assert classes == {
        ("r1", "call", "call_rate_limit"): 1,
        ("r1", "extraction", "no_json"): 1,
        ("r1", "evaluation", "compile_error"): 1,
        ("r1", "evaluation", "timeout"): 1,
    }
    errors = [(e["message"], e["source"], e["occurrences"], e["runs"]) for e in report.errors]
    assert errors == [
        ("IndexError: x", "evaluation", 2, 2),
        ("SyntaxError: bad", "evaluation", 1, 1),
        ("no JSON object in the reply", "attempt", 1, 1),
        ("rate limited (429)", "attempt", 1, 1),
    ]


def test_attempts_to_solve_distribution(report):
    solved = {(r["run_id"], r["solved_at"]): r["trials"] for r in report.attempts_to_solve}
    assert solved == {
        ("r1", 1): 1,
        ("r1", 2): 1,
        ("r1", None): 2,
        ("r2", 1): 2,
        ("r2", 2): 1,
        ("r2", None): 1,
        ("r3", 1): 1,
    }


def test_progression_of_the_selection_over_attempts(report):
    rows = by([r for r in report.progression if r["provider"] == "openai"], "fn", "attempt")
    # fn_a trials, (val, test) per attempt: [(.5,.5),(1,.75)], [(0,0)x3], [(1,1)], [(.5,.5),(1,1)]
    assert [(rows[("fn_a", k)]["val_mean"], rows[("fn_a", k)]["test_mean"]) for k in (1, 2, 3)] == [
        (0.5, 0.5),
        (0.75, 0.6875),
        (0.75, 0.6875),
    ]
    assert all(rows[("fn_a", k)]["trials"] == 4 for k in (1, 2, 3))  # early stops carry forward
    assert rows[("fn_b", 3)]["test_mean"] == 0.8125  # later attempts never beat the ties


def test_progression_is_the_selection_after_k_attempts_of_every_trial(db, report):
    """The query (each trial's record attempts) against the selection itself, made anew
    for each k in Python from every attempt, as the query it replaced ranked them."""
    rows = db.query(
        "select a.trial_id, r.provider, r.model, a.fn, a.attempt, coalesce(a.val_acc, 0) as val, "
        "coalesce(a.test_acc, 0) as test from attempt_rows a join trials t on t.id = a.trial_id "
        "join runs r on r.run_id = t.run_id where t.status = 'done' and not r.dry_run"
    )
    trials = {}
    for row in rows:
        trials.setdefault(row["trial_id"], []).append(row)
    ks = sorted({a["attempt"] for attempts in trials.values() for a in attempts})
    chosen = {}
    for attempts in trials.values():
        for k in ks:
            so_far = [a for a in attempts if a["attempt"] <= k]
            if so_far:
                best = max(so_far, key=lambda a: (a["val"], -a["attempt"]))
                chosen.setdefault((best["provider"], best["model"], best["fn"], k), []).append(best)
    expected = {
        key: (len(c), mean(a["val"] for a in c), mean(a["test"] for a in c)) for key, c in chosen.items()
    }
    got = {
        (r["provider"], r["model"], r["fn"], r["attempt"]): (r["trials"], r["val_mean"], r["test_mean"])
        for r in report.progression
    }
    assert got == expected and len(got) > 8  # the values are sums of halves and quarters: exact


def test_tokens_and_cost_per_run_and_grid_point(report):
    runs = by(report.tokens_runs, "run_id")
    r1 = runs["r1"]  # 8 replies of 100 input (40 cached), 50 output (30 reasoning)
    assert (
        r1["calls"],
        r1["input_tokens"],
        r1["cached_tokens"],
        r1["output_tokens"],
        r1["reasoning_tokens"],
    ) == (8, 800, 320, 400, 240)
    assert r1["cost"] == pytest.approx((480 * 1.25 + 320 * 0.125 + 400 * 10) / 1e6)
    assert runs["r4"]["input_tokens"] == 100 and runs["r4"]["cost"] is None  # a model with no price
    assert runs["r3"]["calls"] == 1 and runs["r3"]["cost"] == 0  # the tree has no price, no tokens
    assert runs["r0"]["calls"] == 0 and runs["r0"]["cost"] == 0
    points = by(report.tokens_points, "run_id", "fn")
    assert points[("r2", "fn_a")]["calls"] == 3 and points[("r2", "fn_a")]["input_tokens"] == 300


def test_gate_verdict_per_run_and_overall(db, report):
    verdicts = {
        r["run_id"]: (r["verdict"], r["input_leakage"], r["compile_ok_rate"]) for r in report.gate["runs"]
    }
    assert verdicts == {
        "r0": ("n/a", 0, None),
        "r1": ("fail", 2, 0.75),
        "r2": ("pass", 0, 1.0),
        "r3": ("pass", 0, 1.0),
        "r4": ("n/a", 0, None),
    }
    assert by(report.gate["runs"], "run_id")["r1"]["reasons"] == [
        "2 inputs shared between splits",
        "compile-ok rate 0.750 < 0.99",
    ]
    assert report.gate["verdict"] == "fail"
    assert report_of(db, ["r2", "r3"]).gate["verdict"] == "pass"
    assert report_of(db, ["r0"]).gate["verdict"] == "n/a"


def test_programs_of_selected_attempts(report):
    programs = by(report.programs, "run_id", "fn", "trial")
    assert programs[("r1", "fn_a", 1)]["selected_attempt"] == 2
    assert programs[("r1", "fn_a", 1)]["code"].startswith("def f(x):")
    no_program = programs[("r1", "fn_a", 2)]
    assert no_program["code"] is None and no_program["failure_class"] == "no_json"


@pytest.mark.parametrize(
    "run_ids, filters, expected",
    [
        (None, None, ("r4",)),  # the latest run
        (None, {"model": "gpt-5"}, ("r0", "r1", "r2")),
        (None, {"provider": ["tree"]}, ("r3",)),
        (None, {"task": "fn_b"}, ("r1", "r2")),
        (["r3", "r1"], None, ("r3", "r1")),
        (["r1", "r3"], {"provider": "openai"}, ("r1",)),
    ],
)
def test_scope_by_run_ids_and_filters(db, run_ids, filters, expected):
    assert resolve_scope(db, run_ids, filters).run_ids == expected


def test_task_filter_narrows_every_analysis(db):
    report = report_of(db, ALL, {"task": "fn_b"})
    assert {r["fn"] for r in report.grid_points + report.leakage + report.tokens_points} == {"fn_b"}
    assert by(report.tokens_runs, "run_id")["r1"]["calls"] == 4
    assert by(report.gate["runs"], "run_id")["r2"]["verdict"] == "pass"


@pytest.mark.parametrize(
    "run_ids, filters, message",
    [
        (["r1", "nope"], None, "no run 'nope'"),
        (None, {"model": "gpt-9"}, "no run matches model=gpt-9"),
        (["r3"], {"task": "fn_b"}, "no run matches task=fn_b"),
        (None, {"colour": "red"}, "unknown report filter 'colour'"),
    ],
)
def test_scope_errors_say_what_is_wrong(db, run_ids, filters, message):
    with pytest.raises(ReportError, match=message):
        resolve_scope(db, run_ids, filters)


def test_t_quantiles_and_summary():
    assert t_975(4) == 2.776
    assert t_975(31) == pytest.approx(2.0395, abs=1e-4)
    assert t_975(120) == pytest.approx(1.9799, abs=1e-4)
    s = summary([1, 1, 0.5, 0.5])
    assert (s["mean"], s["std"]) == (0.75, 0.25)
    assert s["ci_low"] == pytest.approx(0.75 - 3.182 * 0.25 / 3**0.5)
    assert summary([])["mean"] is None


def test_prices_snapshots_overrides_and_bad_files(tmp_path, monkeypatch):
    prices = load_prices()
    assert prices.price("gpt-5-2025-08-07") == prices.price("gpt-5")
    assert prices.cost("gpt-5-mini", 100, 40, 50) == pytest.approx((60 * 0.25 + 40 * 0.025 + 50 * 2) / 1e6)
    assert prices.price("gpt-5-pro-x") is None and prices.cost("tree", 10, 0, 10) is None
    user = tmp_path / "prices.json"
    user.write_text(
        json.dumps(
            {
                "as_of": "2030-01",
                "models": {"tree": {"input": 0, "output": 0}, "gpt-5": {"input": 2.0, "output": 20.0}},
            }
        )
    )
    monkeypatch.setenv("SYNTH_PRICES", str(user))
    overridden = load_prices()
    assert overridden.cost("tree", 10, 0, 10) == 0
    assert overridden.cost("gpt-5", 1_000_000, 500_000, 0) == 2.0  # no cached price: input price
    assert overridden.price("o3") == prices.price("o3") and overridden.as_of == "2030-01"
    user.write_text('{"models": {"m": {"input": -1, "output": 1}}}')
    with pytest.raises(PriceError, match="'m' needs non-negative numbers"):
        load_prices()
    with pytest.raises(PriceError, match="cannot read price table"):
        load_prices(tmp_path / "missing.json")


def test_pstdev_is_the_standard_librarys_to_the_last_bit():
    """tracker.exact_stats.pstdev against statistics.pstdev: accuracies, halves, floats of
    every magnitude (subnormal ones too), negative numbers and whole numbers."""
    rng = random.Random(7)
    draws = [
        lambda: rng.randint(0, 10_000) / 10_000,
        lambda: rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]),
        lambda: rng.random() * 10 ** rng.randint(-300, 300),
        lambda: rng.uniform(-1e6, 1e6),
        lambda: rng.randint(-5, 5),
        lambda: rng.random() * 2 ** rng.randint(-1074, -1000),
    ]
    for _ in range(3000):
        draw = rng.choice(draws)
        values = [draw() for _ in range(rng.choice([1, 2, 3, 34, 337]))]
        assert pstdev(values) == statistics.pstdev(values), values
    assert pstdev([1, 1, 1]) == 0.0 and type(pstdev([1, 2])) is float
