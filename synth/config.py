"""A run's configuration: every flag of the published runner plus ours, validated whole.

The config is stored with the run (as JSON) and is all that `synth resume` and `synth export`
need. It never holds a secret: the API key is read from OPENAI_API_KEY at call time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from synth.errors import SynthError, shortened

# The reasoning efforts OpenAI's models take today. Newer models add levels, so any other
# value is sent as given and a server that refuses it says so.
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
VERBOSITIES = ("low", "medium", "high")
TOOL_CHOICES = ("auto", "none")
API_MODES = ("responses", "chat")
OPENAI_PROVIDER = "openai"
# Offline proposers (synth.providers.offline): no key, no network, no tokens.
OFFLINE_PROVIDERS = ("tree", "formula", "logreg", "forest", "boosting", "mlp", "svm", "knn")
PROVIDERS = (OPENAI_PROVIDER, *OFFLINE_PROVIDERS)
DEFAULT_MODEL = "gpt-5"
# Durations in seconds are at most ~115 days: inf or 1e300 would overflow the clocks.
MAX_SECONDS = 10_000_000
AT_MOST = f" and at most {MAX_SECONDS:,}"

# A run's trials are rows written before its first call: a grid larger than this is
# refused up front (a mistyped --num-trials would otherwise fill the disk first).
MAX_TRIALS = 100_000
MAX_TRIALS_ENV = "SYNTH_MAX_TRIALS"
# Attempts per trial: the paper's protocol uses 5; a typo must not plan a trial forever.
MAX_ATTEMPTS = 1_000

# The built-in prompt wordings a run may use (`--prompt NAME`), each with its version:
# raised whenever its text changes, so that a resume can tell (synth/templates/).
PROMPT_VERSIONS = {"default": 1, "paraphrase-1": 1, "paraphrase-2": 1, "paraphrase-3": 1}

# What a resume may change: how hard and where a run works, never what it measures.
RESUMABLE = (
    "concurrency",
    "timeout",
    "max_retries",
    "retry_base_delay",
    "retry_max_delay",
    "api_base_url",
    "out_dir",
    "out_jsonl",
    "out_csv",
    "out_manifest",
    "dataset_dir",
    "fail_fast_after",
    "max_cost",
    "batch_poll_interval",
    "batch_poll_max",
)
# Settings only the OpenAI providers read (an offline proposer records --model as its label).
API_SETTINGS = (
    "max_output_tokens",
    "reasoning_effort",
    "verbosity",
    "tool_choice",
    "enable_code_interpreter",
    "api_mode",
    "api_base_url",
    "timeout",
    "max_retries",
    "retry_base_delay",
    "retry_max_delay",
    "fail_fast_after",
    "max_cost",
    "batch",
    "batch_poll_interval",
    "batch_poll_max",
)


# The variable each setting falls back to when it is not given: read by RunConfig.resolve
# alone, so that the CLI and a Python caller get the same run.
ENV_VARS = {
    "provider": "SYNTH_PROVIDER",
    "model": "SYNTH_MODEL",
    "api_mode": "SYNTH_API_MODE",
    "api_base_url": "SYNTH_API_BASE_URL",
    "concurrency": "SYNTH_CONCURRENCY",
    "timeout": "SYNTH_TIMEOUT",
    "max_retries": "SYNTH_MAX_RETRIES",
    "retry_base_delay": "SYNTH_RETRY_BASE_DELAY",
    "retry_max_delay": "SYNTH_RETRY_MAX_DELAY",
    "eval_timeout": "SYNTH_EVAL_TIMEOUT",
    "batch_poll_interval": "SYNTH_BATCH_POLL_INTERVAL",
    "batch_poll_max": "SYNTH_BATCH_POLL_MAX",
    "tasks_files": "SYNTH_TASKS_FILE",  # several: separated by os.pathsep (":")
}

DEMO_DIR = Path("runs/demo")
DEMO_FUNCTIONS = ["fn_a", "fn_c", "fn_e", "fn_g", "fn_m", "fn_q"]
DEMO_LENGTHS = [20, 50]
# Where the demo's settings differ from a run's: offline (its --provider reads no
# variable, so a SYNTH_PROVIDER=openai set for `synth run` never makes it spend), small,
# and a shorter search for the `formula` proposer.
DEMO_DEFAULTS = {"provider": "formula", "num_trials": 3, "attempts": 2, "max_candidates": 200_000}

# What only the `formula` proposer reads.
FORMULA_SETTINGS = ("time_budget", "max_candidates")
# Its budget is counted in formulas, so that its programs are the same on any machine
# (fn_e at L=50 needs about 553,000); the clock is only a safety cap, in seconds, and an
# attempt it stops is recorded as incomplete ("time_cap") and flagged in the report.
FORMULA_MAX_CANDIDATES = 1_000_000
FORMULA_TIME_CAP = 60.0
# A proposal an offline proposer's safety cap stopped: its response's incomplete_reason.
TIME_CAP = "time_cap"


def unread_settings(provider: str) -> tuple[str, ...]:
    """The RunConfig fields ``provider`` never reads: given anyway, they change nothing."""
    unread = () if provider == OPENAI_PROVIDER else API_SETTINGS
    return unread if provider == "formula" else (*unread, *FORMULA_SETTINGS)


@dataclass
class RunConfig:
    functions: list[str] | None = None
    lengths: list[int] | None = None
    # Python files declaring tasks of the researcher's own (synth.custom_tasks); a run
    # also records each one's text in the database.
    tasks_files: list[str] | None = None
    attempts: int = 5
    num_trials: int = 5
    # None: gpt-5 for OpenAI; an offline proposer records its own name as the model.
    model: str | None = None
    max_output_tokens: int = 20000
    reasoning_effort: str = "high"
    verbosity: str = "low"
    tool_choice: str = "auto"
    enable_code_interpreter: bool = False
    train_size: int = 100
    val_size: int = 100
    test_size: int = 10000
    seed: int = 42
    strict_sizes: bool = False
    provider: str = OPENAI_PROVIDER
    time_budget: float = FORMULA_TIME_CAP  # the `formula` proposer's safety cap, in seconds
    max_candidates: int | None = FORMULA_MAX_CANDIDATES  # formulas it may look at: its budget
    # An offline proposer's settings in one line, filled in by start_run (the report shows it).
    proposer_setting: str | None = None
    api_mode: str = "responses"
    api_base_url: str | None = None
    prompt: str = "default"  # a built-in wording (PROMPT_VERSIONS)
    prompt_version: int | None = None  # set when the run starts
    prompt_template: str | None = None  # the template's text, so a resume renders the same
    prompt_template_path: str | None = None
    concurrency: int = 5
    timeout: float = 1200.0
    max_retries: int = 4
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    eval_timeout: float = 60.0
    # A run whose first this many calls all fail alike stops (synth.engine.failfast); 0: never.
    fail_fast_after: int = 8
    max_cost: float | None = None  # USD the run may spend in all (synth.engine.budget)
    # Attempts go out in waves through the Batch API, at its prices (synth.engine.waves):
    # the first poll of a batch after this many seconds, each next one twice as late, up to
    # batch_poll_max.
    batch: bool = False
    batch_poll_interval: float = 30.0
    batch_poll_max: float = 600.0
    prices_path: str | None = None  # a price table over the package's (tracker.prices)
    dry_run: bool = False
    # "I/N": this run is shard I of N of one experiment (tracker.shards.assign); its run
    # id, when not given, is derived from the settings when it starts, the same on every
    # machine (synth.engine.preflight.shard_record). None: a timestamp id, unsharded.
    shard: str | None = None
    run_id: str | None = None
    dataset_dir: str | None = None
    out_dir: str | None = None
    out_jsonl: str | None = None
    out_csv: str | None = None
    out_manifest: str | None = None

    def __post_init__(self):
        if self.run_id is None and self.shard is None:
            self.run_id = new_run_id()
        if self.model is None:
            self.model = DEFAULT_MODEL if self.provider == OPENAI_PROVIDER else self.provider

    @classmethod
    def resolve(cls, environ: Mapping[str, str] | None = None, **given) -> RunConfig:
        """The config of the settings ``given`` (None: not given), then of the environment
        variables of ENV_VARS, then the defaults: the one place this order is applied."""
        unknown = sorted(set(given) - set(_FIELDS))
        if unknown:
            raise TypeError(f"RunConfig has no setting {', '.join(unknown)}")
        chosen = {k: v for k, v in given.items() if v is not None}
        return cls(**{**environment_settings(set(ENV_VARS) - set(chosen), environ), **chosen})

    def validate(self, *, new_run: bool = True) -> None:
        """Refuse bad settings; a stored run's (``new_run=False``) keeps the id it has."""
        checks = [
            (self.provider in PROVIDERS, f"--provider must be one of {', '.join(PROVIDERS)}"),
            (
                0 < self.time_budget <= MAX_SECONDS,
                f"--time-budget must be positive{AT_MOST} (got {self.time_budget})",
            ),
            (
                self.max_candidates is None or self.max_candidates >= 1,
                f"--max-candidates must be at least 1 (got {self.max_candidates})",
            ),
            (
                bool(self.reasoning_effort)
                and self.reasoning_effort.isascii()
                and self.reasoning_effort.isprintable()
                and " " not in self.reasoning_effort,
                f"--reasoning-effort must be a word such as {', '.join(EFFORTS)} (got {_shown(self.reasoning_effort)})",
            ),
            (
                self.prompt in PROMPT_VERSIONS,
                f"--prompt must be one of {', '.join(PROMPT_VERSIONS)} (got {_shown(self.prompt)})",
            ),
            (
                self.prompt == "default" or not self.prompt_template_path,
                "give --prompt or --prompt-template, not both",
            ),
            (self.verbosity in VERBOSITIES, f"--verbosity must be one of {', '.join(VERBOSITIES)}"),
            (self.tool_choice in TOOL_CHOICES, f"--tool-choice must be one of {', '.join(TOOL_CHOICES)}"),
            (self.api_mode in API_MODES, f"--api-mode must be one of {', '.join(API_MODES)}"),
            (self.attempts >= 1, f"--attempts must be at least 1 (got {self.attempts})"),
            (self.num_trials >= 1, f"--num-trials must be at least 1 (got {self.num_trials})"),
            (self.concurrency >= 1, f"--concurrency must be at least 1 (got {self.concurrency})"),
            (
                self.max_output_tokens >= 1,
                f"--max-output-tokens must be positive (got {self.max_output_tokens})",
            ),
            (0 < self.timeout <= MAX_SECONDS, f"--timeout must be positive{AT_MOST} (got {self.timeout})"),
            (self.max_retries >= 0, f"--max-retries must not be negative (got {self.max_retries})"),
            (
                self.fail_fast_after >= 0,
                f"--fail-fast-after must not be negative (got {self.fail_fast_after})",
            ),
            (
                0 <= self.retry_base_delay <= MAX_SECONDS,
                f"--retry-base-delay must not be negative{AT_MOST} (got {self.retry_base_delay})",
            ),
            (
                0 <= self.retry_max_delay <= MAX_SECONDS,
                f"--retry-max-delay must not be negative{AT_MOST} (got {self.retry_max_delay})",
            ),
            (
                0 < self.eval_timeout <= MAX_SECONDS,
                f"--eval-timeout must be positive{AT_MOST} (got {self.eval_timeout})",
            ),
            (
                self.max_cost is None or 0 < self.max_cost < math.inf,
                f"--max-cost must be a positive number of USD, finite (got {self.max_cost})",
            ),
            (
                self.max_cost is None or not self.enable_code_interpreter,
                "--max-cost cannot bound a run with --enable-code-interpreter: its tool output "
                "is billed as input tokens no prompt shows",
            ),
            (
                not self.batch or self.provider == OPENAI_PROVIDER,
                f"--batch needs --provider {OPENAI_PROVIDER}: the offline proposer "
                f"{self.provider} calls no API",
            ),
            (
                0 < self.batch_poll_interval <= self.batch_poll_max <= MAX_SECONDS,
                "--batch-poll-interval must be positive and at most --batch-poll-max"
                f"{AT_MOST} (got {self.batch_poll_interval} and {self.batch_poll_max})",
            ),
            (bool(self.model), "--model must not be empty"),
            (self.model.isprintable(), f"--model must be one printable line (got {_shown(self.model)})"),
            (
                self.attempts <= MAX_ATTEMPTS,
                f"--attempts must be at most {MAX_ATTEMPTS:,} (got {self.attempts:,})",
            ),
            (
                self.api_base_url is None or _http_url(self.api_base_url),
                "--api-base-url must be an http(s) URL with a host and a port from 1 to 65535, "
                f"e.g. http://localhost:8000/v1 (got {_shown(self.api_base_url or '')})",
            ),
            (
                self.shard is None or parse_shard(self.shard) is not None,
                f"--shard must be I/N, this machine's shard I of N (1 <= I <= N), e.g. 1/4 (got {_shown(self.shard or '')})",
            ),
            (
                not new_run
                or (self.run_id is None and self.shard is not None)
                or _plain_name(self.run_id or ""),
                "--run-id must be a plain name of at most 128 bytes, not starting with '-' or "
                f"'.' (got {_shown(self.run_id)})",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SynthError(message)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def api(self) -> ApiSettings:
        """The API settings, each the run option of its name (``mode`` is ``api_mode``)."""
        renamed = {"mode": "api_mode", "base_url": "api_base_url"}
        return ApiSettings(
            **{f.name: getattr(self, renamed.get(f.name, f.name)) for f in dataclasses.fields(ApiSettings)}
        )

    # Where the exports go: --out-dir (default runs/<run_id>/) unless a path flag says otherwise.
    @property
    def out_path(self) -> Path:
        return Path(self.out_dir or Path("runs") / self.run_id)

    @property
    def jsonl_path(self) -> Path:
        return Path(self.out_jsonl) if self.out_jsonl else self.out_path / "results_attempts.jsonl"

    @property
    def csv_path(self) -> Path:
        return Path(self.out_csv) if self.out_csv else self.out_path / "results_attempts.csv"

    @property
    def manifest_path(self) -> Path:
        if self.out_manifest:
            return Path(self.out_manifest)
        return self.out_path / "results_attempts_manifest.json"


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def default(name: str):
    """The default of a RunConfig setting (None where it is computed: the model, the run
    id): the CLI's flags and the library's functions take theirs from here."""
    value = _FIELDS[name].default
    return None if value is dataclasses.MISSING else value


def environment_settings(names, environ: Mapping[str, str] | None = None) -> dict:
    """The settings among ``names`` that their variable (ENV_VARS) sets, read as the
    setting's type; a variable set to nothing counts as unset."""
    environ = os.environ if environ is None else environ
    found = {}
    for name in names:
        variable = ENV_VARS.get(name)
        text = environ.get(variable, "").strip() if variable else ""
        if text and name == "tasks_files":
            found[name] = [p for p in text.split(os.pathsep) if p]
        elif text:
            found[name] = _typed(text, default(name), variable)
    return found


def _typed(text: str, like, what: str):
    """``text`` read as a value of the type of ``like`` (a default), in ASCII digits only:
    int() and float() also read "٣" and "2_0"."""
    if isinstance(like, bool) or not isinstance(like, int | float):
        return text
    if isinstance(like, int):
        return parse_int(text, what)
    return parse_float(text, what)


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)


def parse_int(text: str, what: str) -> int:
    if not _INT.fullmatch(text.strip()):
        raise SynthError(f"{what} must be a whole number in the digits 0-9 (got {shortened(text)!r})")
    return int(text)


def parse_float(text: str, what: str) -> float:
    """A decimal number (an exponent allowed; inf and nan are read, for the range checks
    to name)."""
    if not _FLOAT.fullmatch(text.strip()):
        raise SynthError(f"{what} must be a number in the digits 0-9 (got {shortened(text)!r})")
    return float(text)


@dataclass(frozen=True)
class ApiSettings:
    """How a run calls a model, as one object from its config to the provider
    (synth.providers.make_provider, RunConfig.api). None: not sent, the server decides."""

    model: str
    mode: str = default("api_mode")
    base_url: str | None = None
    timeout: float | None = None
    max_retries: int = default("max_retries")
    retry_base_delay: float = default("retry_base_delay")
    retry_max_delay: float = default("retry_max_delay")
    reasoning_effort: str | None = None
    max_output_tokens: int | None = None
    verbosity: str | None = None
    tool_choice: str | None = None
    enable_code_interpreter: bool = False


# Settings that do not change what a run measures: the shards of one experiment may
# differ in them (each machine its own paths, concurrency, server address, price table).
NOT_MEASURED = (*RESUMABLE, "run_id", "shard", "prompt_template_path", "tasks_files", "prices_path")


def parse_shard(text: str) -> tuple[int, int] | None:
    """``"I/N"`` as (I, N) with 1 <= I <= N, in the digits 0-9; None when it is not."""
    match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text or "")
    if not match:
        return None
    i, n = int(match[1]), int(match[2])
    return (i, n) if 1 <= i <= n else None


