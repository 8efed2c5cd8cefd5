"""A researcher's own tasks, declared in a Python file of theirs (docs/custom-tasks.md):

    import synth

    @synth.task(kind="binary", lengths=(20, 50, 100))
    def first_equals_last(x: str) -> int:
        return int(x[0] == x[-1])

    synth.tabular_task("pima", csv="pima.csv", label="Outcome", positive="1")

``load_tasks_files`` runs such files (in this process: they are the researcher's own
code, trusted as the runner is) and returns their tasks, each checked before anything
is spent and keyed by what defines it (synth.datasets.generators.base.Origin), so that a
changed task never reuses another's datasets.
"""

from __future__ import annotations

import functools
import hashlib
import re
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth.datasets.generators import custom
from synth.datasets.generators.base import DEFAULT_LENGTHS, Generator, Origin, Task
from synth.errors import SynthError, shortened

# A task id names files and folders of the exports: a plain identifier.
_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Uniform inputs each label function is tried on at each of its lengths when loaded.
PROBES = 16


@dataclass(frozen=True)
class _Declared:
    id: str
    kind: str
    lengths: tuple[int, ...]
    label: Callable[[str], object] | None = None
    generator: Generator | None = None
    length_rule: Callable[[int], str | None] | None = None
    csv: str | None = None
    label_column: str | None = None
    positive: str | None = None


# The declarations of the file being loaded; None outside a load, where declaring
# checks the declaration and records nothing (a tasks file imported on its own).
_loading: list[_Declared] | None = None


def task(
    *,
    kind: str,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    id: str | None = None,
    generator: Generator | None = None,
    length_rule: Callable[[int], str | None] | None = None,
):
    """Declare the decorated label function ``f(x: str) -> 0 or 1`` a task of ``kind``
    (binary, decimal or graph), by default drawn at ``lengths``. Its data are uniform
    inputs of the kind, balanced by rejection, unless ``generator(L, n, rng)`` gives n
    positives and n negatives itself; ``length_rule(L)`` says why a length cannot be
    served, or None. The function is returned unchanged."""

    def declare(label: Callable[[str], object]) -> Callable[[str], object]:
        name = id or getattr(label, "__name__", "")
        if kind not in custom.KINDS:
            hint = "; declare a tabular task with synth.tabular_task" if kind == "tabular" else ""
            raise SynthError(f"task {name!r}: unknown kind {kind!r} (known: {', '.join(custom.KINDS)}){hint}")
        _record(_Declared(name, kind, _lengths(name, lengths), label, generator, length_rule))
        return label

    return declare


def tabular_task(id: str, *, csv: str | Path, label: str, positive: str | int) -> None:
    """Declare a tabular task on the rows of a CSV file with a header (a path relative
    to the tasks file's folder): ``label`` names the class column, ``positive`` its
    value of class 1 (every other value is class 0)."""
    _record(_Declared(id, "tabular", (), csv=str(csv), label_column=label, positive=str(positive)))


def _lengths(name: str, lengths: Sequence[int]) -> tuple[int, ...]:
    values = tuple(lengths) if isinstance(lengths, Iterable) else ()
    if not values or not all(isinstance(L, int) and not isinstance(L, bool) and L >= 1 for L in values):
        raise SynthError(f"task {name!r}: lengths must be positive whole numbers (got {lengths!r})")
    return values


def _record(declared: _Declared) -> None:
    if not _ID.fullmatch(declared.id):
        raise SynthError(
            f"task id {declared.id!r} is not a plain name (letters, digits and _, not starting "
            "with a digit, at most 64 characters)"
        )
    if _loading is not None:
        _loading.append(declared)


