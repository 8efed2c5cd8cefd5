"""A user's prompt template is code: whatever it does wrong (raises, recurses, loops
for ever, writes gigabytes) is refused before the run is recorded, as one line naming
the file, the grid point and the error, with nothing written; a valid one that needs
the real examples (examples[1]) runs, and so does its resume."""

import json
import sqlite3
import time

import helpers
import pytest
from helpers import grid, one_line_error, run_cli

import synth.engine.entry
import synth.prompts
from synth.datasets.generators.base import Task
from synth.errors import SynthError
from synth.prompts import render_prompt, template_from_text

GRID = ["--provider", "formula", *grid(attempts=1)]


@pytest.fixture
def workdir(workdir, monkeypatch):
    # Hangs and floods stop sooner than in a real run; the limits themselves are the same code.
    monkeypatch.setattr(synth.prompts, "MAX_RENDER_SECONDS", 1.0)
    monkeypatch.setattr(synth.prompts, "MAX_STEPS", 2_000_000)
    return workdir


def snapshot(folder):
    """Every entry under ``folder`` but SQLite's shared-memory index, which any reader rewrites."""
    return helpers.snapshot(folder, skip=("-shm",))


# Each template, and what its one line of refusal says besides the file and grid point.
BAD = {
    "zero-division": ("{{ n_train / 0 }}", "ZeroDivisionError: division by zero"),
    "modulo-zero": ("{{ length % 0 }}", "ZeroDivisionError"),
    "type-error": ("{{ kind + 1 }}", "TypeError"),
    "bad-int": ("{{ 'abc'|int + examples[0].input|int // 0 }}", "ZeroDivisionError"),
    "recursive-macro": ("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", "RecursionError"),
    "exponential-macro": (
        "{% macro d(n) %}{% if n %}{{ d(n - 1) }}{{ d(n - 1) }}{% endif %}{% endmacro %}{{ d(40) }}",
        "rendering took more than 1 seconds",
    ),
    "huge-repeat": ('{{ "x" * 10**9 }}', "more than"),
    "huge-list": ("{{ (examples * 10**8)|length }}", "more than"),
    "huge-power": ("{{ 10 ** (10 ** 9) }}", "bits"),
    "huge-center": ('{{ "x"|center(10**9) }}', "center"),
    "huge-method": ('{{ "x".ljust(10**9) }}', "ljust()"),
    "huge-format-width": ('{{ "%999999999d" % n_train }}', "format width"),
    "huge-format-method": ('{{ "{:>999999999}".format(kind) }}', "format width"),
    "huge-lipsum": ("{{ lipsum(10**9) }}", "lipsum()"),
    "huge-replace": ('{% set s = "x" * 100000 %}{{ s.replace("x", s) }}', "replace()"),
    "huge-join": ('{% set s = "x" * 100000 %}{{ "".join([s] * 100000) }}', "join()"),
    "doubling-concat": (
        "{% set ns = namespace(s=examples_block) %}{% for i in range(60) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "more than",
    ),
    "doubling-block": (
        "{% set ns = namespace(s=examples_block) %}{% for i in range(60) %}"
        "{% set ns.s %}{{ ns.s }}{{ ns.s }}{% endset %}{% endfor %}",
        "in all",
    ),
    "doubling-list": (
        "{% set xs = [1] %}{% for i in range(60) %}{{ xs.extend(xs) }}{% endfor %}",
        "more than",
    ),
    "range-billion": ("{% for i in range(10**9) %}{% endfor %}", "Range too big"),
    "nested-loops": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "loop steps",
    ),
    "nested-lists": (
        "{% set xs = range(100000)|list %}{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}",
        "loop steps",
    ),
    "long-prompt": ('{% for i in range(100000) %}{{ "y" * 100 }}{% endfor %}', "more than"),
    "real-data-only": ("{% if n_train > 1 %}{{ examples[n_train].input }}{% endif %}", "no element 10"),
    "undefined-attribute": ("{{ examples[0].missing }}", "missing"),
    "unsafe-attribute": ("{{ kind.__class__.__mro__ }}", "unsafe"),
    "raised-by-filter": ("{{ examples|map(attribute='input')|sum }}", "TypeError"),
}


