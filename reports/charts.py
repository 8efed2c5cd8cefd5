"""The report's charts, as Vega-Lite specs built with Altair from the analyses' rows.

Every chart is drawn from rows the SQL analyses already aggregated (one per grid point
at most), never from raw attempts. Altair builds the encoding over a named dataset and
the rows are attached afterwards, trimmed to the fields the chart uses (Altair would
validate every value: 2 s for a ten-run report). Specs carry no ``$schema`` URL: the
page embeds them with the inlined Vega-Lite, so nothing refers outside the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import altair as alt

from reports.analyses import Report, proposer

ACCURACY = alt.Scale(domain=[0, 1])
FACET_COLUMNS = 5
ROWS = alt.NamedData("rows")
# A chart function's result: the chart, and the rows of each named dataset it draws.
Built = tuple[alt.TopLevelMixin, dict[str, list[dict]]]


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    caption: str
    spec: dict


def _values(rows: list[dict], fields: tuple[str, ...], **extra) -> list[dict]:
    """The fields a chart uses, its proposer's name, and ``extra`` computed fields."""
    return [
        {
            **{f: row[f] for f in fields},
            **({"proposer": proposer(row)} if "provider" in row else {}),
            **{k: compute(row) for k, compute in extra.items()},
        }
        for row in rows
    ]


def _spec(chart: alt.TopLevelMixin, datasets: dict[str, list[dict]]) -> dict:
    spec = chart.to_dict()
    spec.pop("$schema", None)
    spec["datasets"] = datasets
    return spec


def _tooltip(fields: str, accuracies: str, **formats: str) -> list:
    """A tooltip: ``fields`` (Altair shorthands) as they are, then each of ``accuracies``
    to three decimals, or in the format ``formats`` gives it by name."""
    return [
        *fields.split(),
        *(alt.Tooltip(f"{a}:Q", format=formats.get(a, ".3f")) for a in accuracies.split()),
    ]


def seed_accuracy(report: Report) -> Built:
    base = alt.Chart().encode(
        x=alt.X("length:O", title="L"),
        xOffset=alt.XOffset("seed:N"),
        color=alt.Color("proposer:N"),
    )
    points = base.mark_circle(size=45).encode(
        y=alt.Y("test_mean:Q", scale=ACCURACY, title="selected test accuracy"),
        tooltip=_tooltip(
            "run_id:N proposer:N seed:N fn:N length:O trials:Q", "test_mean test_ci_low test_ci_high"
        ),
    )
    bars = base.mark_rule(opacity=0.6).encode(y="test_ci_low:Q", y2="test_ci_high:Q")
    chart = (
        alt.layer(bars, points, data=ROWS)
        .properties(width=150, height=140)
        .facet(facet=alt.Facet("fn:N", title=None), columns=FACET_COLUMNS)
    )
    fields = ("run_id", "fn", "length", "trials", "test_mean", "test_ci_low", "test_ci_high")
    return chart, {"rows": _values(report.grid_points, fields, seed=lambda r: str(r["seed"]))}


def progression(report: Report) -> Built:
    chart = (
        alt.Chart(ROWS)
        .transform_fold(["val_mean", "test_mean"], as_=["split", "accuracy"])
        .mark_line(point=True)
        .encode(
            x=alt.X("attempt:O", title="attempts allowed (k)"),
            y=alt.Y("accuracy:Q", scale=ACCURACY, title="accuracy of the selection after k"),
            color=alt.Color("fn:N", title="task"),
            strokeDash=alt.StrokeDash(
                "split:N", title="split", legend=alt.Legend(labelExpr="replace(datum.label, '_mean', '')")
            ),
            tooltip=_tooltip("proposer:N fn:N attempt:O split:N trials:Q", "accuracy"),
        )
        .properties(width=320, height=220)
        .facet(column=alt.Column("proposer:N", title=None))
    )
    fields = ("fn", "attempt", "trials", "val_mean", "test_mean")
    return chart, {"rows": _values(report.progression, fields)}


def raw_vs_clean(report: Report) -> Built:
    chart = (
        alt.Chart(ROWS)
        .transform_fold(["raw_test_mean", "clean_test_mean"], as_=["results", "accuracy"])
        .transform_filter("datum.accuracy != null")
        .mark_bar()
        .encode(
            x=alt.X("fn:N", title="task"),
            xOffset=alt.XOffset("results:N", sort=["raw_test_mean", "clean_test_mean"]),
            y=alt.Y("accuracy:Q", scale=ACCURACY, title="mean selected test accuracy"),
            color=alt.Color(
                "results:N",
                sort=["raw_test_mean", "clean_test_mean"],
                scale=alt.Scale(range=["#9e9e9e", "#2e7d32"]),
                title=None,
                legend=alt.Legend(labelExpr="replace(datum.label, '_test_mean', '')"),
            ),
            tooltip=_tooltip("proposer:N fn:N results:N trials:Q clean_trials:Q", "accuracy"),
        )
        .properties(height=200)
        .facet(row=alt.Row("proposer:N", title=None))
        .resolve_scale(x="independent")
    )
    fields = ("fn", "trials", "raw_test_mean", "clean_trials", "clean_test_mean")
    return chart, {"rows": _values(report.raw_vs_clean, fields)}