def load_tasks_files(paths: Sequence[str | Path]) -> list[Task]:
    """The tasks of every file, in order; refused in one line (a missing file, a broken
    one, an id taken by a built-in task or declared twice, a label that is not 0 or 1)."""
    from synth.tasks import TASKS

    found: dict[str, Task] = {}
    for given in paths:
        path = Path(given).expanduser().resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SynthError(f"tasks file {shortened(str(given))} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SynthError(f"cannot read the tasks file {shortened(str(given))}: {e}") from None
        for t in load_text(str(path), text):
            if t.id in TASKS:
                raise SynthError(
                    f"task {t.id!r} in {given} has the id of the built-in task {t.id} "
                    f"({TASKS[t.id].target}); give it another id"
                )
            if t.id in found:
                other = found[t.id].origin.path
                where = f"twice in {given}" if other == str(path) else f"in both {other} and {path}"
                raise SynthError(f"task {t.id!r} is declared {where}")
            found[t.id] = t
    return list(found.values())


def load_text(path: str, text: str) -> tuple[Task, ...]:
    """The tasks a tasks file of this ``text`` declares (``path``: where it is, for its
    messages and its CSVs), each probed."""
    file_key = hashlib.sha256(text.encode("utf-8")).hexdigest()
    declared = _declarations(path, text)
    tasks = tuple(_task(d, path, text, file_key) for d in declared)
    for d, t in zip(declared, tasks):
        if d.kind != "tabular" and d.generator is None:
            _probe(t)
    return tasks


def _declarations(path: str, text: str) -> list[_Declared]:
    """What running a tasks file of this ``text`` declares."""
    global _loading
    namespace = {"__name__": "synth_tasks", "__file__": path}
    _loading = declared = []
    try:
        exec(compile(text, path, "exec"), namespace)
    except SyntaxError as e:
        raise SynthError(f"tasks file {path}: syntax error at line {e.lineno}: {e.msg}") from None
    except SynthError as e:
        raise SynthError(f"tasks file {path}: {e}") from None
    except Exception as e:
        raise SynthError(f"tasks file {path}: {_raised(e, path)}") from None
    finally:
        _loading = None
    return declared


def _raised(e: Exception, path: str) -> str:
    """What an exception says, at the line of the tasks file that raised it."""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
    where = f" at line {lines[-1]}" if lines else ""
    return f"{type(e).__name__}{where}: {e}"


def _task(d: _Declared, path: str, text: str, file_key: str) -> Task:
    if d.kind == "tabular":
        return _tabular(d, path, text)
    label = custom.checked(d.id, d.label)
    if d.generator is None:
        generate, capacity = custom.by_rejection(d.id, d.kind, label), custom.capacity(d.kind, label)
    else:  # what it can reach is the generator's own to know
        generate, capacity = custom.verified(d.id, d.generator, label), lambda L: (None, None)
    return Task(
        id=d.id,
        target=d.id,
        kind=d.kind,
        default_lengths=d.lengths,
        generate=generate,
        label=label,
        length_rule=d.length_rule or custom.length_rule(d.kind),
        capacity=capacity,
        origin=Origin(path, text, file_key),
    )


def _tabular(d: _Declared, path: str, text: str) -> Task:
    from synth.datasets.csv_table import read_csv_table

    csv = Path(path).parent / Path(d.csv).expanduser()
    try:
        table, csv_sha256 = read_csv_table(csv, d.label_column, d.positive)
    except SynthError as e:
        raise SynthError(f"task {d.id!r}: {e}") from None
    key = hashlib.sha256(f"{csv_sha256}\n{d.label_column}\n{d.positive}".encode()).hexdigest()
    width = len(table.features)
    return Task(
        id=d.id,
        target=d.id,
        kind="tabular",
        default_lengths=(width,),
        generate=None,
        label=None,
        # Rows may repeat; the leakage-free splitter keeps copies within one split.
        unique=lambda L: False,
        fixed_length=width,
        table=lambda uci_dir: table,
        origin=Origin(path, text, key, str(csv), csv_sha256),
    )


def _probe(t: Task) -> None:
    """A label function that raises or says neither 0 nor 1 is refused when loaded, on
    the uniform inputs it will label, at each of its lengths (every label drawn later is
    checked too)."""
    rng = np.random.default_rng(0)
    for L in t.default_lengths:
        if t.length_rule(L) is None:
            for x in custom.DRAWS[t.kind](rng, PROBES, L):
                t.label(x)


def task_of(origin: Origin, fn: str) -> Task:
    """Task ``fn`` of the tasks file ``origin`` names, again from the text recorded (a
    worker process building its datasets; `synth verify`, which needs no file): only
    this task is built, so another task's CSV need not be there. A tabular task reads
    its CSV again, refused when it is gone or no longer the one ``origin`` names."""
    declared = next((d for d in _declared_once(origin.path, origin.text) if d.id == fn), None)
    if declared is None:
        raise SynthError(f"task {fn}: the recorded text of {origin.path} does not declare it")
    found = _task(declared, origin.path, origin.text, hashlib.sha256(origin.text.encode("utf-8")).hexdigest())
    if found.origin.key != origin.key:
        raise SynthError(
            f"task {fn}: its CSV {found.origin.csv} is not the one it was defined with "
            f"(SHA-256 {(origin.csv_sha256 or '')[:12]}... then, {(found.origin.csv_sha256 or '')[:12]}... now)"
        )
    return found


@functools.lru_cache(maxsize=8)
def _declared_once(path: str, text: str) -> tuple[_Declared, ...]:
    """A tasks file's text run once per process (a pool's workers live as long as one build)."""
    return tuple(_declarations(path, text))


def definition(t: Task) -> dict:
    """What a run records of one of its own tasks (a run_tasks row, with the file's text)."""
    o = t.origin
    return {
        "fn": t.id,
        "kind": t.kind,
        "file": o.path,
        "file_text": o.text,
        "file_sha256": hashlib.sha256(o.text.encode("utf-8")).hexdigest(),
        "csv": o.csv,
        "csv_sha256": o.csv_sha256,
        "task_sha256": o.key,
    }


def recorded_task(row: dict) -> Task:
    """A task as a run recorded it (a run_tasks row): enough to resume the run, whose
    datasets are stored; the file and its CSV are not needed again."""
    return Task(
        id=row["fn"],
        target=row["fn"],
        kind=row["kind"],
        default_lengths=(),
        generate=None,
        label=None,
        origin=Origin(row["file"], row["file_text"], row["task_sha256"], row["csv"], row["csv_sha256"]),
    )


def check_unchanged(run_id: str, recorded: list[dict], paths: Sequence[str | Path]) -> None:
    """Refuses tasks files given to a resume that no longer define the run's tasks as it
    recorded them, naming the first difference: a task gone, a changed line, a changed CSV."""
    now = {t.id: t for t in load_tasks_files(paths)}
    for row in recorded:
        t = now.get(row["fn"])
        if t is None:
            raise SynthError(
                f"run {run_id} ran task {row['fn']} of {row['file']}, which the tasks files given do not declare"
            )
        if t.origin.text != row["file_text"]:
            line, then, later = _first_difference(row["file_text"], t.origin.text)
            raise SynthError(
                f"tasks file {t.origin.path} differs from the one run {run_id} was started with "
                f"({row['file']}) at line {line}: {then!r} then, {later!r} now; a resume uses the "
                "recorded definition, so give the file as it was, or none"
            )
        if t.origin.key != row["task_sha256"]:
            raise SynthError(
                f"task {row['fn']}: its CSV {t.origin.csv} differs from the one run {run_id} was started "
                f"with (SHA-256 {row['csv_sha256'][:12]}... then, {t.origin.csv_sha256[:12]}... now)"
            )


def _first_difference(before: str, after: str) -> tuple[int, str, str]:
    """The first line (from 1) where two texts differ, and that line in each ('' past the end)."""
    old, new = before.splitlines(), after.splitlines()
    i = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
    return i + 1, old[i] if i < len(old) else "", new[i] if i < len(new) else ""
