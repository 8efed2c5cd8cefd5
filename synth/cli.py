"""The `synth` command line: a thin layer over library functions.

Data goes to stdout (``--json`` where useful); messages and warnings to stderr. User
errors are one line and exit with code 2.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from pathlib import Path

import click

from synth import __version__
from synth.config import (
    API_MODES,
    DEFAULT_MODEL,
    DEMO_DEFAULTS,
    DEMO_DIR,
    DEMO_FUNCTIONS,
    DEMO_LENGTHS,
    EFFORTS,
    ENV_VARS,
    PROMPT_VERSIONS,
    PROVIDERS,
    TOOL_CHOICES,
    VERBOSITIES,
    default,
    parse_float,
    parse_int,
)
from synth.errors import SynthError

# Flags that take several values the way the published runner's did
# (`--functions fn_a fn_b --lengths 20 50`); commas and repeats work too.
VARIADIC = ("--functions", "--lengths")
# reports.tables.TABLES by name, here so `synth --help` need not import the reports
# (a test keeps the two the same).
REPORT_TABLES = (
    "leaderboard",
    "grid-points",
    "improvement",
    "seed-spread",
    "raw-vs-clean",
    "leakage",
    "compile",
    "tokens",
    "generalisation",
    "recovery",
)
# reports.tables.STUDY_TABLES, likewise: the tables `--study NAME --table` writes.
STUDY_TABLES = ("study", "robustness", "seed-spread", "paired", "wins", "cost", "generalisation")


class UserError(click.ClickException):
    """A one-line error, no traceback: exit code 2 for bad input unless told otherwise."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class AsciiNumber(click.ParamType):
    """A number in the digits 0-9 (synth.config.parse_int, parse_float): Python's int()
    and float() also read "٣" and "2_0"."""

    def __init__(self, parse, name: str):
        self.parse, self.name = parse, name

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value, repr(value))
        except SynthError:
            self.fail(
                f"{value!r} is not a {'whole ' if self.name == 'integer' else ''}number in the digits 0-9",
                param,
                ctx,
            )


INT, FLOAT = AsciiNumber(parse_int, "integer"), AsciiNumber(parse_float, "float")


class PathArg(click.Path):
    """A path that is not empty: `--out-dir "$DIR"` with DIR unset must not mean the
    current folder, nor `--db ""` a folder named "."."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("a path must not be empty", param, ctx)
        return super().convert(value, param, ctx)


# Raised by click >= 8.2 for a group called without a command: it prints the help.
_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _one_line(error: click.UsageError) -> click.UsageError:
    """Click prints usage and a hint above a usage error; we print the error alone."""
    if not isinstance(error, _HELP):
        error.ctx = None
    return error


class OneLineUsage:
    """Usage errors (a bad flag or value) as one line, exit code 2."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as e:
            raise _one_line(e) from None


class Command(OneLineUsage, click.Command):
    pass


class Group(OneLineUsage, click.Group):
    command_class = Command

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as e:
            raise _one_line(e) from None

    def main(self, *args, **kwargs):
        """Standard output that cannot be written (`> /dev/full`, a closed pipe) is one line
        on stderr and exit 1, not a traceback; click itself only quiets a closed pipe."""
        if sys.stdout is None:  # `>&-`: the data we print would be lost unseen
            if sys.stderr is not None:
                click.echo(
                    "Error: standard output is closed; send it to a file, or to /dev/null (`> /dev/null`)",
                    err=True,
                )
            sys.exit(2)
        try:
            return super().main(*args, **kwargs)
        except OSError as e:
            if not _writing_stdout(e):
                raise
            # What is still buffered for it would fail again at exit: send it nowhere.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            click.echo(f"Error: cannot write to standard output: {e.strerror or e}", err=True)
            sys.exit(1)


def _writing_stdout(error: OSError) -> bool:
    """Whether ``error`` came from writing standard output (every command writes its data
    with click.echo)."""
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "echo" and frame.f_globals.get("__name__") == "click.utils":
            out = frame.f_locals.get("file")
            return getattr(out, "name", None) in ("<stdout>", sys.stdout.name) and not frame.f_locals.get(
                "err"
            )
        tb = tb.tb_next
    return False


Group.group_class = Group


class VariadicCommand(Command):
    """Spreads `--functions a b c` into `--functions a --functions b --functions c`."""

    def parse_args(self, ctx, args):
        out, current = [], None
        for arg in args:
            negative_number = current is not None and arg[1:].isdigit()
            if arg.startswith("-") and not negative_number:
                name = arg.split("=", 1)[0]
                current = name if name in VARIADIC else None  # `--functions=a b` too
                out.append(arg)
            elif current and out[-1] != current:
                out.extend([current, arg])
            else:
                out.append(arg)
        return super().parse_args(ctx, out)


def user_errors(fn):
    """Turn the library's user-facing errors into one-line errors (exit 2 for bad input,
    the error's own code otherwise), never a traceback: a SQLite error (a damaged, locked,
    full or read-only database) says what it means for the database the command used;
    an error raised inside a run's task group is the group's first such error. The
    command runs in a store session: its connections are closed when it ends, and no
    -wal or -shm file its reads created is left beside the database."""

    def translated(e: BaseException, path) -> UserError | None:
        import sqlite3

        from tracker.db import StoreError, db_path, explain
        from tracker.prices import PriceError

        if isinstance(e, (SynthError, StoreError, PriceError)):
            return UserError(str(e), getattr(e, "exit_code", 2))
        if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.IntegrityError):
            store_error = explain(e, db_path(path) if path is not _NO_DB else None)
            return UserError(str(store_error), getattr(store_error, "exit_code", 2))
        return None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tracker.db import StoreError, check_file, db_path, session

        path = kwargs.get("db_path", _NO_DB)
        try:
            if path is not _NO_DB:  # a FIFO, a device, a link to nowhere: refused unopened
                check_file(db_path(path))
            with session():
                return fn(*args, **kwargs)
        except BaseExceptionGroup as group:  # a run's tasks: the first error of the store's
            leaves = group.exceptions
            while leaves and isinstance(leaves[0], BaseExceptionGroup):
                leaves = leaves[0].exceptions
            for leaf in leaves:
                if (error := translated(leaf, path)) is not None:
                    raise error from None
            raise
        except UserError as e:  # one a command made of a store error (report): its own code
            cause = e.__context__
            while cause is not None:
                error = translated(cause, path)
                if error is not None and str(cause) in e.message:
                    if isinstance(cause, StoreError):  # said as the command said it
                        error = UserError(e.message, error.exit_code)
                    raise error from None
                cause = cause.__context__
            raise
        except Exception as e:
            if (error := translated(e, path)) is not None:
                raise error from None
            raise

    return wrapper