LEAKAGE_CHECKS = [
    "train_duplicates",
    "val_duplicates",
    "test_duplicates",
    "input_train_val",
    "input_train_test",
    "input_val_test",
    "line_train_val",
    "line_train_test",
    "line_val_test",
]


def leakage_counts(report: Report) -> Built:
    base = (
        alt.Chart(ROWS)
        .transform_fold(LEAKAGE_CHECKS, as_=["check", "count"])
        .encode(
            x=alt.X("check:N", sort=LEAKAGE_CHECKS, title=None, axis=alt.Axis(labelAngle=-40)),
            y=alt.Y("dataset:N", title=None),
        )
    )
    cells = base.mark_rect().encode(
        color=alt.condition("datum.count > 0", alt.value("#e53935"), alt.value("#e8f5e9")),
        tooltip=["dataset:N", "check:N", "count:Q", "fingerprint:N"],
    )
    text = base.mark_text(fontSize=10).encode(text="count:Q")
    rows = _values(
        report.leakage,
        ("fingerprint", *LEAKAGE_CHECKS),
        dataset=lambda r: f"{r['fn']} L{r['length']} seed {r['base_seed']}",
    )
    return alt.layer(cells, text).properties(width=40 * len(LEAKAGE_CHECKS)), {"rows": rows}


def _accuracy_cells(x: alt.X, y: alt.Y, value: str, title: str, tooltip: list) -> alt.LayerChart:
    """A heatmap of accuracies in [0, 1], each cell written on it."""
    base = alt.Chart().encode(x=x, y=y)
    cells = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"), title=title),
        tooltip=tooltip,
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text(f"{value}:Q", format=".2f"),
        color=alt.condition(f"datum.{value} > 0.6", alt.value("black"), alt.value("white")),
    )
    return alt.layer(cells, text, data=ROWS)


def heatmap(report: Report) -> Built:
    chart = (
        _accuracy_cells(
            alt.X("length:O", title="L"),
            alt.Y("fn:N", title="task"),
            "test_mean",
            "test mean",
            _tooltip("proposer:N fn:N length:O runs:Q trials:Q", "test_mean val_mean"),
        )
        .properties(width=alt.Step(40), height=alt.Step(22))
        .facet(column=alt.Column("proposer:N", title=None))
    )
    fields = ("fn", "length", "runs", "trials", "test_mean", "val_mean")
    return chart, {"rows": _values(report.leaderboard, fields)}


def generalisation(report: Report) -> Built:
    """Training length x evaluation length per task (and reading), on the balanced sets."""
    rows = [r for r in report.generalisation if r["set_kind"] in ("balanced", "population")]
    chart = (
        _accuracy_cells(
            alt.X("eval_length:O", title="evaluation L"),
            alt.Y("train_length:O", title="training L"),
            "accuracy_mean",
            "mean accuracy",
            _tooltip("proposer:N task:N train_length:O eval_length:O programs:Q", "accuracy_mean"),
        )
        .properties(width=alt.Step(36), height=alt.Step(22))
        .facet(row=alt.Row("proposer:N", title=None), column=alt.Column("task:N", title=None))
    )
    fields = ("train_length", "eval_length", "programs", "accuracy_mean")
    task = {"task": lambda r: r["fn"] if r["rule"] == "task" else f"{r['fn']} ({r['rule']})"}
    return chart, {"rows": _values(rows, fields, **task)}


def val_vs_test(report: Report) -> Built:
    diagonal = (
        alt.Chart(alt.NamedData("diagonal"))
        .mark_line(color="#9e9e9e", strokeDash=[4, 4])
        .encode(x="v:Q", y="v:Q")
    )
    points = (
        alt.Chart(ROWS)
        .mark_point(filled=True, size=50)
        .encode(
            x=alt.X("val_mean:Q", scale=ACCURACY, title="mean selected val accuracy"),
            y=alt.Y("test_mean:Q", scale=ACCURACY, title="mean selected test accuracy"),
            color=alt.Color("fn:N", title="task"),
            shape=alt.Shape("proposer:N"),
            tooltip=_tooltip(
                "run_id:N proposer:N fn:N length:O trials:Q", "val_mean test_mean gap_mean", gap_mean="+.3f"
            ),
        )
    )
    chart = alt.layer(diagonal, points).properties(width=380, height=380)
    fields = ("run_id", "fn", "length", "trials", "val_mean", "test_mean", "gap_mean")
    return chart, {"rows": _values(report.grid_points, fields), "diagonal": [{"v": 0}, {"v": 1}]}


