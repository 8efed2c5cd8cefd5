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

from reports.analyses import Report, proposer, task_label
from reports.tables import setting

ACCURACY = alt.Scale(domain=[0, 1])
FACET_COLUMNS = 4
ROWS = alt.NamedData("rows")
# Okabe and Ito's colour-blind-safe palette, and marker shapes to tell overlaps apart.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
SHAPES = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down", "triangle-left", "wedge"]
# A chart function's result: the chart, and the rows of each named dataset it draws.
Built = tuple[alt.TopLevelMixin, dict[str, list[dict]]]


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    caption: str
    spec: dict


@dataclass(frozen=True)
class Keys:
    """What every chart of a report names the same way: each proposer's colour and shape
    (one scale domain, every proposer the report draws, in the order of its runs) and
    each task's name (from its stored datasets)."""

    proposers: list[str]
    tasks: dict[str, str]

    @classmethod
    def of(cls, report: Report) -> Keys:
        drawn = (report.leaderboard, report.progression, report.attempts_to_solve, report.tokens_points)
        names = {proposer(row) for rows in drawn for row in rows}
        return cls(
            list(dict.fromkeys(p for p in map(proposer, report.runs) if p in names)),
            {d["fn"]: task_label(d) for d in report.leakage},
        )

    def color(self) -> alt.Color:
        """The proposer's colour; its legend merges with the shape's, drawn opaque
        whatever mark (a faint band) comes first."""
        scale = alt.Scale(domain=self.proposers, range=PALETTE)
        return alt.Color("proposer:N", scale=scale, legend=alt.Legend(symbolOpacity=1))

    def shape(self) -> alt.Shape:
        return alt.Shape("proposer:N", scale=alt.Scale(domain=self.proposers, range=SHAPES))

    def values(self, rows: list[dict], fields: tuple[str, ...], **extra) -> list[dict]:
        """The fields a chart uses, its proposer's and task's names, and ``extra``
        computed fields."""
        return [
            {
                **{f: row[f] for f in fields},
                **({"proposer": proposer(row)} if "provider" in row else {}),
                **({"task": self.tasks.get(row["fn"], row["fn"])} if "fn" in row else {}),
                **{k: compute(row) for k, compute in extra.items()},
            }
            for row in rows
        ]


def _spec(chart: alt.TopLevelMixin, datasets: dict[str, list[dict]]) -> dict:
    spec = chart.to_dict(validate=False)
    spec.pop("$schema", None)
    spec["datasets"] = datasets
    return spec


def _tooltip(fields: str, accuracies: str, **formats: str) -> list:
    """A tooltip: ``fields`` (Altair shorthands) as they are, then each of ``accuracies``
    to three decimals, or in the format ``formats`` gives it by name. Channels are given
    as objects throughout this module, never as shorthand strings: Altair turns each
    string into its channel by indexing its whole schema anew (~10 ms a string, a fifth
    of a report's charts)."""
    return [
        *map(alt.Tooltip, fields.split()),
        *(alt.Tooltip(f"{a}:Q", format=formats.get(a, ".3f")) for a in accuracies.split()),
    ]


def _per_task(chart: alt.LayerChart, **resolve) -> alt.FacetChart:
    """One panel per task, named; each panel's length axis holds only its own lengths."""
    return chart.facet(facet=alt.Facet("task:N", title=None), columns=FACET_COLUMNS).resolve_scale(
        x="independent", **resolve
    )


LENGTH_AXIS = alt.X(
    "length:Q", title="L", scale=alt.Scale(zero=False, nice=False), axis=alt.Axis(format="d", tickMinStep=1)
)