_NO_DB = object()  # a command without a database option (demo): its errors name none


def split_values(values: tuple[str, ...]) -> list[str]:
    return [v for value in values for v in value.replace(",", " ").split()]


def parse_functions(values: tuple[str, ...]) -> list[str] | None:
    return _given(values, "--functions")


def parse_lengths(values: tuple[str, ...]) -> list[int] | None:
    lengths = _given(values, "--lengths")
    if lengths is None:
        return None
    if not all(re.fullmatch(r"-?[0-9]+", v) for v in lengths):  # int() also reads "2_0"
        raise UserError(f"--lengths takes whole numbers (got {' '.join(values)})")
    return [int(v) for v in lengths]


def _given(values: tuple[str, ...], flag: str) -> list[str] | None:
    """A list flag's values; None when it was not given. Given empty (say `--functions
    "$FNS"` with FNS unset) it is refused, not read as "the default grid"."""
    if not values:
        return None
    if not (items := split_values(values)):
        raise UserError(f"{flag} was given no value")
    return items


def echo_rows(rows: list[dict], as_json: bool, columns: dict[str, str] | None = None) -> None:
    """Rows as JSON, or as a table of the chosen columns ({key: header}) on stdout."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from tabulate import tabulate

    columns = columns or {k: k for k in (rows[0] if rows else {})}
    table = [[f"{r[k]:.3f}" if isinstance(r[k], float) else r[k] for k in columns] for r in rows]
    # numparse off: a fingerprint such as "12e4..." must stay text
    click.echo(tabulate(table, headers=list(columns.values()), disable_numparse=True))


def _add_done(rows: list[dict], as_json: bool) -> None:
    """The table's "trials done" column, ``done/all``; JSON keeps the two numbers."""
    if not as_json:
        for r in rows:
            r["done"] = f"{r['trials_done']}/{r['trials']}"


def echo_err(message: str) -> None:
    """Messages and warnings go to stderr; data goes to stdout."""
    click.echo(message, err=True)


json_option = click.option("--json", "as_json", is_flag=True, help="Output JSON")


def read_store(db_path, read):
    """What ``read`` returns from the database, opened read-only and closed again."""
    from tracker.db import open_db

    with open_db(db_path, readonly=True) as db:
        return read(db)


def db_option(fn):
    """--db, read by tracker.db.db_path: given, else $SYNTH_DB, else ./synth.db."""
    return click.option(
        "--db",
        "db_path",
        type=PathArg(dir_okay=False, path_type=Path),
        help="SQLite database  [env var: SYNTH_DB; default: ./synth.db]",
    )(fn)


def db_argument(fn):
    """The database as an argument (`synth browse my.db`, as `datasette my.db`) or --db,
    like every other command."""

    @functools.wraps(fn)
    def merged(*args, db=None, db_path=None, **kwargs):
        if db is not None and db_path is not None and db != db_path:
            raise UserError(f"two databases given ({db} and --db {db_path}): give one")
        return fn(*args, db_path=db or db_path, **kwargs)

    return click.argument("db", required=False, type=PathArg(dir_okay=False, path_type=Path))(
        db_option(merged)
    )


def setting(*decls, defaults: dict | None = None, help: str = "", shown_default=None, **kw):
    """A click option for a RunConfig setting. Its default (in ``defaults``, else the
    config's) and its variable (ENV_VARS, unless ``defaults`` sets it) are shown in --help
    but applied by RunConfig.resolve, not by click: a flag not given is None."""
    name = decls[0].removeprefix("--").replace("-", "_")
    value = shown_default or (defaults or {}).get(name, default(name))
    notes = [f"env var: {ENV_VARS[name]}"] if name in ENV_VARS and name not in (defaults or {}) else []
    notes += [f"default: {value}"] if value is not None else []
    shown = f"{help}  [{'; '.join(notes)}]" if notes else help
    return click.option(*decls, default=None, help=shown.strip(), **kw)


def given(flags: dict) -> dict:
    """The settings given on the command line: an absent option is None, an absent
    switch False, an absent list ()."""
    return {name: v for name, v in flags.items() if not (v is None or v is False or v == ())}


