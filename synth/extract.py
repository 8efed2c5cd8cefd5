"""Extraction: find the candidate program in a model's reply, without running it.

The contract asks for one JSON object ``{"code": "..."}``, but replies wrap it in
prose or fences, or emit several objects; every failure is classified so that reports
can tell a model that cannot follow the format from one that writes wrong programs.
The code is only parsed (``ast.parse``), never executed: running it is the sandbox's job.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

# Failure kinds, in the order they are checked.
FAILURES = ("no_output", "no_json", "no_code", "syntax_error", "no_function")

# strict=False accepts raw newlines and tabs inside JSON strings: models often write
# code that way, and the meaning is unambiguous.
_DECODER = json.JSONDecoder(strict=False)

# Fallback only: a ```python (or ```py) fenced block. Regexes are fine over fences;
# braces are left to the JSON decoder.
_PYTHON_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)```", re.S | re.I)


@dataclass(frozen=True)
class Extraction:
    """What was found in a reply. ``failure`` is None when there is a program to run."""

    code: str | None
    func_name: str | None
    failure: str | None
    # Where the code came from: "json" (the contract) or "fenced_code" (the fallback).
    source: str | None = None
    # The parser's message for "syntax_error".
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def extract_program(text: str | None) -> Extraction:
    """The program in ``text``: from the first JSON object with a non-empty string
    "code", else from the first ```python block defining a function (a fallback).

    The entry point is the top-level function named ``f``, else the first top-level
    function; an ``async def`` counts too, though calling it gives a coroutine, which
    the published normalisation scores by truthiness (every row 1), as it does a generator.
    """
    if not text or not text.strip():
        return Extraction(None, None, "no_output")
    objects = list(_json_objects(text))
    code = next(
        (o["code"] for o in objects if isinstance(o.get("code"), str) and o["code"].strip()),
        None,
    )
    if code is not None:
        return _check(code, "json")
    # No usable JSON: accept a fenced python block that defines a function. A JSON
    # object without code (a stray `{}` in prose or code) does not rule this out.
    for block in _PYTHON_FENCE.findall(text):
        found = _check(block, "fenced_code")
        if found.ok:
            return found
    return Extraction(None, None, "no_code" if objects else "no_json")


def _json_objects(text: str) -> Iterator[dict]:
    """Top-level JSON objects in order: decode from each '{', skip past what decoded."""
    i = text.find("{")
    while i != -1:
        try:
            obj, end = _DECODER.raw_decode(text, i)
        except (ValueError, RecursionError):  # not JSON here, or nested too deep
            end = i + 1
        else:
            yield obj  # decoding from "{" can only give an object
        i = text.find("{", end)


def _check(code: str, source: str) -> Extraction:
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        error = f"line {e.lineno}: {e.msg}" if e.lineno else e.msg
    except (ValueError, RecursionError, MemoryError) as e:
        # ValueError: null bytes on early 3.11 releases. The others: the parser gives
        # up on deep nesting (`-` * 10**5 + "1"), which must not take the runner down.
        error = str(e) or f"{type(e).__name__} while parsing (nesting too deep)"
    else:
        names = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if not names:
            return Extraction(code, None, "no_function", source)
        return Extraction(code, "f" if "f" in names else names[0], None, source)
    return Extraction(code, None, "syntax_error", source, error)