@pytest.mark.slow
@pytest.mark.parametrize("source, message", BAD.values(), ids=BAD.keys())
def test_bad_template_is_refused_before_anything_is_written(workdir, monkeypatch, source, message):
    # The step and recursion limits, reached before the 1 s one even on a loaded machine.
    if message in ("loop steps", "RecursionError"):
        monkeypatch.setattr(synth.prompts, "MAX_RENDER_SECONDS", 30.0)
    (workdir / "bad.j2").write_text(source)
    before = snapshot(workdir)
    started = time.monotonic()
    result = run_cli("run", *GRID, "--db", "runs.db", "--prompt-template", "bad.j2", "--out-dir", "out")
    line = one_line_error(result, "prompt template bad.j2", message)
    assert time.monotonic() - started < 30  # stopped by its limits, not run to the end
    if "undefined" not in message and "unsafe" not in message:
        assert "fn_a at L=20" in line
    assert snapshot(workdir) == before, "nothing may be written"
    assert not (workdir / "runs.db").exists() and not (workdir / "out").exists()


@pytest.mark.slow
def test_the_failing_grid_point_is_named_and_no_database_is_left(workdir):
    """The template renders for L=20 and fails only for L=30, on the real data."""
    (workdir / "bad.j2").write_text("{{ examples_block }}\n{% if length == 30 %}{{ 1 / 0 }}{% endif %}")
    before = snapshot(workdir)
    result = run_cli("run", *GRID, "--lengths", "30", "--db", "runs.db", "--prompt-template", "bad.j2")
    line = one_line_error(result, "ZeroDivisionError")
    assert (
        line
        == "Error: prompt template bad.j2, line 2, rendering fn_a at L=30: ZeroDivisionError: division by zero"
    )
    assert snapshot(workdir) == before


@pytest.mark.slow
def test_template_needing_real_examples_runs_and_resumes(workdir):
    """examples[1] exists in every real split of ten: the run must not be refused by a
    one-example stand-in. Its resume renders from the stored template again."""
    (workdir / "two.j2").write_text(
        "First two: {{ examples[0].input }} -> {{ examples[0].label }}; "
        "{{ examples[1].input }} -> {{ examples[1].label }}\n{{ examples_block }}\n"
        'Reply with {"code": "..."} defining def f(x).\n'
    )
    result = run_cli("run", *GRID, "--db", "runs.db", "--prompt-template", "two.j2", "--run-id", "two")
    assert result.exit_code == 0, result.output
    with sqlite3.connect(workdir / "runs.db") as conn:
        (prompt,) = conn.execute("select text from prompts").fetchone()
        (status,) = conn.execute("select status from runs where run_id = 'two'").fetchone()
    assert prompt.startswith("First two: ") and status == "completed"
    resumed = run_cli("run", "--resume", "two", "--db", "runs.db")
    assert resumed.exit_code == 0, resumed.output


@pytest.mark.slow
def test_a_bad_template_on_an_existing_database_adds_nothing(workdir):
    (workdir / "ok.j2").write_text("{{ examples_block }}\n")
    assert (
        run_cli("run", *GRID, "--db", "runs.db", "--prompt-template", "ok.j2", "--run-id", "ok").exit_code
        == 0
    )
    (workdir / "bad.j2").write_text("{{ examples_block }}{{ 1 / (n_train - n_train) }}")
    before = snapshot(workdir)
    result = run_cli("run", *GRID, "--db", "runs.db", "--prompt-template", "bad.j2", "--run-id", "bad")
    one_line_error(result, "prompt template bad.j2", "fn_a at L=20", "ZeroDivisionError")
    assert snapshot(workdir) == before
    with sqlite3.connect(workdir / "runs.db") as conn:
        assert conn.execute("select run_id from runs").fetchall() == [("ok",)]


@pytest.mark.slow
def test_resume_refuses_a_stored_template_that_no_longer_renders(workdir):
    """A stored template that fails now (here: edited in the database, as a template
    written before the sandbox might) is refused before the run is claimed or marked."""
    (workdir / "ok.j2").write_text("{{ examples_block }}\n")
    assert (
        run_cli("run", *GRID, "--db", "runs.db", "--prompt-template", "ok.j2", "--run-id", "r").exit_code == 0
    )
    with sqlite3.connect(workdir / "runs.db") as conn:
        (config,) = conn.execute("select config from runs where run_id = 'r'").fetchone()
        config = json.loads(config)
        config["prompt_template"] = '{{ "x" * 10**9 }}'
        conn.execute(
            "update runs set status = 'interrupted', config = ? where run_id = 'r'", [json.dumps(config)]
        )
    before = snapshot(workdir)
    result = run_cli("run", "--resume", "r", "--db", "runs.db")
    one_line_error(result, "prompt template ok.j2", "fn_a at L=20", "more than")
    assert snapshot(workdir) == before