def option_group(*options):
    """A decorator adding several click options at once, in the order given."""

    def add(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return add


uci_dir_option = click.option(
    "--uci-dir",
    type=PathArg(file_okay=False, path_type=Path),
    help="Folder with the UCI files (else the download cache)  [env var: SYNTH_UCI_DIR]",
)


# The dataset grid flags, named and defaulted as in the published runner.
grid_options = option_group(
    click.option(
        "--functions",
        multiple=True,
        metavar="FN...",
        help="Task ids (space or comma separated)  [default: the published grid]",
    ),
    click.option(
        "--lengths",
        multiple=True,
        metavar="L...",
        help="Input lengths for every non-tabular task  [default: each task's own]",
    ),
    setting("--train-size", type=INT),
    setting("--val-size", type=INT),
    setting("--test-size", type=INT),
    setting("--seed", type=INT, help="Global base seed, 0 to 2^63 - 1"),
    click.option(
        "--strict-sizes",
        is_flag=True,
        help="Refuse, rather than cap, a tabular test split its source cannot fill",
    ),
    uci_dir_option,
)


def tasks_file_option(help: str, variable: bool = True):
    """--tasks-file, repeatable: Python files declaring tasks of one's own."""
    note = f"  [env var: {ENV_VARS['tasks_files']}]" if variable else ""
    return click.option(
        "--tasks-file",
        "tasks_files",
        multiple=True,
        type=PathArg(dir_okay=False, path_type=Path),
        help=f"{help} (docs/custom-tasks.md); repeatable{note}",
    )


declared_tasks_option = tasks_file_option("A Python file declaring tasks of your own, run in this process")


def tasks_files_given(tasks_files: tuple[Path, ...]) -> list[str]:
    """The --tasks-file values, else those of its variable (several: separated by ':')."""
    from synth.config import environment_settings

    return [str(p) for p in tasks_files] or environment_settings({"tasks_files"}).get("tasks_files", [])


def call_options(shown_default: str | None = None):
    """How hard and where model calls are made: what a resume may change too (where each
    defaults to the run's stored value, ``shown_default``)."""
    return option_group(
        setting(
            "--api-base-url", help="Any OpenAI-compatible server", shown_default=shown_default or "OpenAI"
        ),
        setting("--concurrency", type=INT, shown_default=shown_default, help="Model calls in flight at most"),
        setting("--timeout", type=FLOAT, shown_default=shown_default, help="Seconds per model call"),
        setting(
            "--max-retries",
            type=INT,
            shown_default=shown_default,
            help="Retries of a failed model call (429, 5xx, timeout, lost connection)",
        ),
        setting(
            "--retry-base-delay",
            type=FLOAT,
            shown_default=shown_default,
            help="Seconds before the first retry; doubles with each retry",
        ),
        setting(
            "--retry-max-delay",
            type=FLOAT,
            shown_default=shown_default,
            help="Longest wait before a retry, also capping the server's retry-after",
        ),
        setting(
            "--max-cost",
            type=FLOAT,
            shown_default=shown_default or "no cap",
            help="USD the run may spend in all: a call whose worst case the rest cannot "
            "afford does not start (docs/cost.md)",
        ),
        setting(
            "--fail-fast-after",
            type=INT,
            shown_default=shown_default,
            help="Stop the run when its first N calls all fail alike (400, or no connection) "
            "and none succeeds; 0: never",
        ),
        setting(
            "--batch-poll-interval",
            type=FLOAT,
            shown_default=shown_default,
            help="--batch: seconds before a batch's first poll; each next one waits twice as long",
        ),
        setting(
            "--batch-poll-max",
            type=FLOAT,
            shown_default=shown_default,
            help="--batch: the longest wait between two polls of a batch",
        ),
    )


# The model, the server, and how calls are made.
api_options = option_group(
    setting(
        "--model", help="Model name", shown_default=f"{DEFAULT_MODEL}; offline proposers: their own name"
    ),
    setting(
        "--api-mode",
        type=click.Choice(API_MODES),
        help="Responses API, or Chat Completions for compatible servers",
    ),
    call_options(),
)


def output_options(shown_default: str):
    """Where a run writes besides the database (a resume: where it wrote before)."""
    return option_group(
        click.option(
            "--dataset-dir",
            type=PathArg(file_okay=False, path_type=Path),
            help="Also mirror the datasets here in the published layout",
        ),
        click.option(
            "--out-dir",
            type=PathArg(file_okay=False, path_type=Path),
            help=f"Folder for all exports  [default: {shown_default}]",
        ),
        click.option("--out-jsonl", type=PathArg(dir_okay=False, path_type=Path)),
        click.option("--out-csv", type=PathArg(dir_okay=False, path_type=Path)),
        click.option("--out-manifest", type=PathArg(dir_okay=False, path_type=Path)),
    )


@click.group(cls=Group)
@click.version_option(__version__, prog_name="synth")
def cli():
    """LLM-PV: propose-and-verify program learning, recorded in one SQLite database."""


@cli.command()
@json_option
@declared_tasks_option
@user_errors
def tasks(as_json, tasks_files):
    """List the tasks: id, target name, kind and default lengths.

    With --tasks-file, the file's tasks too, checked as a run checks them."""
    from synth.custom_tasks import load_tasks_files
    from synth.tasks import TASKS

    rows = [
        {
            "id": t.id,
            "target": t.target,
            "kind": t.kind,
            "lengths": list(t.lengths),
            "fixed_length": t.fixed_length is not None,
            "file": t.origin.path if t.origin else None,
        }
        for t in [*TASKS.values(), *load_tasks_files(tasks_files_given(tasks_files))]
    ]
    if not as_json:
        for r in rows:
            r["shown"] = " ".join(map(str, r["lengths"])) + (" (fixed)" if r["fixed_length"] else "")
    echo_rows(rows, as_json, {"id": "id", "target": "target", "kind": "kind", "shown": "lengths"})


@cli.group()
def datasets():
    """Build, list and export datasets (the database is the cache)."""


@datasets.command(name="build", cls=VariadicCommand)
@grid_options
@declared_tasks_option
@db_option
@user_errors
def datasets_build(
    functions, lengths, train_size, val_size, test_size, seed, strict_sizes, uci_dir, tasks_files, db_path
):
    """Build the datasets of a grid into the database (stored ones are reused)."""
    from synth.datasets.build import build_grid

    sizes = given({"train_size": train_size, "val_size": val_size, "test_size": test_size, "seed": seed})
    stored = build_grid(
        functions=parse_functions(functions),
        lengths=parse_lengths(lengths),
        strict_sizes=strict_sizes,
        uci_dir=uci_dir,
        db_path=db_path,
        tasks_files=tasks_files_given(tasks_files),
        notify=echo_err,
        **sizes,
    )
    built = sum(s.built for s in stored)
    echo_err(f"{built} built, {len(stored) - built} already stored")


@datasets.command(name="list")
@json_option
@db_option
@user_errors
def datasets_list(as_json, db_path):
    """List the datasets stored in the database."""
    from tracker.datasets import list_datasets

    rows = read_store(db_path, list_datasets)
    for r in rows:
        r["fingerprint_short"] = r["fingerprint"][:16]
    echo_rows(
        rows,
        as_json,
        None
        if as_json
        else {
            "fn": "fn",
            "length": "L",
            "train_effective": "train",
            "val_effective": "val",
            "test_effective": "test",
            "derived_seed": "seed",
            "fingerprint_short": "fingerprint",
        },
    )


@datasets.command(name="export", cls=VariadicCommand)
@click.option(
    "--dataset-dir",
    required=True,
    type=PathArg(file_okay=False, path_type=Path),
    help="Root of the published layout <dir>/<target>/L<len>/seed<derived>/",
)
@click.option("--functions", multiple=True, metavar="FN...", help="Only these task ids")
@click.option("--lengths", multiple=True, metavar="L...", help="Only these lengths")
@db_option
@user_errors
def datasets_export(dataset_dir, functions, lengths, db_path):
    """Write stored datasets as split files and meta.json in the published layout."""
    from synth.datasets.build import export_datasets

    folders = export_datasets(
        db_path,
        dataset_dir,
        functions=parse_functions(functions),
        lengths=parse_lengths(lengths),
    )
    for folder in folders:
        click.echo(str(folder))
    click.echo(f"{len(folders)} datasets written under {dataset_dir}", err=True)


@cli.command(cls=VariadicCommand)
@grid_options
@declared_tasks_option
@setting("--attempts", type=INT, help="Attempts per trial (at most 1,000)")
@setting(
    "--num-trials",
    type=INT,
    help="Trials per grid point (a grid of more than 100,000 trials in all is refused; "
    "SYNTH_MAX_TRIALS raises the bound)",
)
@setting(
    "--provider",
    type=click.Choice(PROVIDERS),
    help="Who proposes programs: the OpenAI API, or an offline proposer (no key): `tree`, "
    "`formula`, or a classical learner (`logreg`, `forest`, `boosting`, `mlp`, `svm`, `knn`: "
    "settings chosen on the validation split; scikit-learn, the `baselines` extra)",
)
@api_options
@setting(
    "--time-budget",
    type=FLOAT,
    help="Safety cap in seconds per proposal of the `formula` proposer: an attempt it stops "
    "depends on the machine, and is recorded as incomplete (time_cap) and flagged in the report",
)
@setting(
    "--max-candidates",
    type=INT,
    help="Formulas the `formula` proposer may look at per proposal: its budget, the same on every machine",
)
@setting("--max-output-tokens", type=INT)
@click.option(
    "--prices",
    "prices_path",
    type=PathArg(dir_okay=False, path_type=Path),
    help="JSON price table merged over the built-in one (synth prices)  [env var: SYNTH_PRICES]",
)
@setting(
    "--reasoning-effort",
    help=f"Known: {', '.join(EFFORTS)}; another value is sent as given (newer models "
    "add levels) and a server that refuses it says so",
)
@setting("--verbosity", type=click.Choice(VERBOSITIES))
@setting("--tool-choice", type=click.Choice(TOOL_CHOICES))
@click.option("--enable-code-interpreter", is_flag=True, help="Give the model the code interpreter tool")
@setting(
    "--prompt",
    type=click.Choice(list(PROMPT_VERSIONS)),
    help="Wording of the built-in prompt: the default or a paraphrase (docs/prompts.md)",
)
@click.option(
    "--prompt-template",
    type=PathArg(path_type=Path),
    help="Jinja template replacing the default prompt (see docs/prompts.md)",
)
@setting("--eval-timeout", type=FLOAT, help="Seconds per sandboxed evaluation of one program (val + test)")
@output_options(shown_default="runs/<run_id>/")
@click.option(
    "--run-id",
    help="Name of the run: no spaces, no /, not starting with a dot or "
    "a dash, at most 128 bytes  [default: a timestamp id; with --shard, one derived from the settings]",
)
@setting(
    "--shard",
    metavar="I/N",
    help="Run shard I of N of the grid's trials (the same split on any machine): each machine "
    "runs one shard into its own database, and `synth merge` folds them into one run (docs/scale.md)",
)
@click.option("--dry-run", is_flag=True, help="Build datasets and record prompts; call nothing")
@click.option(
    "--batch",
    is_flag=True,
    help="Send the attempts through the Batch API in waves, at half price, answered within "
    "24 hours (docs/scale.md)",
)
@click.option(
    "--resume",
    "resume_id",
    metavar="RUN_ID",
    help="The same as `synth resume RUN_ID` (the other flags given must be ones a "
    "resume may change, or their stored values)",
)
@db_option
@user_errors
def run(resume_id, db_path, uci_dir, **flags):
    """Propose and verify: run a grid of tasks x lengths x trials x attempts.

    The API key is read from OPENAI_API_KEY and never stored. Results land in the
    database (--db) and in the exports under --out-dir.
    """
    from synth.config import RunConfig, unread_settings
    from synth.engine.entry import resume_run, start_run

    flags = _settings(flags)
    if resume_id is not None:  # "" too: an empty RUN_ID is no reason to start a new run
        result = resume_run(resume_id, db_path=db_path, overrides=flags)  # it checks them
    else:
        config = RunConfig.resolve(**flags)
        config.validate()  # a bad value is an error, without a warning that it is ignored first
        unused = [n for n in unread_settings(config.provider) if n in flags]
        if unused:
            echo_err(
                f"Warning: {', '.join(map(_flag_name, unused))} "
                f"{'does' if len(unused) == 1 else 'do'} not apply to --provider "
                f"{config.provider}; ignored"
            )
        if uci_dir is not None and _no_uci_task(config.functions):
            echo_err("Warning: --uci-dir is not used: no UCI task (fn_m to fn_q) in --functions")
        result = start_run(config, db_path=db_path, uci_dir=uci_dir, argv=sys.argv, notify=echo_err)
    _echo_result(result)


@cli.command()
@click.argument("run_id")
@call_options(shown_default="the run's")
@output_options(shown_default="the run's")
@tasks_file_option(
    "The run's tasks file: not needed (the run recorded its tasks), refused if it no longer "
    "defines them as recorded",
    variable=False,
)
@db_option
@user_errors
def resume(run_id, db_path, **flags):
    """Continue a stored run from the database alone; recorded attempts are never redone.

    Refused while the run's process still runs on this machine. Only how hard and where
    the run works may change; the SYNTH_* variables of these settings apply as to
    `synth run`.
    """
    from synth.engine.entry import resume_run

    _echo_result(resume_run(run_id, db_path=db_path, overrides=_settings(flags)))


def _settings(flags: dict) -> dict:
    """The RunConfig settings given on the command line, named as its fields."""
    flags = given(flags)
    if "functions" in flags:
        flags["functions"] = parse_functions(flags["functions"])
    if "lengths" in flags:
        flags["lengths"] = parse_lengths(flags["lengths"])
    if "prompt_template" in flags:
        flags["prompt_template_path"] = str(flags.pop("prompt_template"))
    if "tasks_files" in flags:
        flags["tasks_files"] = [str(p) for p in flags["tasks_files"]]
    return {k: str(v) if isinstance(v, Path) else v for k, v in flags.items()}


def _echo_result(result) -> None:
    if result.estimate is not None:
        _echo_estimate(result.estimate)
    else:
        _echo_summary(result.db_path, result.run_id, readonly=False)
    if result.status == "dry_run":
        click.echo("dry run: datasets built and prompts recorded; no model was called", err=True)
    click.echo(f"run {result.run_id}: {result.status}", err=True)
    if result.message:
        click.echo(result.message, err=True)
    click.echo(f"database: {result.db_path}", err=True)
    if result.manifest is not None:
        artifacts = result.manifest["artifacts"]
        click.echo(f"exports: {artifacts['jsonl']}, {artifacts['csv']}, {artifacts['manifest']}", err=True)


def _echo_estimate(rows: list[dict]) -> None:
    """A dry run's estimate: calls, tokens and USD at least and at most, standard and Batch."""
    for r in rows:
        r["L"] = r["length"] or ""
        for key in ("calls", "input_tokens", "output_tokens"):
            r[key] = f"{r[key + '_min']:,} - {r[key + '_max']:,}"
        for key in ("usd", "batch_usd"):
            r[key] = f"{usd(r[key + '_min'])} - {usd(r[key + '_max'])}"
    echo_rows(
        rows,
        False,
        {
            **({"system": "system"} if rows and "system" in rows[0] else {}),
            "fn": "fn",
            "L": "L",
            "calls": "calls",
            "input_tokens": "tokens in",
            "output_tokens": "tokens out",
            "usd": "USD",
            "batch_usd": "USD (Batch)",
        },
    )
    echo_err(
        "estimate: at least every trial solved at its first attempt, with no output; at most "
        "every attempt made, each with --max-output-tokens (docs/cost.md)"
    )


def _no_uci_task(functions: list[str] | None) -> bool:
    """Whether a chosen grid holds no tabular task (None: the default grid, which does)."""
    from synth.tasks import TASKS

    return functions is not None and not any(TASKS[f].source for f in functions if f in TASKS)


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _echo_summary(db_path, run_id: str, as_json: bool = False, *, readonly: bool = True) -> None:
    """The summary table on stdout, and on stderr a warning when model calls failed.

    After a run, ``readonly=False``: the one connection left to close then folds the WAL
    into the file and removes it (a read-only one would leave an empty -wal and -shm)."""
    from tracker.db import open_db
    from tracker.exports import grid_rows
    from tracker.runs import failed_calls, get_run, point_costs, run_cost
    from tracker.shards import describe, shard_states

    with open_db(db_path, readonly=readonly) as db:
        run = get_run(db, run_id)
        if run is None:
            raise UserError(f"no run {run_id!r} in the database")
        made, failed = failed_calls(db, run_id)
        rows = [summary for _, summary in grid_rows(db, run_id)]
        costs, total = point_costs(db, run_id), run_cost(db, run_id)
        state = shard_states(db, [run_id]).get(run_id)
    if failed:
        classes = ", ".join(f"{n} {kind}" for kind, n in failed.items())
        echo_err(
            f"Warning: {sum(failed.values())} of {made} attempts got no answer from the "
            f"model ({classes}); they score as wrong. The events table says why."
        )
    if state is not None:
        echo_err(f"run {run_id} ({run['status']}): {describe(state)}")
    if not rows:
        echo_err(f"run {run_id} ({run['status']}): no trial has finished yet")
    keys = (
        "fn",
        "length",
        "num_trials",
        "val_acc",
        "val_acc_std",
        "test_acc",
        "test_acc_std",
        "oracle_test_acc",
        "stopped_early",
        "prompt_tokens",
        "completion_tokens",
    )
    rows = [{**{k: r[k] for k in keys}, "cost_usd": costs.get((r["fn"], r["length"]), 0.0)} for r in rows]
    dry = run["dry_run"]  # nothing was scored: say so, not 0.000
    for r in rows:
        if dry:
            r.update(dict.fromkeys(("val_acc", "val_acc_std", "test_acc", "test_acc_std", "oracle_test_acc")))
        if not as_json:
            r["val"] = "— (dry run)" if dry else f"{r['val_acc']:.3f} ± {r['val_acc_std']:.3f}"
            r["test"] = "—" if dry else f"{r['test_acc']:.3f} ± {r['test_acc_std']:.3f}"
            r["oracle_test_acc"] = "—" if dry else r["oracle_test_acc"]
            r["cost"] = usd(r["cost_usd"])
    echo_rows(
        rows,
        as_json,
        {
            "fn": "fn",
            "length": "L",
            "num_trials": "trials",
            "val": "val (selected)",
            "test": "test (selected)",
            "oracle_test_acc": "test (oracle)",
            "stopped_early": "solved",
            "prompt_tokens": "tokens in",
            "completion_tokens": "tokens out",
            "cost": "cost (USD)",
        },
    )
    if not as_json:
        prices = json.loads(run["prices"]) if run["prices"] else {}
        where = f" (prices of {prices['source']}, as of {prices['as_of']})" if prices else ""
        echo_err(f"run {run_id} cost (USD): {usd(total)}{where}")


def usd(cost: float | None) -> str:
    """A cost for a table: "?" when unknown, never 0."""
    return "?" if cost is None else f"{cost:.4f}"


@cli.command()
@json_option
@db_option
@user_errors
def runs(as_json, db_path):
    """List the runs in the database with their status and counts (and the shards of a
    sharded run).

    A --batch run shows its last wave's status and requests answered (--json: every wave's).
    """
    from tracker.batches import runs_with_waves

    rows = read_store(db_path, runs_with_waves)
    _add_done(rows, as_json)
    columns = {
        "run_id": "run_id",
        "status": "status",
        "provider": "provider",
        "model": "model",
        "grid_points": "points",
        **({"shards": "shards"} if any(r["shards"] for r in rows) else {}),  # only where one is sharded
        "done": "trials done",
        "trials_solved": "solved",
        "attempts": "attempts",
        "cost": "cost (USD)",
    }
    if not as_json:
        for r in rows:
            r["cost"] = usd(r["cost_usd"])
            if r["alive"] is False:  # killed outright: it could not mark itself
                r["status"] = "running (process gone)"
            r["last_wave"] = _wave(r["waves"][-1]) if r["waves"] else ""
        if any(r["waves"] for r in rows):
            columns["last_wave"] = "batch wave"
    echo_rows(rows, as_json, columns)


def _wave(wave: dict) -> str:
    """A wave in a few words: "2: in_progress, 3/10 answered (1 failed)"."""
    answered = f"{wave['completed'] + wave['failed']}/{wave['requests']} answered"
    return f"{wave['wave']}: {wave['statuses']}, {answered}" + (
        f" ({wave['failed']} failed)" if wave["failed"] else ""
    )


@cli.command()
@click.option(
    "--prices",
    "prices_path",
    type=PathArg(dir_okay=False, path_type=Path),
    help="JSON price table merged over the built-in one  [env var: SYNTH_PRICES]",
)
@json_option
@user_errors
def prices(prices_path, as_json):
    """Print the price table runs record their costs at: USD per 1M tokens, standard and
    Batch (half), with its date and source."""
    from tracker.prices import BATCH_DISCOUNT, load_prices

    table = load_prices(prices_path)
    rows = [
        {
            "model": model,
            "input": p["input"],
            "cached_input": p.get("cached_input", p["input"]),
            "output": p["output"],
            "batch_input": p["input"] * BATCH_DISCOUNT,
            "batch_output": p["output"] * BATCH_DISCOUNT,
        }
        for model, p in sorted(table.models.items())
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "as_of": table.as_of,
                    "source": table.source,
                    "source_url": table.source_url,
                    "models": rows,
                },
                indent=2,
            )
        )
        return
    echo_err(f"USD per 1M tokens, as of {table.as_of}: {table.source} ({table.source_url or 'no URL'})")
    echo_rows(rows, False)