def accuracy_by_length(report: Report, k: Keys) -> Built:
    rows = k.values(
        report.leaderboard,
        ("fn", "length", "runs", "trials", "test_mean", "test_ci_low", "test_ci_high"),
        setting=setting,
    )
    several = len({(r["proposer"], r["setting"]) for r in rows}) > len({r["proposer"] for r in rows})
    series = {"strokeDash": alt.StrokeDash("setting:N")} if several else {"detail": alt.Detail("setting:N")}
    base = alt.Chart().encode(x=LENGTH_AXIS, **series)
    band = base.mark_area(opacity=0.15).encode(
        y=alt.Y("test_ci_low:Q"), y2=alt.Y2("test_ci_high:Q"), color=k.color()
    )
    line = base.mark_line().encode(
        y=alt.Y("test_mean:Q", scale=ACCURACY, title="selected test accuracy"), color=k.color()
    )
    points = base.mark_point(filled=True, size=60, opacity=1).encode(
        y=alt.Y("test_mean:Q"),
        color=k.color(),
        shape=k.shape(),
        tooltip=_tooltip(
            "proposer:N setting:N task:N length:Q runs:Q trials:Q", "test_mean test_ci_low test_ci_high"
        ),
    )
    chart = _per_task(alt.layer(band, line, points, data=ROWS).properties(width=220, height=170))
    return chart, {"rows": rows}


