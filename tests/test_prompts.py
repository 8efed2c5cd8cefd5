import hashlib

import pytest

from synth.datasets.generators.base import Task
from synth.errors import SynthError
from synth.prompts import load_template, prompt_hash, render_prompt

# One realistic training split per kind, with the phrases that state its input format.
CASES = {
    "binary": (
        8,
        [("01101001", 1), ("11110000", 0), ("00000001", 1)],
        ["exactly 8 characters", "'0' or '1'"],
    ),
    "decimal": (5, [("48173", 1), ("90210", 0)], ["exactly 5 characters", "decimal digit"]),
    "graph": (
        36,
        [("u12v07u07v33u33v12u00v00u00v00u00v00", 1), ("u01v02u00v00u00v00u00v00u00v00u00v00", 0)],
        ["36 characters", "6 undirected edges", "uXXvYY", "u00v00", "padding"],
    ),
    "tabular": (
        3,
        [("x0:0.37,x1:c03,x2:-1.20", 1), ("x0:1.05,x1:c00,x2:0.44", 0)],
        ["dict", "'x0' to 'x2'", "float", "'c03'", "x0:0.37,x1:c03,..."],
    ),
}


def make_task(kind):
    return Task(
        id="fn_secret_id",
        target="secret_target_name",
        kind=kind,
        default_lengths=(CASES[kind][0],),
        generate=None,
        label=None,
    )


@pytest.fixture(params=sorted(CASES))
def case(request):
    kind = request.param
    length, train, phrases = CASES[kind]
    return make_task(kind), length, train, phrases


def test_default_prompt_states_task_format_examples_and_contract(case):
    task, length, train, phrases = case
    text = render_prompt(task, length, train)
    block = "\n".join(f"{x} -> {y}" for x, y in train)
    assert f"```\n{block}\n```" in text
    for phrase in phrases:
        assert phrase in text
    assert "hidden boolean function" in text
    assert ".\nEach label is 0 or 1.\n" in text
    assert '{"code": "<python source>"}' in text
    assert "def f(x)" in text and "returns 0 or 1" in text
    assert "standard library only" in text
    assert text.endswith("\n")


def test_default_prompt_does_not_reveal_the_task(case):
    task, length, train, _ = case
    text = render_prompt(task, length, train)
    assert "secret" not in text and "fn_" not in text


def test_prompt_is_deterministic_and_hashed_by_content(case):
    task, length, train, _ = case
    first = render_prompt(task, length, train)
    assert render_prompt(task, length, train) == first
    assert prompt_hash(first) == prompt_hash(render_prompt(task, length, list(train)))
    assert prompt_hash(first) != prompt_hash(render_prompt(task, length, train[::-1]))


def test_prompt_hash_is_sha256_hex_of_utf8():
    assert prompt_hash("abc") == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert prompt_hash("é") == hashlib.sha256("é".encode()).hexdigest()


USER_TEMPLATE = """\
{{ kind }} L={{ length }} n={{ n_train }}
{% for e in examples %}
{{ e.input }} is {{ "in" if e.label else "out" }}
{% endfor %}
{{ examples_block }}
"""


@pytest.fixture
def user_template(tmp_path):
    path = tmp_path / "mine.j2"
    path.write_text(USER_TEMPLATE, encoding="utf-8")
    return path


@pytest.mark.parametrize("as_loaded", [False, True])
def test_user_template_replaces_default_and_gets_variables(user_template, as_loaded):
    template = load_template(user_template) if as_loaded else str(user_template)
    train = [("0110", 1), ("0000", 0)]
    text = render_prompt(make_task("binary"), 4, train, template=template)
    assert text == ("binary L=4 n=2\n0110 is in\n0000 is out\n0110 -> 1\n0000 -> 0\n")


def test_user_template_can_extend_the_defaults(tmp_path):
    path = tmp_path / "custom.j2"
    path.write_text(
        '{% extends "_base.j2" %}{% block input_format %}bits, {{ length }} of them{% endblock %}'
    )
    text = render_prompt(make_task("binary"), 4, [("0110", 1)], template=path)
    assert "Input format: bits, 4 of them\nEach label" in text
    assert "```\n0110 -> 1\n```" in text
    assert '{"code": "<python source>"}' in text


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{% for e in examples %}\n{{ e.input }}\n", "line 2"),
        ("{{ kind }\n", "line 1"),
        ('{% include "nowhere.j2" %}', "nowhere.j2"),
        (b"\xff\xfe{{ kind }}", "cannot read"),
    ],
    ids=["missing", "unclosed-block", "bad-expression", "missing-include", "not-utf8"],
)
def test_bad_user_template_is_a_synth_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "broken.j2"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(SynthError, match=message) as info:
        render_prompt(make_task("binary"), 4, [("0110", 1)], template=path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", ["{{ kind }\n", b"\xff{{ kind }}"])
def test_load_template_reports_a_bad_file_before_rendering(tmp_path, content):
    path = tmp_path / "early.j2"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(SynthError, match="early.j2"):
        load_template(path)


def test_directory_is_not_a_template(tmp_path):
    with pytest.raises(SynthError, match="a folder, not a file$"):
        load_template(tmp_path)


def test_undefined_variable_is_a_synth_error_naming_file_and_variable(tmp_path):
    path = tmp_path / "typo.j2"
    path.write_text("{{ exmples_block }}\n")
    template = load_template(path)  # parses fine: the typo shows when rendering
    with pytest.raises(SynthError, match="exmples_block") as info:
        render_prompt(make_task("binary"), 4, [("0110", 1)], template=template)
    assert str(path) in str(info.value)


def test_task_is_not_a_template_variable(tmp_path):
    path = tmp_path / "leak.j2"
    path.write_text("{{ task.target }}\n")
    with pytest.raises(SynthError, match="task"):
        render_prompt(make_task("binary"), 4, [("0110", 1)], template=path)