@cli.command()
@click.argument("run_id")
@json_option
@db_option
@user_errors
def show(run_id, as_json, db_path):
    """Print a run's summary table: per grid point, selected val/test accuracy over trials."""
    _echo_summary(db_path, run_id, as_json)


@cli.command()
@click.argument("dest", type=PathArg(dir_okay=False, path_type=Path))
@click.argument("sources", nargs=-1, required=True, type=PathArg(dir_okay=False, path_type=Path))
@json_option
@user_errors
def merge(dest, sources, as_json):
    """Merge the databases SOURCES into DEST (created if absent).

    Datasets are matched by fingerprint; runs are copied whole with their run ids; the
    shards of one experiment (`synth run --shard I/N`, one run id) become one run,
    completed once every shard is merged and completed. Merging a source again changes
    nothing, or brings in what its runs did since. Every source is checked first: one
    that is not an LLM-PV database, is newer, is DEST, or holds a run id DEST uses for
    another run is refused, and nothing is written.
    """
    from tracker.merge import merge_databases
    from tracker.shards import describe, shard_states

    rows = merge_databases(dest, list(sources))
    run_ids = list(dict.fromkeys(r["run_id"] for r in rows))
    states = read_store(dest, lambda db: shard_states(db, run_ids))
    echo_rows(rows, as_json, {"source": "source", "run_id": "run_id", "shard": "shard", "action": "action"})
    for run_id, state in states.items():
        echo_err(f"run {run_id}: {describe(state)}")
    echo_err(f"merged {len(sources)} database(s) into {dest}")


