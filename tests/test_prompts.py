import hashlib
import json
import re
from pathlib import Path

import pytest
from helpers import grid, one_line_error, run_cli, snapshot

import synth.prompts
from synth.config import PROMPT_VERSIONS
from synth.datasets.generators.base import Task
from synth.errors import SynthError
from synth.prompts import base_template, load_template, prompt_hash, render_prompt
from tracker.db import open_db

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


# Each built-in wording's text, pinned with its version: change the text, raise the version
# (synth.config.PROMPT_VERSIONS), so that a resume of an older run refuses to re-word it.
WORDINGS = {
    "default": (1, "0a66232065eb4c66162730caed238d94b725ed576c63774132994944d03ca642"),
    "paraphrase-1": (1, "9b3e5f3007a3643bcacf211d990cfbcf5a0191cb5fb93816c665961d894ea245"),
    "paraphrase-2": (1, "c39fc825e49c8b11ee92e6a060cd67e7c217d9067d720c315e0b138117e44d93"),
    "paraphrase-3": (1, "f7e6ddfe55b841e418a7e9e3c8fdf55b5a6f2d0318af377025f5a2546151148c"),
}


@pytest.mark.parametrize("name", sorted(WORDINGS))
def test_a_wordings_text_changes_only_with_its_version(name):
    version, digest = WORDINGS[name]
    text = (Path(synth.prompts.__file__).parent / "templates" / base_template(name)).read_bytes()
    assert (PROMPT_VERSIONS[name], hashlib.sha256(text).hexdigest()) == (version, digest)


@pytest.mark.parametrize("name", [n for n in PROMPT_VERSIONS if n != "default"])
def test_each_paraphrase_asks_for_the_same_contract_in_other_words(case, name):
    task, length, train, phrases = case
    default, text = render_prompt(task, length, train), render_prompt(task, length, train, prompt=name)
    block = "\n".join(f"{x} -> {y}" for x, y in train)
    assert f"```\n{block}\n```" in text
    for phrase in phrases:  # the kind's input format, as the default states it
        assert phrase in text
    assert '{"code": "<python source>"}' in text
    assert re.search(r"`def f\(x\)`.* return(s|ing)? 0 or 1", text)
    assert "standard library" in text.lower() and r"\n" in text and r"\"" in text
    assert task.id not in text and task.target not in text
    shared = set(default.splitlines()) & set(text.splitlines())
    assert shared <= set(block.splitlines()) | {"```", ""} | {
        line for line in text.splitlines() if any(p in line for p in phrases)
    }, "a paraphrase shares no sentence with the default but the examples and the input format"


def test_a_run_records_its_wording_and_a_resume_refuses_another_version(workdir):
    """`--prompt NAME` words every prompt of the run; the run stores the name and its
    version, and a resume by a version whose wording differs is refused untouched."""
    common = ["--dry-run", *grid("fn_a", "fn_g"), "--db", "p.db"]
    assert run_cli("run", *common, "--run-id", "plain").exit_code == 0
    assert run_cli("run", *common, "--run-id", "worded", "--prompt", "paraphrase-3").exit_code == 0
    with open_db(workdir / "p.db", readonly=True) as db:
        prompts = {
            run: [r[0] for r in db.execute(SQL_PROMPTS, [run]).fetchall()] for run in ("plain", "worded")
        }
        config = json.loads(db.execute("select config from runs where run_id = 'worded'").fetchone()[0])
    assert len(prompts["worded"]) == 2 and set(prompts["worded"]).isdisjoint(prompts["plain"])
    assert all(p.startswith("Find the rule.") for p in prompts["worded"])
    assert (config["prompt"], config["prompt_version"]) == ("paraphrase-3", PROMPT_VERSIONS["paraphrase-3"])

    with open_db(workdir / "p.db") as db, db.conn:
        db.execute("update runs set config = json_set(config, '$.prompt_version', 0), status = 'failed'")
    before = snapshot(workdir)
    result = run_cli("resume", "worded", "--db", "p.db")
    one_line_error(
        result, "made with prompt paraphrase-3 version 0", "resume it with the llm-pv that started it"
    )
    assert snapshot(workdir) == before


SQL_PROMPTS = """select distinct p.text from prompts p join attempts a on a.prompt_hash = p.hash
join trials t on t.id = a.trial_id where t.run_id = ?"""


def test_a_wording_and_a_template_together_are_refused(workdir, tmp_path):
    (tmp_path / "mine.j2").write_text("{{ examples_block }}\nReply with JSON.\n")
    args = ["run", "--dry-run", *grid(), "--prompt", "paraphrase-1", "--prompt-template", "mine.j2"]
    one_line_error(run_cli(*args), "give --prompt or --prompt-template, not both")
    assert not (workdir / "synth.db").exists()
