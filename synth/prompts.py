"""Prompts: the text a model sees, rendered from a Jinja template per input kind.

The default templates (``synth/templates/<kind>.j2``, all extending ``_base.j2``) state
the task, the input format as ``f(x)`` receives it, the training examples and the output
contract. They never name the task's id or target: the model has to infer the function.

A user template file replaces the default. It is rendered with these variables:

- ``kind``: the input kind, ``binary``, ``decimal``, ``graph`` or ``tabular``;
- ``length``: the input length L;
- ``examples``: the training split in order, as dicts ``{"input": str, "label": int}``;
- ``examples_block``: the same as ``input -> label`` lines joined by newlines (no fence);
- ``n_train``: the number of training examples.

Undefined variables are errors (StrictUndefined), so a typo fails loudly instead of
silently sending a prompt with a hole in it. A line holding only a ``{% tag %}`` leaves
no blank line (trim_blocks, lstrip_blocks). A user template may also
``{% extends "_base.j2" %}`` (or a kind's template) and override its blocks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import jinja2

from synth.errors import SynthError
from synth.generators.base import Task

_DEFAULTS = jinja2.PackageLoader("synth", "templates")

TemplateArg = str | os.PathLike | jinja2.Template | None


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    # Prompts are plain text: no autoescaping, the final newline kept as written, and
    # a line holding only a {% tag %} leaves no blank line behind.
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


_ENV = _environment(_DEFAULTS)


def load_template(path: str | os.PathLike) -> jinja2.Template:
    """Read and parse a user template, so a bad file is reported before any model call.

    Includes and extends resolve beside the file first, then among the defaults.
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not a file" if path.exists() else "no such file"
        raise SynthError(f"prompt template {path}: {what}")
    env = _environment(
        jinja2.ChoiceLoader([jinja2.FileSystemLoader(path.parent), _DEFAULTS])
    )
    try:
        return env.get_template(path.name)
    except jinja2.TemplateError as e:
        raise _error(path, e) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SynthError(f"prompt template {path}: cannot read it ({e})") from None


def template_from_text(text: str, *, name: str = "stored template") -> jinja2.Template:
    """Compile a template from its text: a run stores its template's text, so that a
    resumed run renders exactly the prompts it started with."""
    try:
        template = _ENV.from_string(text)
    except jinja2.TemplateError as e:
        raise _error(name, e) from None
    template.filename = name  # so that rendering errors name it too
    return template


def _error(path: str | os.PathLike | None, e: jinja2.TemplateError) -> SynthError:
    """One line naming the file; for a syntax error, the file (maybe an included
    one) and the line."""
    if isinstance(e, jinja2.TemplateSyntaxError):
        where, detail = f"{e.filename or path}, line {e.lineno}", e.message
    elif isinstance(e, jinja2.TemplateNotFound):
        where, detail = path, f"cannot find {e.name!r}"
    else:
        where, detail = path, e.message
    return SynthError(f"prompt template {where}: {detail}")


def render_prompt(
    task: Task,
    length: int,
    train: Sequence[tuple[str, int]],
    *,
    template: TemplateArg = None,
) -> str:
    """The prompt for one (task, length) and its training split.

    ``template`` is a path to a user template, an already loaded one (see
    ``load_template``), or None for the default of the task's kind.
    """
    if template is None:
        template = _ENV.get_template(f"{task.kind}.j2")
    elif not isinstance(template, jinja2.Template):
        template = load_template(template)
    examples = [{"input": x, "label": int(y)} for x, y in train]
    try:
        return template.render(
            kind=task.kind,
            length=length,
            examples=examples,
            examples_block="\n".join(f"{e['input']} -> {e['label']}" for e in examples),
            n_train=len(examples),
        )
    except jinja2.TemplateError as e:
        raise _error(template.filename, e) from None


def prompt_hash(text: str) -> str:
    """SHA-256 hex of the prompt's UTF-8 bytes: identical prompts share one record."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