@cli.group()
def study():
    """Studies: systems x prompt wordings x seeds over one grid, each cell a run."""


study_cap = click.option(
    "--max-cost",
    type=FLOAT,
    metavar="USD",
    help="What the whole study may spend, what it spent so far included",
)


@study.command(name="run")
@click.argument("file", type=PathArg(dir_okay=False, path_type=Path))
@study_cap
@click.option(
    "--dry-run", is_flag=True, help="Build the datasets and print what the study would cost; call nothing"
)
@click.option(
    "--shard",
    metavar="I/N",
    help="Run shard I of N of every cell's trials, into this machine's database; `synth merge` "
    "folds the shards' databases into one study (docs/scale.md)",
)
@uci_dir_option
@db_option
@user_errors
def study_run(file, max_cost, dry_run, shard, uci_dir, db_path):
    """Run every cell of the study FILE (YAML; see docs/studies.md) in one process.

    The whole file is checked, every cell's datasets built and prompts rendered, before
    anything is recorded or paid for. Running the same file again goes on with the
    study; a changed file under the same name is refused.
    """
    from synth.study.run import estimate_study, run_study
    from synth.study.spec import load_study

    study = load_study(file)
    if dry_run:
        _echo_estimate(estimate_study(study, db_path=db_path, uci_dir=uci_dir, notify=echo_err))
        return
    _echo_study(
        run_study(
            study,
            db_path=db_path,
            uci_dir=uci_dir,
            argv=sys.argv,
            notify=echo_err,
            max_cost=max_cost,
            shard=shard,
        )
    )