def progression(report: Report, k: Keys) -> Built:
    chart = (
        alt.Chart()
        .transform_fold(["val_mean", "test_mean"], as_=["split", "accuracy"])
        .encode(
            x=alt.X("attempt:Q", title="attempts allowed (k)", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("accuracy:Q", scale=ACCURACY, title="accuracy of the selection after k"),
            color=k.color(),
            tooltip=_tooltip("proposer:N task:N attempt:Q split:N trials:Q", "accuracy"),
        )
    )
    split = alt.StrokeDash(
        "split:N", title="split", legend=alt.Legend(labelExpr="replace(datum.label, '_mean', '')")
    )
    layered = alt.layer(
        chart.mark_line().encode(strokeDash=split),
        chart.mark_point(filled=True, size=40).encode(shape=k.shape(), detail=alt.Detail("split:N")),
        data=ROWS,
    )
    fields = ("fn", "attempt", "trials", "val_mean", "test_mean")
    rows = k.values(report.progression, fields)
    return _per_task(layered.properties(width=220, height=170)), {"rows": rows}


def raw_vs_clean(report: Report, k: Keys) -> Built:
    base = alt.Chart().encode(
        x=alt.X("length:O", title="L", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("proposer:N", scale=alt.Scale(domain=k.proposers)),
        color=k.color(),
    )
    tooltip = _tooltip("proposer:N task:N length:O trials:Q clean_trials:Q", "raw_test_mean clean_test_mean")
    rule = base.mark_rule().encode(
        y=alt.Y("raw_test_mean:Q"), y2=alt.Y2("clean_test_mean:Q"), color=k.color()
    )
    raw = base.mark_point(filled=False, size=70).encode(
        y=alt.Y("raw_test_mean:Q", scale=ACCURACY, title="mean selected test accuracy"),
        shape=k.shape(),
        tooltip=tooltip,
    )
    clean = base.mark_point(filled=True, size=70).encode(
        y=alt.Y("clean_test_mean:Q"), shape=k.shape(), tooltip=tooltip
    )
    chart = _per_task(alt.layer(rule, raw, clean, data=ROWS).properties(width=alt.Step(40), height=170))
    fields = ("fn", "length", "trials", "raw_test_mean", "clean_trials", "clean_test_mean")
    return chart, {"rows": k.values(report.raw_vs_clean, fields)}


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


# Within a split, duplicates are the task's own (short palindromes repeat by design);
# only what crosses splits is leakage.
CROSS_SPLIT = [c for c in LEAKAGE_CHECKS if not c.endswith("_duplicates")]


def leakage_counts(report: Report, k: Keys) -> Built:
    cross = " || ".join(f"datum.check == '{c}'" for c in CROSS_SPLIT)
    base = (
        alt.Chart(ROWS)
        .transform_fold(LEAKAGE_CHECKS, as_=["check", "count"])
        .transform_calculate(
            kind=f"datum.count == 0 ? 'none' : ({cross}) ? 'across splits' : 'within a split'"
        )
        .encode(
            x=alt.X("check:N", sort=LEAKAGE_CHECKS, title=None, axis=alt.Axis(labelAngle=-40)),
            y=alt.Y("dataset:N", title=None, sort=None),
        )
    )
    kinds = alt.Scale(
        domain=["none", "within a split", "across splits"], range=["#f0f0f0", "#c6dbef", "#d55e00"]
    )
    cells = base.mark_rect().encode(
        color=alt.Color("kind:N", scale=kinds, title=None),
        tooltip=_tooltip("dataset:N check:N count:Q fingerprint:N", ""),
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("count:Q"),
        color=alt.condition("datum.kind == 'across splits'", alt.value("white"), alt.value("black")),
    )
    counted = [r for r in report.leakage if any(r[c] for c in LEAKAGE_CHECKS)]
    rows = k.values(
        counted,
        ("fingerprint", *LEAKAGE_CHECKS),
        dataset=lambda r: f"{task_label(r)} L{r['length']} seed {r['base_seed']}",
    )
    if none := len(report.leakage) - len(counted):
        # One row for the datasets with nothing to show: a row each made a thousand-dataset
        # figure a tall grid of zeros that took most of --figures' time to draw.
        others = f"{none} other dataset{'s' if none > 1 else ''}" if counted else f"all {none} datasets"
        rows.append({"dataset": others, "fingerprint": "", **dict.fromkeys(LEAKAGE_CHECKS, 0)})
    return alt.layer(cells, text).properties(width=alt.Step(48), height=alt.Step(22)), {"rows": rows}


def _accuracy_cells(x: alt.X, y: alt.Y, value: str, title: str, tooltip: list) -> alt.LayerChart:
    """A heatmap of accuracies in [0, 1], each cell written on it."""
    base = alt.Chart().encode(x=x, y=y)
    cells = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"), title=title),
        tooltip=tooltip,
    )
    text = base.mark_text(fontSize=12).encode(
        text=alt.Text(f"{value}:Q", format=".2f"),
        color=alt.condition(f"datum.{value} > 0.6", alt.value("black"), alt.value("white")),
    )
    return alt.layer(cells, text, data=ROWS)


def heatmap(report: Report, k: Keys) -> Built:
    chart = (
        _accuracy_cells(
            alt.X("length:O", title="L", axis=alt.Axis(labelAngle=0)),
            alt.Y("task:N", title=None),
            "test_mean",
            "test mean",
            _tooltip("proposer:N task:N length:O runs:Q trials:Q", "test_mean val_mean"),
        )
        .properties(width=alt.Step(60), height=alt.Step(32))
        .facet(column=alt.Column("proposer:N", title=None, sort=k.proposers))
    )
    fields = ("fn", "length", "runs", "trials", "test_mean", "val_mean")
    return chart, {"rows": k.values(report.leaderboard, fields)}


def generalisation(report: Report, k: Keys) -> Built:
    """Training length x evaluation length per task (and reading), on the balanced sets."""
    rows = [r for r in report.generalisation if r["set_kind"] in ("balanced", "population")]
    chart = (
        _accuracy_cells(
            alt.X("eval_length:O", title="evaluation L", axis=alt.Axis(labelAngle=0)),
            alt.Y("train_length:O", title="training L"),
            "accuracy_mean",
            "mean accuracy",
            _tooltip("proposer:N task:N train_length:O eval_length:O programs:Q", "accuracy_mean"),
        )
        .properties(width=alt.Step(36), height=alt.Step(22))
        .facet(
            row=alt.Row("proposer:N", title=None, sort=k.proposers), column=alt.Column("task:N", title=None)
        )
    )
    fields = ("train_length", "eval_length", "programs", "accuracy_mean")

    def task(r: dict) -> str:
        name = k.tasks.get(r["fn"], r["fn"])
        return name if r["rule"] == "task" else f"{name} ({r['rule']})"

    return chart, {"rows": k.values(rows, fields, task=task)}


def val_vs_test(report: Report, k: Keys) -> Built:
    diagonal = (
        alt.Chart(alt.NamedData("diagonal"))
        .mark_line(color="#9e9e9e", strokeDash=[4, 4])
        .encode(x=alt.X("v:Q"), y=alt.Y("v:Q"))
    )
    points = (
        alt.Chart(ROWS)
        .mark_point(filled=True, size=60, opacity=0.85)
        .encode(
            x=alt.X("val_mean:Q", scale=ACCURACY, title="mean selected val accuracy"),
            y=alt.Y("test_mean:Q", scale=ACCURACY, title="mean selected test accuracy"),
            color=k.color(),
            shape=k.shape(),
            tooltip=_tooltip(
                "run_id:N proposer:N task:N length:O trials:Q", "val_mean test_mean gap_mean", gap_mean="+.3f"
            ),
        )
    )
    chart = alt.layer(diagonal, points).properties(width=380, height=380)
    fields = ("run_id", "fn", "length", "trials", "val_mean", "test_mean", "gap_mean")
    return chart, {"rows": k.values(report.grid_points, fields), "diagonal": [{"v": 0}, {"v": 1}]}


TOKEN_KINDS = ["uncached input", "cached input", "reasoning output", "visible output"]


def tokens_cost(report: Report, k: Keys) -> Built:
    rows = k.values(
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
            y=alt.Y("task:N", title=None),
            x=alt.X("sum(tokens):Q", title="tokens"),
            color=alt.Color("kind:N", sort=TOKEN_KINDS, scale=alt.Scale(range=PALETTE[4:]), title="tokens"),
            tooltip=[alt.Tooltip("task:N"), alt.Tooltip("kind:N"), alt.Tooltip("sum(tokens):Q", format=",")],
        )
        .properties(width=320)
    )
    cost = (
        alt.Chart(ROWS)
        .transform_filter("datum.cost != null")
        .mark_bar()
        .encode(
            y=alt.Y("task:N", title=None, axis=None),
            x=alt.X("sum(cost):Q", title="cost (USD; priced models only)"),
            color=k.color(),
            tooltip=[*_tooltip("task:N proposer:N", ""), alt.Tooltip("sum(cost):Q", format="$.4f")],
        )
        .properties(width=240)
    )
    return alt.hconcat(tokens, cost).resolve_scale(color="independent"), {"rows": rows}


