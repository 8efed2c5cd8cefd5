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

A template is code: it runs in Jinja's sandbox, with limits on its time, its steps and
the size of what it makes (MAX_RENDER_SECONDS, MAX_STEPS, MAX_PROMPT_CHARS...); any
failure is a one-line SynthError naming the file, the line and the grid point.

Undefined variables are errors (StrictUndefined), so a typo fails loudly instead of
silently sending a prompt with a hole in it. A line holding only a ``{% tag %}`` leaves
no blank line (trim_blocks, lstrip_blocks). A user template may also
``{% extends "_base.j2" %}`` (or a kind's template) and override its blocks.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import json
import os
import re
import string
import time
from collections.abc import Sequence
from pathlib import Path

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from synth.datasets.generators.base import Task
from synth.errors import SynthError, shortened

_DEFAULTS = jinja2.PackageLoader("synth", "templates")

TemplateArg = str | os.PathLike | jinja2.Template | None

# Limits of one render (a user's template is code: it must not hang or fill the memory).
MAX_PROMPT_CHARS = 1_000_000  # what a prompt may hold beyond EXAMPLE_COPIES copies of its examples
EXAMPLE_COPIES = 4  # so a template may write its examples a few times, whatever their size
MAX_RENDER_SECONDS = 3.0  # wall clock per render, checked at every loop step, call and operation
MAX_STEPS = 10_000_000  # loop iterations, calls, filters and operations per render
MAX_INT_BITS = 100_000  # integers a template computes (10 ** 10 ** 9 would never finish)
VARIABLES = ("kind", "length", "examples", "examples_block", "n_train")


class PromptLimitError(SecurityError):
    """A render went over one of the limits above."""


class _Budget:
    """What is left to one render: time, steps and characters."""

    def __init__(self, limit: int, seconds: float = float("inf"), steps: float = float("inf")):
        self.limit = limit  # the longest value or prompt, in characters (or items)
        self.emit_limit = 4 * limit  # everything written, blocks captured by {% set %} included
        self.emitted = 0
        self.seconds, self.deadline = seconds, time.monotonic() + seconds
        self.steps_left, self.steps = steps, steps

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise PromptLimitError(f"more than {self.steps:,} loop steps and calls (limit MAX_STEPS)")
        if time.monotonic() > self.deadline:
            raise PromptLimitError(f"rendering took more than {self.seconds:g} seconds")

    def too_long(self, size: int, what: str = "a value") -> None:
        if size > self.limit:
            raise PromptLimitError(f"{what} of more than {self.limit:,} characters or items")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("synth_prompt_budget", default=None)


def _budget() -> _Budget:
    """The current render's budget; outside ``render_prompt``, sizes only."""
    return _BUDGET.get() or _Budget(MAX_PROMPT_CHARS)


def _size(value) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)) else 0


def _sized(value):
    _budget().too_long(_size(value))
    return value


def _str_size(value) -> int:
    return (
        len(value)
        if isinstance(value, (str, bytes))
        else len(str(value))
        if isinstance(value, (int, float))
        else 0
    )


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_format(budget: _Budget, fmt: str, args: Sequence, *, braces: bool) -> None:
    """A format string (``%`` or ``str.format``) must not ask for a huge width, nor
    repeat long arguments beyond the limit."""
    if not isinstance(fmt, str):
        return
    if braces:
        try:
            fields = [spec or "" for _, name, spec, _ in string.Formatter().parse(fmt) if name is not None]
        except ValueError:
            return  # str.format reports it
        widths = [int(n) for spec in fields for n in re.findall(r"\d+", spec)]
        from_args = any("{" in spec for spec in fields)  # {0:{1}}: a width given as an argument
    else:
        fields = _PERCENT_SPEC.findall(fmt)
        widths = [int(n) for spec in fields for n in spec if n.isdigit()]
        from_args = any("*" in spec for spec in fields)
    if from_args and any(isinstance(a, int) and a > budget.limit for a in args):
        raise PromptLimitError(f"a format width over {budget.limit:,} given as an argument")
    if any(w > budget.limit for w in widths):
        raise PromptLimitError(f"a format width or precision over {budget.limit:,}")
    longest = max((_str_size(a) for a in args), default=0)
    budget.too_long(len(fmt) + len(fields) * longest, "a formatted string")