@study.command(name="resume")
@click.argument("name")
@study_cap
@db_option
@user_errors
def study_resume(name, max_cost, db_path):
    """Go on with a stored study from the file it was started with (a cell stopped at a
    cost cap goes on under the cap given now)."""
    from synth.study.run import resume_study

    _echo_study(resume_study(name, db_path=db_path, notify=echo_err, max_cost=max_cost))


def _echo_study(result) -> None:
    _echo_cells(result.db_path, result.name, False)
    failed = sum(status != "completed" for status in result.statuses.values())
    click.echo(
        f"study {result.name}: {len(result.statuses) - failed} of {len(result.statuses)} runs completed",
        err=True,
    )
    click.echo(f"database: {result.db_path}", err=True)


@study.command(name="list")
@json_option
@db_option
@user_errors
def study_list(as_json, db_path):
    """List the studies in the database with their runs' progress."""
    from tracker.studies import list_studies

    rows = read_store(db_path, list_studies)
    _add_done(rows, as_json)
    echo_rows(
        rows, as_json, {"name": "name", "runs": "runs", "completed": "completed", "done": "trials done"}
    )


@study.command(name="show")
@click.argument("name")
@json_option
@db_option
@user_errors
def study_show(name, as_json, db_path):
    """Print a study's cells: system, prompt, seed, run and its state."""
    _echo_cells(db_path, name, as_json)