def attempts_to_solve(report: Report, k: Keys) -> Built:
    rows = report.attempts_to_solve
    order = [*map(str, sorted({r["solved_at"] for r in rows} - {None})), "unsolved"]
    chart = (
        alt.Chart(ROWS)
        .mark_bar()
        .encode(
            x=alt.X("solved:N", title="attempt that reached val accuracy 1.0", sort=order),
            xOffset=alt.XOffset("proposer:N", scale=alt.Scale(domain=k.proposers)),
            y=alt.Y("sum(trials):Q", title="trials"),
            color=k.color(),
            tooltip=[*_tooltip("proposer:N solved:N", ""), alt.Tooltip("sum(trials):Q", title="trials")],
        )
        .properties(width=320, height=200)
    )
    solved = {"solved": lambda r: str(r["solved_at"] or "unsolved")}
    return chart, {"rows": k.values(rows, ("trials",), **solved)}


CHARTS = [
    (
        "accuracy-by-length",
        "Accuracy by length",
        accuracy_by_length,
        "Mean selected test accuracy per task against the input length L, per proposer and "
        "setting over all its runs, with the 95% CI over trials as a band.",
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
        "Accuracy of the attempt selection (by validation) would choose after k attempts, per "
        "task; trials that stopped early keep their result.",
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
        "Duplicate inputs within each split (blue: allowed, some tasks repeat inputs by design) "
        "and inputs (or whole lines) shared between splits (orange: leakage), per dataset; "
        "the datasets with none of either share the last row.",
    ),
    (
        "raw-vs-clean",
        "Raw vs leakage-clean results",
        raw_vs_clean,
        "Per grid point, mean selected test accuracy over every trial (hollow: raw) and over "
        "trials on datasets with no input shared between splits (filled: clean).",
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
    keys = Keys.of(report)
    return [Chart(id, title, caption, _spec(*make(report, keys))) for id, title, make, caption in CHARTS]