def _check_method(budget: _Budget, obj, args: tuple, kwargs: dict) -> tuple:
    """Before a method of a string runs: the few that can make a much longer one
    (padding, replace, join, format, translate) are refused when it would be over the
    limit. Returns the arguments to call with (join's iterable read once)."""
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if not isinstance(owner, (str, bytes)):
        return args
    values = [*args, *kwargs.values()]
    if name in ("center", "ljust", "rjust", "zfill") and values and isinstance(values[0], int):
        budget.too_long(values[0], f"{name}() giving a string")
    elif name == "expandtabs" and values and isinstance(values[0], int):
        budget.too_long(
            owner.count("\t" if isinstance(owner, str) else b"\t") * values[0] + len(owner),
            "expandtabs() giving a string",
        )
    elif (
        name == "replace"
        and len(args) >= 2
        and isinstance(args[0], type(owner))
        and isinstance(args[1], type(owner))
    ):
        budget.too_long(len(owner) + (owner.count(args[0]) + 1) * len(args[1]), "replace() giving a string")
    elif name == "join" and args:
        items = list(args[0])
        budget.too_long(sum(_size(i) for i in items) + len(owner) * len(items), "join() giving a string")
        args = (items, *args[1:])
    elif name in ("format", "format_map"):
        _check_format(
            budget,
            owner,
            [
                *args,
                *kwargs.values(),
                *(args[0].values() if name == "format_map" and args and isinstance(args[0], dict) else ()),
            ],
            braces=True,
        )
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((_size(v) for v in args[0].values()), default=1)
        budget.too_long(len(owner) * max(longest, 1), "translate() giving a string")
    return args


def _guard_filter(name: str, func):
    """A filter that counts as a step, refuses a count or width over the limit (center,
    indent, batch, tojson's indent...), checks what format, replace and join would
    make, and refuses a result over the limit."""

    @functools.wraps(func)  # keeps jinja_pass_arg: the filter gets what it got before
    def guarded(*args, **kwargs):
        budget = _budget()
        if _BUDGET.get() is not None:
            budget.step()
        skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
        value, rest = (args[skip], args[skip + 1 :]) if len(args) > skip else (None, ())
        options = [*rest, *kwargs.values()]
        if any(isinstance(a, int) and not isinstance(a, bool) and a > budget.limit for a in options):
            raise PromptLimitError(f"a number over {budget.limit:,} given to the {name} filter")
        if name == "format":
            _check_format(budget, value, [*rest, *kwargs.values()], braces=False)
        elif name == "replace" and len(rest) >= 2 and isinstance(value, str):
            budget.too_long(
                len(value) + (value.count(str(rest[0])) + 1) * len(str(rest[1])), "replace giving a string"
            )
        elif name == "indent" and isinstance(value, str):
            width = rest[0] if rest else kwargs.get("width", 4)
            wide = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
            budget.too_long(len(value) + (value.count("\n") + 1) * wide, "indent giving a string")
        elif name == "wordwrap" and isinstance(value, str):
            wrap = rest[3] if len(rest) > 3 else kwargs.get("wrapstring") or "\n"
            budget.too_long(len(value) * (1 + len(str(wrap))), "wordwrap giving a string")
        elif name == "join" and value is not None:
            items = list(value)
            sep = rest[0] if rest else kwargs.get("d", "")
            budget.too_long(
                sum(_str_size(i) or len(str(i)) for i in items) + _str_size(sep) * len(items),
                "join giving a string",
            )
            args = (*args[:skip], items, *rest)
        elif name == "tojson" and value is not None:
            indent = rest[0] if rest else kwargs.get("indent")
            if isinstance(indent, int) and indent > 0:
                budget.too_long(len(json.dumps(value, default=str)) * (1 + indent), "tojson giving a string")
        return _sized(func(*args, **kwargs))

    return guarded