def _echo_cells(db_path, name: str, as_json: bool) -> None:
    from tracker.studies import get_study, study_cells

    def read(db):
        if get_study(db, name) is None:
            raise UserError(f"no study {name!r} in {db_path or 'the database'}")
        return study_cells(db, name)

    rows = read_store(db_path, read)
    _add_done(rows, as_json)
    columns = {"system": "system", "prompt": "prompt", "seed": "seed", "run_id": "run", "status": "status"}
    echo_rows(rows, as_json, {**columns, "done": "trials done"})


@cli.command(name="export")
@click.argument("run_id")
@click.option(
    "--out-dir",
    type=PathArg(file_okay=False, path_type=Path),
    help="Write here instead of the run's own export paths",
)
@db_option
@user_errors
def export_cmd(run_id, out_dir, db_path):
    """Write a run's JSONL, CSV, manifest and per-trial logs from the database alone."""
    from synth.engine.entry import export_run

    manifest = export_run(run_id, db_path=db_path, out_dir=out_dir)
    for path in (
        manifest["artifacts"]["jsonl"],
        manifest["artifacts"]["csv"],
        manifest["artifacts"]["manifest"],
    ):
        click.echo(path)


@cli.command(cls=VariadicCommand)
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option(
    "--lengths",
    multiple=True,
    metavar="L...",
    help="Evaluation lengths  [default: the training length x1, x2, x5, x10 and the task's own lengths]",
)
@click.option("--test-size", type=INT, help="Rows of each balanced set  [default: the run's --test-size]")
@click.option(
    "--programs",
    type=click.Choice(["selected", "all"]),
    default="selected",
    show_default=True,
    help="Each trial's selected program, or every attempt's",
)
@click.option(
    "--exhaustive-up-to",
    type=INT,
    default=20,
    show_default=True,
    help="Check every input of binary lengths up to this (at most 24)",
)
@click.option(
    "--samples",
    type=INT,
    default=100_000,
    show_default=True,
    help="Uniform random inputs checked where every input cannot be",
)
@uci_dir_option
@json_option
@db_option
@user_errors
def verify(run_ids, lengths, test_size, programs, exhaustive_up_to, samples, uci_dir, as_json, db_path):
    """Re-check recorded programs at other lengths, on every input, on the source table.

    No RUN_ID: the latest run. No model is called: each program runs in the sandbox on
    balanced sets at each length, on every input (binary, short) or a uniform sample,
    and on the whole source table (tabular). A run's own tasks (--tasks-file) are
    checked from what the run recorded, a CSV task while its CSV is as recorded. Results
    are stored; a verify run again (or after being killed) checks only what is not
    stored yet. See docs/verify.md.
    """
    from synth.verification.verify import verify_runs

    rows = verify_runs(
        list(run_ids) or None,
        db_path=db_path,
        lengths=parse_lengths(lengths),
        test_size=test_size,
        programs=programs,
        exhaustive_up_to=exhaustive_up_to,
        samples=samples,
        uci_dir=uci_dir,
        notify=echo_err,
    )
    if as_json:
        rows = [{k: v for k, v in r.items() if k not in ("attempt_id", "set_key")} for r in rows]
    echo_rows(rows, as_json, VERIFY_COLUMNS)


VERIFY_COLUMNS = {
    "fn": "task",
    "trial": "trial",
    "attempt": "attempt",
    "train_length": "train L",
    "eval_length": "eval L",
    "set": "set",
    "rule": "rule",
    "n": "n",
    "accuracy": "accuracy",
    "exact": "exact",
    "status": "status",
}


@cli.command()
@db_argument
@user_errors
def migrate(db_path):
    """Bring a database written by an older version up to date (read commands refuse one).

    DB (or --db) defaults to $SYNTH_DB, else ./synth.db. Writing commands, and browse,
    migrate by themselves.
    """
    from tracker.db import OutdatedDatabase, open_db
    from tracker.db import db_path as resolve_db
    from tracker.migrations import migrations

    path = resolve_db(db_path)
    if not path.exists():
        raise UserError(f"no database at {path}")
    try:
        store = open_db(path, readonly=True)  # up to date: nothing to write
        pending = []
    except OutdatedDatabase as e:
        pending = e.pending
        store = open_db(path)
    with store:
        count = len(migrations.applied(store))
    done = f"applied {', '.join(pending)}; " if pending else "nothing to do: "
    click.echo(f"{path}: {done}schema up to date ({count} migrations)", err=True)


@cli.command()
@db_argument
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to serve on (0.0.0.0: every address of this host)",
)
@click.option(
    "--port",
    default=8001,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0: any free port (the URL printed names it)",
)
@user_errors
def browse(db_path, host, port):
    """Browse a run database in Datasette: read-only, and usable while a run writes.

    DB (or --db) defaults to $SYNTH_DB, else ./synth.db.
    """
    from tracker.browse import serve
    from tracker.db import OutdatedDatabase, open_db
    from tracker.db import db_path as resolve_db

    if not host.strip():  # uvicorn would take it for every address, and print none
        raise UserError("--host must not be empty (0.0.0.0 serves every address of this host)")
    path = resolve_db(db_path)
    if not path.exists():
        raise UserError(f"no database at {path}")
    try:
        with open_db(path, readonly=True):
            pass  # ours, readable and up to date
    except OutdatedDatabase:
        with open_db(path):
            pass  # brought up to date first: the one time browse writes
    # Said once the port is bound: a port in use is one line, and port 0 shows its number.
    serve(
        path,
        host=host,
        port=port,
        ready=lambda url: click.echo(f"Datasette on {url} (Ctrl-C to stop)", err=True),
    )