def experiment_sha256(config: RunConfig, task_keys: list[tuple[str, str]]) -> str:
    """What the shards of one experiment must share: the SHA-256 of every setting that
    changes what is measured, and of each own task's definition (``task_keys``: (id,
    key)), not of the paths that name them."""
    settings = {k: v for k, v in config.to_json().items() if k not in NOT_MEASURED}
    text = json.dumps({**settings, "tasks": sorted(task_keys)}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain_name(run_id: str) -> bool:
    """A run id that is a file name of its own (its exports' folder) and that later
    commands can take as an argument (not an option: no leading dash)."""
    return (
        bool(run_id)
        and "/" not in run_id
        and not run_id.startswith((".", "-"))
        and run_id.isprintable()
        and not any(c.isspace() for c in run_id)
        and len(run_id.encode("utf-8", "surrogatepass")) <= 128
    )


def _shown(value: str, most: int = 60) -> str:
    """A value for a one-line message: its repr, cut in the middle when long."""
    text = repr(value)
    return text if len(text) <= most else f"{shortened(text, most)} ({len(value):,} characters)"


def _http_url(url: str) -> bool:
    """An http(s) URL the HTTP client will take: a host, a port in range, printable
    ASCII with no space (a pasted trailing newline included)."""
    if not url.isascii() or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError:  # a bad IPv6 literal, a port `abc` or 99999
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0


def new_run_id() -> str:
    """A timestamp id, sortable, unique to the microsecond."""
    return datetime.now(UTC).strftime("run_%Y%m%dT%H%M%S_%fZ")