@jinja2.pass_context  # never folded at compile time: it must count at render time
def _count_steps(context, iterable):
    """Wraps every {% for %} loop's iterable: each step counts and checks the clock."""
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


@jinja2.pass_context
def _check_size(context, value):
    return _sized(value)


@jinja2.pass_context
def _count_output(context, text):
    """Wraps every piece of output, in blocks captured by {% set %} and macros as well:
    what a render writes in all is bounded, so no join can grow past it."""
    text = text if isinstance(text, str) else str(text)  # as the output would
    budget = _budget()
    budget.emitted += len(text)
    if budget.emitted > budget.emit_limit:
        raise PromptLimitError(f"writing more than {budget.emit_limit:,} characters in all")
    return text


class _Guards(NodeTransformer):
    """Rewrites a parsed template so that loops, ~ and output go through the checks."""

    def _filter(self, node, name):
        return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)

    def visit_For(self, node):
        node = self.generic_visit(node)
        node.iter = self._filter(node.iter, "_synth_steps")
        return node

    def visit_Concat(self, node):
        return self._filter(self.generic_visit(node), "_synth_size")

    def visit_Output(self, node):
        node = self.generic_visit(node)
        node.nodes = [self._filter(child, "_synth_output") for child in node.nodes]
        return node


class _PromptEnvironment(SandboxedEnvironment):
    """The sandbox (no attribute of Python's internals, ranges of at most 100,000) plus
    the limits above on every loop, call, filter, operation and output."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters.update(_synth_steps=_count_steps, _synth_size=_check_size, _synth_output=_count_output)
        lipsum = self.globals["lipsum"]

        def guarded_lipsum(n=5, html=True, min=20, max=100):
            _budget().too_long(
                n * builtins_max(min, max) * 12
                if isinstance(n, int) and isinstance(min, int) and isinstance(max, int)
                else 0,
                "lipsum() giving a string",
            )
            return lipsum(n, html, min, max)

        self.globals["lipsum"] = guarded_lipsum

    def _parse(self, source, name, filename):
        return _Guards().visit(super()._parse(source, name, filename))

    def call_binop(self, context, operator, left, right):
        budget = _budget()
        if _BUDGET.get() is not None:
            budget.step()
        ints = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and ints and right > 0 and abs(left) > 1:
            if right * abs(left).bit_length() > MAX_INT_BITS:
                raise PromptLimitError(f"a number of more than {MAX_INT_BITS:,} bits")
        elif operator == "*" and ints:
            if abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
                raise PromptLimitError(f"a number of more than {MAX_INT_BITS:,} bits")
        elif operator == "*":
            seq, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(count, int) and hasattr(seq, "__len__"):
                budget.too_long(len(seq) * builtins_max(count, 0))
        elif operator == "+":
            budget.too_long(_size(left) + _size(right))
        elif operator == "%" and isinstance(left, str):
            _check_format(
                budget,
                left,
                right
                if isinstance(right, tuple)
                else list(right.values())
                if isinstance(right, dict)
                else [right],
                braces=False,
            )
        return _sized(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value):
        """str.format and format_map, which the sandbox wraps when they are looked up:
        checked before they run, however they are then called."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None

        def checked(*args, **kwargs):
            _check_method(_budget(), value, args, kwargs)
            return wrapper(*args, **kwargs)

        return functools.update_wrapper(checked, value)

    def call(self, context, obj, /, *args, **kwargs):
        budget = _budget()
        if _BUDGET.get() is not None:
            budget.step()
        args = _check_method(budget, obj, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        budget.too_long(_size(getattr(obj, "__self__", None)))  # list.extend, dict.update...
        return _sized(result)


builtins_max = max


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    # Prompts are plain text: no autoescaping, the final newline kept as written, and
    # a line holding only a {% tag %} leaves no blank line behind. Sandboxed, with limits.
    return _PromptEnvironment(
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
    try:
        if not path.is_file():
            what = (
                "a folder, not a file" if path.is_dir() else "not a file" if path.exists() else "no such file"
            )
            raise SynthError(f"prompt template {path}: {what}")
    except OSError as e:  # a name too long, a folder we may not enter
        raise SynthError(f"prompt template {shortened(str(path))}: {e.strerror}") from None
    env = _environment(jinja2.ChoiceLoader([jinja2.FileSystemLoader(path.parent), _DEFAULTS]))
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
        parsed = _ENV.parse(text)
        _check_names(parsed)
        template = _ENV.from_string(parsed)
    except jinja2.TemplateError as e:
        raise _error(name, e) from None
    template.filename = name  # so that rendering errors name it too
    return template


def _check_names(parsed: nodes.Template) -> None:
    """What does not depend on the examples, found without rendering: a template it
    includes or extends that is not a default, a variable that no render provides."""
    defaults = set(_ENV.list_templates())
    for name in meta.find_referenced_templates(parsed):
        if name is not None and name not in defaults:
            raise jinja2.TemplateNotFound(name)
    unknown = sorted(meta.find_undeclared_variables(parsed) - set(VARIABLES) - set(_ENV.globals))
    if unknown:
        raise jinja2.UndefinedError(f"{unknown[0]!r} is undefined (a template gets {', '.join(VARIABLES)})")


def _error(path: str | os.PathLike | None, e: Exception, point: str | None = None) -> SynthError:
    """One line naming the file; for a syntax error, the file (maybe an included
    one) and the line; for a render, the template's line and the grid point."""
    if isinstance(e, jinja2.TemplateSyntaxError):
        where, detail = f"{e.filename or path}, line {e.lineno}", e.message
    elif isinstance(e, jinja2.TemplateNotFound):
        where, detail = path, f"cannot find {e.name!r}"
    elif isinstance(e, jinja2.TemplateError):
        where, detail = path, e.message
    else:  # the template's own runtime error: 1 / 0, "a" + 1, a macro calling itself...
        where, detail = path, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    if point is not None:
        line = _template_line(e, path)
        where = f"{where}{f', line {line}' if line else ''}, rendering {point}"
    detail = " ".join(str(detail).split())  # one line, whatever the message holds
    if len(detail) > 300:
        detail = detail[:300] + "..."
    return SynthError(f"prompt template {where}: {detail}")


def _template_line(e: Exception, path) -> int | None:
    """The line of ``path`` the error was raised from (Jinja rewrites the traceback to
    the template's lines)."""
    line, tb = None, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def base_template(prompt: str) -> str:
    """The file a built-in wording's kind templates extend: ``_base.j2`` for the default,
    ``_<name>.j2`` for a paraphrase (synth.config.PROMPT_VERSIONS names them)."""
    return "_base.j2" if prompt == "default" else f"_{prompt}.j2"


def render_prompt(
    task: Task,
    length: int,
    train: Sequence[tuple[str, int]],
    *,
    template: TemplateArg = None,
    prompt: str = "default",
) -> str:
    """The prompt for one (task, length) and its training split.

    ``template`` is a path to a user template, an already loaded one (see
    ``load_template``), or None for the default of the task's kind, worded as the
    built-in ``prompt`` (``default``, ``paraphrase-1``...).
    """
    if template is None:
        template = _ENV.get_template(f"{task.kind}.j2")
    elif not isinstance(template, jinja2.Template):
        template = load_template(template)
    examples = [{"input": x, "label": int(y)} for x, y in train]
    block = "\n".join(f"{e['input']} -> {e['label']}" for e in examples)
    budget = _Budget(MAX_PROMPT_CHARS + EXAMPLE_COPIES * len(block), MAX_RENDER_SECONDS, MAX_STEPS)
    token = _BUDGET.set(budget)
    try:
        text = template.render(
            kind=task.kind,
            length=length,
            examples=examples,
            examples_block=block,
            n_train=len(examples),
            prompt_base=base_template(prompt),
        )
        budget.too_long(len(text), "a prompt")
    except Exception as e:  # whatever the template raises (MemoryError, RecursionError too)
        error = e
    else:
        return text
    finally:
        _BUDGET.reset(token)
    raise _error(template.filename, error, f"{task.id} at L={length}") from None


def prompt_hash(text: str) -> str:
    """SHA-256 hex of the prompt's UTF-8 bytes: identical prompts share one record."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
