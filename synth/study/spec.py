"""A study file: systems x prompt wordings x seeds over one grid, read and checked whole
before anything is built or spent.

Every key of a system, and every grid key at the top, is a `synth run` setting (dashes
or underscores), read as its flag reads it; a top-level setting applies to every system
unless the system sets its own. A system also has a ``name`` and may name the variable
holding its endpoint's key (``api_key_env``). Each cell, one system x one prompt x one
seed, is one run.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import yaml

from synth.config import OPENAI_PROVIDER, PROMPT_VERSIONS, RunConfig, parse_float, parse_int
from synth.engine.preflight import API_KEY_ENV
from synth.errors import SynthError, shortened

MAX_FILE_BYTES = 1 << 20
# Settings a study sets for each cell (its run id, seed and prompt) or leaves to each run
# (its export paths): not keys of the file.
PER_CELL = (
    "run_id",
    "seed",
    "prompt",
    "prompt_version",
    "prompt_template",
    "prompt_template_path",
    "dry_run",
    "out_dir",
    "out_jsonl",
    "out_csv",
    "out_manifest",
    "dataset_dir",
)
SETTINGS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in PER_CELL)
STUDY_KEYS = ("name", "systems", "seeds", "seed", "prompts", *SETTINGS)
SYSTEM_KEYS = ("name", "api_key_env", *SETTINGS)
# Settings naming files: a relative path is read from the study file's folder, wherever
# the study is run from.
FILE_SETTINGS = ("tasks_files", "prices_path")
_TYPES = typing.get_type_hints(RunConfig)
# A study's and a system's name: part of each run id (a file name), so a plain word.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,39}")


@dataclass(frozen=True)
class System:
    name: str
    settings: dict  # RunConfig settings: the study's top-level ones, then the system's own
    api_key_env: str

    @property
    def needs_key(self) -> bool:
        return self.settings.get("provider", OPENAI_PROVIDER) == OPENAI_PROVIDER

    @property
    def endpoint(self) -> tuple[str, str]:
        """Where its calls go, as the key that opens it: calls to one endpoint share its
        concurrency limit and its rate limits."""
        return self.settings.get("api_base_url") or "https://api.openai.com/v1", self.api_key_env


@dataclass(frozen=True)
class Cell:
    study: str
    system: System
    prompt: str  # a built-in wording, or a template file's path
    seed: int

    @property
    def prompt_label(self) -> str:
        return self.prompt if self.prompt in PROMPT_VERSIONS else Path(self.prompt).stem

    @property
    def run_id(self) -> str:
        return f"{self.study}.{self.system.name}.{self.prompt_label}.s{self.seed}"

    def config(self) -> RunConfig:
        wording = (
            {"prompt": self.prompt}
            if self.prompt in PROMPT_VERSIONS
            else {"prompt_template_path": self.prompt}
        )
        return RunConfig(**self.system.settings, **wording, seed=self.seed, run_id=self.run_id)


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    spec: dict  # the file as read: what a later file of this name must equal
    systems: tuple[System, ...]
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical(self.spec).encode()).hexdigest()

    @property
    def cells(self) -> list[Cell]:
        return [Cell(self.name, *c) for c in product(self.systems, self.prompts, self.seeds)]


def canonical(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, ensure_ascii=False)


def load_study(path: str | os.PathLike, environ=None) -> Study:
    """The study in the file at ``path``, every cell's settings checked as `synth run`
    checks its flags, and every key a system names present in ``environ``."""
    path = Path(os.path.abspath(Path(path).expanduser()))  # recorded whole: found from anywhere
    environ = os.environ if environ is None else environ
    text = _read(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        spec = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SynthError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(spec, dict):
        raise SynthError(f"{path}: a study file is a mapping of keys (name, systems, ...)")
    lines = _key_lines(root)
    at = _Where(path, lines)
    _check_keys(spec, STUDY_KEYS, at, "the study")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SynthError(f"{at('name')}: name must be a word of letters, digits, _ + - (at most 40)")
    shared = _settings(spec, at, "the study", path.parent)
    systems = _systems(spec.get("systems"), shared, at, environ, path.parent)
    prompts = _prompts(spec.get("prompts", ["default"]), path.parent, at)
    seeds = _seeds(spec, at)
    study = Study(name, path, spec, systems, prompts, seeds)
    for cell in study.cells:
        try:
            cell.config().validate()
        except SynthError as e:
            raise SynthError(
                f"{at(('systems', cell.system.name))}: system {cell.system.name!r}: {e}"
            ) from None
    return study


def _read(path: Path) -> str:
    from tracker.files import read_plain

    try:
        return read_plain(path, MAX_FILE_BYTES).decode("utf-8")
    except OSError as e:
        raise SynthError(f"cannot read study file {shortened(str(path))}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SynthError(f"study file {path} is not UTF-8 text: {e}") from None


class _Where:
    """``path:line`` of a key, for messages."""

    def __init__(self, path: Path, lines: dict):
        self.path, self.lines = path, lines

    def __call__(self, key) -> str:
        line = self.lines.get(key if isinstance(key, tuple) else (key,))
        return f"{self.path}:{line}" if line else str(self.path)


def _key_lines(root) -> dict[tuple, int]:
    """The line of each key: ``(key,)`` at the top, ``("systems", name, key)`` in a
    system (by its name, else its position), ``("systems", name)`` for the system."""
    lines: dict[tuple, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        lines[(key.value,)] = key.start_mark.line + 1
        if key.value == "systems" and isinstance(value, yaml.SequenceNode):
            for i, item in enumerate(value.value):
                if not isinstance(item, yaml.MappingNode):
                    continue
                names = [
                    v.value for k, v in item.value if k.value == "name" and isinstance(v, yaml.ScalarNode)
                ]
                label = names[0] if names else i
                lines[("systems", label)] = item.start_mark.line + 1
                for k, _ in item.value:
                    lines[("systems", label, k.value)] = k.start_mark.line + 1
    return lines


def _check_keys(mapping: dict, known: tuple[str, ...], at, owner: str, where=()) -> None:
    for key in mapping:
        if not isinstance(key, str) or key.replace("-", "_") not in known:
            close = difflib.get_close_matches(str(key).replace("-", "_"), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SynthError(f"{at((*where, key))}: unknown key {str(key)!r} in {owner}{hint}")


def _settings(mapping: dict, at, owner: str, folder: Path, where=()) -> dict:
    """The run settings among ``mapping``'s keys, each read as its flag reads it; the
    FILE_SETTINGS' relative paths from ``folder``."""
    found = {}
    for key, value in mapping.items():
        name = key.replace("-", "_")
        if name in SETTINGS:
            try:
                found[name] = _typed(name, value)
            except SynthError as e:
                raise SynthError(f"{at((*where, key))}: {owner}: {e}") from None
            if name in FILE_SETTINGS and found[name] is not None:
                found[name] = _beside(folder, found[name])
    return found