TOKEN_KINDS = ["uncached input", "cached input", "reasoning output", "visible output"]


def tokens_cost(report: Report) -> Built:
    rows = _values(
        report.tokens_points,
        ("fn", "cost"),
        **{
            "uncached input": lambda r: r["input_tokens"] - r["cached_tokens"],
            "cached input": lambda r: r["cached_tokens"],
            "reasoning output": lambda r: r["reasoning_tokens"],
            "visible output": lambda r: r["output_tokens"] - r["reasoning_tokens"],
        },
    )
    tokens = (
        alt.Chart(ROWS)
        .transform_fold(TOKEN_KINDS, as_=["kind", "tokens"])
        .mark_bar()
        .encode(
            y=alt.Y("fn:N", title="task"),
            x=alt.X("sum(tokens):Q", title="tokens"),
            color=alt.Color("kind:N", sort=TOKEN_KINDS, title="tokens"),
            tooltip=["fn:N", "kind:N", alt.Tooltip("sum(tokens):Q", format=",")],
        )
        .properties(width=320)
    )
    cost = (
        alt.Chart(ROWS)
        .transform_filter("datum.cost != null")
        .mark_bar()
        .encode(
            y=alt.Y("fn:N", title=None),
            x=alt.X("sum(cost):Q", title="cost (USD; priced models only)"),
            color=alt.Color("proposer:N"),
            tooltip=["fn:N", "proposer:N", alt.Tooltip("sum(cost):Q", format="$.4f")],
        )
        .properties(width=240)
    )
    return alt.hconcat(tokens, cost).resolve_scale(color="independent"), {"rows": rows}


def attempts_to_solve(report: Report) -> Built:
    rows = report.attempts_to_solve
    order = [*map(str, sorted({r["solved_at"] for r in rows} - {None})), "unsolved"]
    chart = (
        alt.Chart(ROWS)
        .mark_bar()
        .encode(
            x=alt.X("solved:N", title="attempt that reached val accuracy 1.0", sort=order),
            xOffset=alt.XOffset("proposer:N"),
            y=alt.Y("sum(trials):Q", title="trials"),
            color=alt.Color("proposer:N"),
            tooltip=["proposer:N", "solved:N", alt.Tooltip("sum(trials):Q", title="trials")],
        )
        .properties(width=320, height=200)
    )
    solved = {"solved": lambda r: str(r["solved_at"] or "unsolved")}
    return chart, {"rows": _values(rows, ("trials",), **solved)}


CHARTS = [
    (
        "seed-accuracy",
        "Seed-level test accuracy",
        seed_accuracy,
        "Each run's (global seed's) mean selected test accuracy per task and length, with its "
        "95% CI over trials.",
    ),
    (
        "heatmap",
        "Task x length accuracy",
        heatmap,
        "Mean selected test accuracy over every trial of every run, per proposer.",
    ),
    (
        "generalisation",
        "Generalisation: training length x evaluation length",
        generalisation,
        "Mean accuracy of the selected programs on fresh balanced sets (tabular: the whole "
        'source table) per task, from `synth verify`; "(extended)": the training rule kept '
        "on longer inputs.",
    ),
    (
        "progression",
        "Attempt progression",
        progression,
        "Accuracy of the attempt selection (by validation) would choose after k attempts; "
        "trials that stopped early keep their result.",
    ),
    (
        "val-vs-test",
        "Validation vs test",
        val_vs_test,
        "Each run and grid point: mean selected validation against test accuracy. Below the "
        "diagonal, validation overestimates.",
    ),
    (
        "attempts-to-solve",
        "Attempts to solve",
        attempts_to_solve,
        "Trials by the attempt at which validation accuracy reached 1.0 (the trial stopped).",
    ),
    (
        "leakage",
        "Leakage counts",
        leakage_counts,
        "Duplicate inputs within each split and inputs (or whole lines) shared between splits, "
        "per dataset. Red: not zero.",
    ),
    (
        "raw-vs-clean",
        "Raw vs leakage-clean results",
        raw_vs_clean,
        "Mean selected test accuracy over every trial (raw) and over trials on datasets with "
        "no input shared between splits (clean).",
    ),
    (
        "tokens-cost",
        "Tokens and cost per task",
        tokens_cost,
        "Token sums per task by kind, and their cost from the price table (models without a "
        "price are left out of the cost).",
    ),
]


def build_charts(report: Report) -> list[Chart]:
    return [Chart(id, title, caption, _spec(*make(report))) for id, title, make, caption in CHARTS]
