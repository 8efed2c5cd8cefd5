import json

import pytest

from synth.extract import FAILURES, extract_program

F = "def f(x):\n    return int(x.count('1') % 2 == 1)\n"


def reply(code, **extra):
    return json.dumps({"code": code, **extra})


def test_plain_json():
    found = extract_program(reply(F))
    assert (found.code, found.func_name, found.failure) == (F, "f", None)
    assert found.source == "json" and found.error is None and found.ok


@pytest.mark.parametrize(
    "text",
    [
        f"Here is my answer:\n{reply(F)}\nIt counts ones.",
        f"```json\n{reply(F)}\n```",
        f"```\n{reply(F)}\n```\n",
        f"I think {{parity}} is it. {reply(F)} Hope that helps {{:)}}",
    ],
    ids=["prose", "json-fence", "bare-fence", "braces-in-prose"],
)
def test_json_wrapped_in_prose_or_fences(text):
    found = extract_program(text)
    assert found.code == F and found.func_name == "f" and found.source == "json"


def test_nested_braces_and_escapes_inside_code():
    code = (
        "def f(x):\n"
        "    table = {'a': {'b': 1}, \"q\": '\\\"}'}\n"
        '    s = "tab\\there {not json}"\n'
        "    return table['a']['b'] if x.endswith('1') else 0\n"
    )
    found = extract_program("Answer: " + reply(code) + " done")
    assert found.code == code
    assert found.ok and found.func_name == "f"


def test_raw_newlines_inside_the_json_string_are_accepted():
    text = '{"code": "def f(x):\n\treturn 1\n"}'
    found = extract_program(text)
    assert found.code == "def f(x):\n\treturn 1\n" and found.ok


def test_first_object_with_code_wins():
    other = "def f(x):\n    return 0\n"
    text = f'{{"plan": "count ones"}}\n{reply(F)}\nor maybe\n{reply(other)}'
    assert extract_program(text).code == F


def test_nested_objects_are_not_taken_as_replies():
    text = json.dumps({"answer": {"code": F}})
    assert extract_program(text).failure == "no_code"


@pytest.mark.parametrize("text", [None, "", "   \n\t"])
def test_no_output(text):
    found = extract_program(text)
    assert found.failure == "no_output" and found.code is None and not found.ok


@pytest.mark.parametrize(
    "text",
    [
        "I could not find a rule.",
        "def f(x): return 1",
        '{"code": "def f(x): return 1"',
        "{'code': 'def f(x): return 1'}",
    ],
    ids=["prose", "bare-code", "truncated", "python-dict"],
)
def test_no_json(text):
    found = extract_program(text)
    assert found.failure == "no_json" and found.code is None


@pytest.mark.parametrize(
    "text",
    [
        '{"program": "def f(x): return 1"}',
        '{"code": ""}',
        '{"code": "  \\n"}',
        '{"code": 42}',
        '{"code": null}',
        '{"code": ["def f(x): return 1"]}',
    ],
)
def test_json_without_code(text):
    found = extract_program(text)
    assert found.failure == "no_code" and found.code is None


def test_syntax_error_keeps_code_and_message():
    code = "def f(x):\n    return (x.count('1') % 2\n"
    found = extract_program(reply(code))
    assert found.failure == "syntax_error" and found.code == code
    assert found.func_name is None
    assert found.error.startswith("line ") and "never closed" in found.error


def test_code_too_deeply_nested_for_the_parser_is_a_syntax_error():
    found = extract_program(reply("def f(x):\n    return " + "-" * 200_000 + "1\n"))
    assert found.failure == "syntax_error" and found.error


def test_no_top_level_function():
    code = "f = lambda x: 1\nif True:\n    def g(x):\n        return 0\n"
    found = extract_program(reply(code))
    assert found.failure == "no_function" and found.code == code
    assert found.func_name is None


def test_picks_f_over_other_functions():
    code = "def helper(x):\n    return 1\n\ndef f(x):\n    return helper(x)\n"
    assert extract_program(reply(code)).func_name == "f"


def test_first_top_level_function_when_there_is_no_f():
    code = (
        "import math\n\nclass K:\n    def f(self):\n        return 1\n\n"
        "async def solve(x):\n    return 1\n\ndef other(x):\n    return 0\n"
    )
    found = extract_program(reply(code))
    assert found.ok and found.func_name == "solve"


FENCED = f"No JSON, sorry.\n```python\n{F}```\nThat's it."


def test_fenced_python_fallback():
    found = extract_program(FENCED)
    assert found.ok and found.source == "fenced_code"
    assert found.code == F and found.func_name == "f"


def test_fallback_skips_blocks_without_a_function_and_survives_stray_json():
    text = "Try {} first.\n```py\nx = 1\n```\nthen\n```Python\n" + F + "```"
    found = extract_program(text)
    assert found.source == "fenced_code" and found.code == F


def test_json_with_code_beats_a_fenced_block():
    other = "def g(x):\n    return 0\n"
    found = extract_program(f"```python\n{other}```\n{reply(F)}")
    assert found.source == "json" and found.code == F


def test_fallback_does_not_apply_to_fences_without_a_function():
    assert extract_program("```python\nprint(1)\n```").failure == "no_json"
    assert extract_program("```python\ndef f(x:\n```").failure == "no_json"


def test_extraction_never_executes_the_code(tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()\ndef f(x):\n    return 1\n"
    assert extract_program(reply(code)).ok
    assert not marker.exists()


def test_every_failure_is_a_known_kind():
    texts = [None, "nothing", '{"a": 1}', reply("def f(:"), reply("x = 1")]
    assert [extract_program(t).failure for t in texts] == list(FAILURES)