def _beside(folder: Path, value: str | list[str]) -> str | list[str]:
    """A path (or paths) as given, a relative one taken from ``folder``."""
    if isinstance(value, list):
        return [_beside(folder, v) for v in value]
    return str(folder / Path(value).expanduser())


def _typed(name: str, value):
    """``value`` as the type of the RunConfig field ``name``."""
    flag = "--" + name.replace("_", "-")
    kind = _TYPES[name]
    options = set(typing.get_args(kind)) if isinstance(kind, types.UnionType) else {kind}
    if value is None:
        if type(None) in options:
            return None
        raise SynthError(f"{flag} needs a value")
    options.discard(type(None))
    (kind,) = options
    if kind is bool:
        if not isinstance(value, bool):
            raise SynthError(f"{flag} is true or false (got {value!r})")
        return value
    if isinstance(value, bool):
        raise SynthError(f"{flag} is not true or false (got {value!r})")
    if kind is int:
        return value if isinstance(value, int) else parse_int(str(value), flag)
    if kind is float:
        return float(value) if isinstance(value, int | float) else parse_float(str(value), flag)
    if kind is str:
        if isinstance(value, list | dict):
            raise SynthError(f"{flag} takes one value (got {shortened(str(value))})")
        return str(value)
    (item,) = typing.get_args(kind)  # list[str], list[int]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SynthError(f"{flag} needs at least one value")
    return [_typed_item(item, v, flag) for v in values]