@pytest.mark.parametrize(
    "source, message",
    [
        ('{% include "mine.j2" %}', "cannot find 'mine.j2'"),
        ("{{ exmples_block }}", "'exmples_block' is undefined"),
        ("{{ task.id }}", "'task' is undefined"),
    ],
    ids=["include-of-own-file", "typo", "no-task"],
)
def test_what_needs_no_examples_is_refused_before_any_dataset_is_built(workdir, monkeypatch, source, message):
    (workdir / "mine.j2").write_text("{{ examples_block }}")
    (workdir / "bad.j2").write_text(source)
    monkeypatch.setattr(
        synth.engine.entry, "ensure_datasets", lambda *a, **k: pytest.fail("datasets were built")
    )
    before = snapshot(workdir)
    result = run_cli("run", *GRID, "--db", "runs.db", "--prompt-template", "bad.j2")
    one_line_error(result, "prompt template bad.j2", message)
    assert snapshot(workdir) == before


@pytest.mark.slow
def test_output_limit_is_a_setting(workdir, monkeypatch):
    """MAX_PROMPT_CHARS bounds what a prompt holds beyond a few copies of its examples."""
    (workdir / "pad.j2").write_text('{{ examples_block }}{{ "-" * 5000 }}')
    monkeypatch.setattr(synth.prompts, "MAX_PROMPT_CHARS", 1000)
    result = run_cli("run", *GRID, "--db", "runs.db", "--prompt-template", "pad.j2")
    one_line_error(result, "prompt template pad.j2", "more than")
    monkeypatch.setattr(synth.prompts, "MAX_PROMPT_CHARS", 10_000)
    assert run_cli("run", *GRID, "--db", "runs.db", "--prompt-template", "pad.j2").exit_code == 0


# The library function alone, for what needs no run.
TASK = Task(id="fn_x", target="t", kind="binary", default_lengths=(4,), generate=None, label=None)
TRAIN = [("0110", 1), ("1111", 0), ("0000", 1)]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("{{ examples[1].input }}|{{ examples[2].label }}", "1111|1"),
        ("{{ examples|map(attribute='input')|join(',') }}", "0110,1111,0000"),
        ("{% for e in examples %}{{ loop.index }}:{{ e.input|upper }} {% endfor %}", "1:0110 2:1111 3:0000 "),
        ("{{ '%05d|{:>6}'.format(kind) % n_train }}", "00003|binary"),
        (
            "{{ range(3)|list }} {{ dict(a=1) }} {% set ns = namespace(n=0) %}{{ ns.n }}",
            "[0, 1, 2] {'a': 1} 0",
        ),
        ('{% extends "binary.j2" %}{% block input_format %}bits{% endblock %}', "Input format: bits"),
        ("{{ 12345678901|string|length }} {{ 2 ** 64 }}", "11 18446744073709551616"),
    ],
    ids=["examples-index", "filters", "loop", "formats", "globals", "extends", "big-numbers"],
)
def test_valid_templates_render_in_the_sandbox(source, expected):
    assert expected in render_prompt(TASK, 4, TRAIN, template=template_from_text(source, name="ok.j2"))


def test_errors_name_the_line_and_stay_one_line():
    source = "line one\n{{ examples_block }}\n{{ kind ~ (1 / 0) }}\n"
    with pytest.raises(SynthError) as info:
        render_prompt(TASK, 4, TRAIN, template=template_from_text(source, name="t.j2"))
    assert (
        str(info.value)
        == "prompt template t.j2, line 3, rendering fn_x at L=4: ZeroDivisionError: division by zero"
    )


def test_a_default_prompt_is_never_over_the_limit():
    """The limit counts beyond the examples: a large training split is not refused."""
    train = [(f"{i:020b}", i % 2) for i in range(60_000)]  # examples_block of 1.4 MB
    assert len(render_prompt(TASK, 20, train)) > 1_400_000
    custom = template_from_text(
        "{% for e in examples %}{{ e.input }} => {{ e.label }}\n{% endfor %}", name="c.j2"
    )
    assert len(render_prompt(TASK, 20, train, template=custom)) > 1_400_000


def test_a_hang_stops_at_the_wall_clock(monkeypatch):
    monkeypatch.setattr(synth.prompts, "MAX_RENDER_SECONDS", 0.3)
    source = "{% macro d(n) %}{% if n %}{{ d(n - 1) }}{{ d(n - 1) }}{% endif %}{% endmacro %}{{ d(60) }}"
    started = time.monotonic()
    with pytest.raises(SynthError, match="rendering took more than 0.3 seconds"):
        render_prompt(TASK, 4, TRAIN, template=template_from_text(source, name="h.j2"))
    assert time.monotonic() - started < 10  # 0.3 s and a loaded machine's slack, not 2**60 calls