@cli.command(cls=VariadicCommand)
@click.option(
    "--out-dir",
    type=PathArg(file_okay=False, path_type=Path),
    default=DEMO_DIR,
    show_default=True,
    help="Folder for the demo's database, exports and datasets",
)
@setting(
    "--provider",
    type=click.Choice(PROVIDERS),
    defaults=DEMO_DEFAULTS,
    help="`openai` runs the same grid against the API (needs OPENAI_API_KEY)",
)
@click.option(
    "--functions", multiple=True, metavar="FN...", help=f"Task ids  [default: {' '.join(DEMO_FUNCTIONS)}]"
)
@click.option(
    "--lengths", multiple=True, metavar="L...", help=f"Lengths  [default: {' '.join(map(str, DEMO_LENGTHS))}]"
)
@setting("--num-trials", type=INT, defaults=DEMO_DEFAULTS)
@setting("--attempts", type=INT, defaults=DEMO_DEFAULTS)
@setting("--test-size", type=INT)
@uci_dir_option
@setting(
    "--max-candidates",
    type=INT,
    defaults=DEMO_DEFAULTS,
    help=f"Formulas the `formula` proposer may look at per proposal (`synth run`: "
    f"{default('max_candidates'):,}); a smaller budget may miss what a larger one finds",
)
@api_options
@user_errors
def demo(out_dir, functions, lengths, uci_dir, **settings):
    """Run a small real grid end to end and say where everything is.

    With the default offline proposer it needs no key and no network (UCI files from
    --uci-dir or the download cache). With `--provider openai` the model-call flags and
    their environment variables apply as in `synth run`.
    """
    from synth.demo import run_demo

    result = run_demo(
        out_dir,
        functions=parse_functions(functions),
        lengths=parse_lengths(lengths),
        uci_dir=uci_dir,
        notify=echo_err,
        **given(settings),
    )
    _echo_summary(result.db_path, result.run.run_id, readonly=False)
    artifacts = result.run.manifest["artifacts"]
    click.echo(
        f"""
run:       {result.run.run_id} ({result.run.status}, provider {result.provider})
database:  {result.db_path}
exports:   {Path(artifacts["jsonl"]).parent}/
datasets:  {result.out_dir / "datasets"}/
report:    {result.report}
browse:    {_self_command()} browse {result.db_path}""",
        err=True,
    )


def _self_command() -> str:
    """How to call synth again from here: `synth` when on PATH, else the path used now."""
    import shutil

    return "synth" if shutil.which("synth") else sys.argv[0]


@cli.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option(
    "-o",
    "--output",
    type=PathArg(dir_okay=False, allow_dash=True, path_type=Path),
    help="File to write, - for stdout  [default: report.html; md: stdout]",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "latex", "csv"]),
    help="html: a self-contained page; md: a text readout for terminals; with --table: "
    "md, latex (booktabs) or csv; with --study alone: csv writes the study table  [default: html; "
    "with --table: md]",
)
@click.option(
    "--table",
    type=click.Choice(list(dict.fromkeys(REPORT_TABLES + STUDY_TABLES))),
    help="Write this table of the report alone (stdout unless -o). With --study, one of "
    "the study's: study (task x length by system), robustness, seed-spread, paired, wins, "
    "cost, generalisation; study, robustness, paired, wins and cost need --study",
)
@click.option(
    "--pivot",
    is_flag=True,
    help="With --table leaderboard: test means, a row per task and length, a column per "
    "proposer and setting, the best of each row marked",
)
@click.option(
    "--figures",
    type=PathArg(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write every chart to DIR as SVG, PNG and PDF (<chart>.svg ...) instead of the page",
)
@click.option("--study", metavar="NAME", help="Report on the runs of this study, its tables first")
@click.option("--model", multiple=True, help="Only runs of this model")
@click.option("--provider", multiple=True, help="Only runs of this provider")
@click.option(
    "--task",
    multiple=True,
    metavar="FN",
    help="Only these task ids (repeat the flag, or separate them with commas)",
)
@click.option(
    "--prices",
    type=PathArg(dir_okay=False, path_type=Path),  # read (and refused) as SYNTH_PRICES is
    help="JSON price table merged over the built-in one  [env var: SYNTH_PRICES]",
)
@db_option
@user_errors
def report(run_ids, output, fmt, table, pivot, figures, study, model, provider, task, prices, db_path):
    """Analyse runs: accuracy with CIs, leakage audit, compile stats, tokens and cost.

    No RUN_ID (and no filter): the latest run. The HTML works offline: its charts'
    JavaScript is inlined once and it references nothing outside the file. --table and
    --figures write a table or the charts alone, for a paper.
    """
    from reports import ReportError, build_report
    from tracker.db import db_path as resolve_db

    task = split_values(task)
    filters = {k: list(v) for k, v in (("model", model), ("provider", provider), ("task", task)) if v}
    if study is not None and figures is not None:
        raise click.UsageError("--figures draws the charts of runs: drop --study")
    if figures is not None or table is not None:
        return _report_part(run_ids, output, fmt, table, pivot, figures, filters, prices, db_path, study)
    if pivot:
        raise click.UsageError("--pivot turns a table: use it with --table leaderboard")
    fmt = fmt or "html"
    if fmt not in ("html", "md") and not (fmt == "csv" and study is not None):
        raise click.UsageError(f"--format {fmt} is for one table: add --table NAME")
    # `-o -`: standard output, as the text format goes there by default.
    out = None if str(output) == "-" else output or (Path("report.html") if fmt == "html" else None)
    try:
        result = build_report(
            resolve_db(db_path),
            list(run_ids) or None,
            out,
            fmt,
            filters or None,
            prices,
            notify=lambda message: click.echo(message, err=True),
            study=study,
        )
    except ReportError as e:
        raise UserError(str(e)) from None
    if out is None:
        click.echo(result, nl=False)
    else:
        click.echo(f"report written to {result}", err=True)


def _report_part(run_ids, output, fmt, table, pivot, figures, filters, prices, db_path, study):
    """`synth report --table NAME` (of runs, or of a ``study``) or `--figures DIR`: one
    table, or every chart as files."""
    from reports import ReportError
    from reports.build import build_figures, build_table, check_output
    from tracker.db import db_path as resolve_db
    from tracker.files import write_atomic

    if figures is not None and table is not None:
        raise click.UsageError("--figures and --table write different things: use one")
    if figures is not None and (output is not None or fmt is not None or pivot):
        raise click.UsageError(
            "--figures writes SVG, PNG and PDF files into DIR: drop -o, --format and --pivot"
        )
    out = None if output is None or str(output) == "-" else output
    try:
        if figures is not None:
            written = build_figures(
                resolve_db(db_path), figures, list(run_ids) or None, filters or None, prices
            )
            click.echo(f"{len(written)} figure files written to {figures}", err=True)
            return
        if out is not None:
            check_output(out)
        text = build_table(
            resolve_db(db_path),
            table,
            list(run_ids) or None,
            fmt or "md",
            pivot,
            filters or None,
            prices,
            study,
        )
        if out is not None:
            write_atomic(out, text)
    except ReportError as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    if out is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"table {table} written to {out}", err=True)