def _typed_item(item: type, value, flag: str):
    if item is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise SynthError(f"{flag} takes whole numbers (got {value!r})")
        return value if isinstance(value, int) else parse_int(value, flag)
    if not isinstance(value, str | int):
        raise SynthError(f"{flag} takes names (got {value!r})")
    return str(value)


def _systems(entries, shared: dict, at, environ, folder: Path) -> tuple[System, ...]:
    if not isinstance(entries, list) or not entries:
        raise SynthError(f"{at('systems')}: systems must be a list of at least one system")
    systems: dict[str, System] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SynthError(f"{at('systems')}: system {i + 1} must be a mapping (name: ..., model: ...)")
        name = entry.get("name")
        label = name if isinstance(name, str) else i
        _check_keys(entry, SYSTEM_KEYS, at, f"system {name or i + 1!r}", ("systems", label))
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SynthError(
                f"{at(('systems', label))}: system {i + 1} needs a name: a word of letters, digits, _ + -"
            )
        if name in systems:
            raise SynthError(f"{at(('systems', label))}: two systems are named {name!r}")
        key_env = entry.get("api_key_env", API_KEY_ENV)
        if not isinstance(key_env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
            raise SynthError(f"{at(('systems', label, 'api_key_env'))}: api_key_env must name a variable")
        own = _settings(entry, at, f"system {name!r}", folder, ("systems", label))
        system = System(name, {**shared, **own}, key_env)
        if system.needs_key and not environ.get(key_env):
            raise SynthError(
                f"{at(('systems', label))}: system {name!r} reads its key from {key_env}, which is not set"
            )
        systems[name] = system
    return tuple(systems.values())


def _prompts(entries, folder: Path, at) -> tuple[str, ...]:
    entries = entries if isinstance(entries, list) else [entries]
    if not entries:
        raise SynthError(f"{at('prompts')}: prompts must list at least one wording")
    prompts = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise SynthError(
                f"{at('prompts')}: a prompt is a built-in name or a template file (got {entry!r})"
            )
        if entry not in PROMPT_VERSIONS:
            file = folder / entry
            if not file.is_file():
                raise SynthError(
                    f"{at('prompts')}: prompt {entry!r} is neither a built-in wording "
                    f"({', '.join(PROMPT_VERSIONS)}) nor a template file beside the study file"
                )
            entry = str(file)
        if entry in prompts:
            raise SynthError(f"{at('prompts')}: prompt {entry!r} is listed twice")
        prompts.append(entry)
    labels = [Path(p).stem if p not in PROMPT_VERSIONS else p for p in prompts]
    if len(set(labels)) < len(labels):
        raise SynthError(f"{at('prompts')}: two prompts share the name {labels[0]!r}: rename a template file")
    return tuple(prompts)


def _seeds(spec: dict, at) -> tuple[int, ...]:
    if "seeds" in spec and "seed" in spec:
        raise SynthError(f"{at('seed')}: give seeds (a list) or seed (one), not both")
    key = "seeds" if "seeds" in spec else "seed"
    values = spec.get(key, RunConfig.seed)
    values = values if isinstance(values, list) else [values]
    if not values:
        raise SynthError(f"{at(key)}: seeds must list at least one seed")
    try:
        seeds = [_typed("seed", v) for v in values]
    except SynthError as e:
        raise SynthError(f"{at(key)}: {e}") from None
    if len(set(seeds)) < len(seeds):
        raise SynthError(f"{at(key)}: seeds lists {next(s for s in seeds if seeds.count(s) > 1)} twice")
    return tuple(seeds)
