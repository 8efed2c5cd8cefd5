"""The `synth` command line: a thin layer over library functions.

Data goes to stdout (``--json`` where useful); messages and warnings to stderr. User
errors are one line and exit with code 2.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import click

from synth import __version__
from synth.errors import SynthError
from tracker.db import StoreError

# Flags that take several values the way the published runner's did
# (`--functions fn_a fn_b --lengths 20 50`); commas and repeats work too.
VARIADIC = ("--functions", "--lengths")


class UserError(click.ClickException):
    """A one-line error about the user's input: exit code 2, no traceback."""

    exit_code = 2


class VariadicCommand(click.Command):
    """Spreads `--functions a b c` into `--functions a --functions b --functions c`."""

    def parse_args(self, ctx, args):
        out, current = [], None
        for arg in args:
            if arg.startswith("-"):
                name = arg.split("=", 1)[0]
                current = name if name in VARIADIC and "=" not in arg else None
                out.append(arg)
            elif current and out[-1] != current:
                out.extend([current, arg])
            else:
                out.append(arg)
        return super().parse_args(ctx, out)


def user_errors(fn):
    """Turn the library's user-facing errors into one-line exit-2 errors."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (SynthError, StoreError) as e:
            raise UserError(str(e)) from None

    return wrapper


def split_values(values: tuple[str, ...]) -> list[str]:
    return [v for value in values for v in value.replace(",", " ").split()]


def parse_lengths(values: tuple[str, ...]) -> list[int] | None:
    if not values:
        return None
    try:
        return [int(v) for v in split_values(values)]
    except ValueError:
        raise UserError(f"--lengths takes whole numbers (got {' '.join(values)})") from None


def db_option(fn):
    return click.option(
        "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path),
        envvar="SYNTH_DB", show_envvar=True, help="SQLite database  [default: ./synth.db]",
    )(fn)  # fmt: skip


def grid_options(fn):
    """The dataset grid flags, named and defaulted as in the published runner."""
    options = [
        click.option("--functions", multiple=True, metavar="FN...",
                     help="Task ids (space or comma separated)  [default: the published grid]"),
        click.option("--lengths", multiple=True, metavar="L...",
                     help="Input lengths for every non-tabular task  [default: each task's own]"),
        click.option("--train-size", type=int, default=100, show_default=True),
        click.option("--val-size", type=int, default=100, show_default=True),
        click.option("--test-size", type=int, default=10000, show_default=True),
        click.option("--seed", type=int, default=42, show_default=True, help="Global base seed"),
        click.option("--strict-sizes", is_flag=True,
                     help="Refuse, rather than cap, a tabular test split its source cannot fill"),
        click.option("--uci-dir", type=click.Path(file_okay=False, path_type=Path),
                     envvar="SYNTH_UCI_DIR", show_envvar=True,
                     help="Folder with the UCI files (else the download cache)"),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group()
@click.version_option(__version__, prog_name="synth")
def cli():
    """LLM-PV: propose-and-verify program learning, recorded in one SQLite database."""
    logging.basicConfig(format="Warning: %(message)s", level=logging.WARNING)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON")
def tasks(as_json):
    """List the tasks: id, target name, kind and default lengths."""
    from synth.tasks import TASKS

    rows = [
        {"id": t.id, "target": t.target, "kind": t.kind, "lengths": list(t.lengths),
         "fixed_length": t.fixed_length is not None}
        for t in TASKS.values()
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'id':<6} {'target':<24} {'kind':<8} lengths")
    for r in rows:
        lengths = " ".join(map(str, r["lengths"])) + (" (fixed)" if r["fixed_length"] else "")
        click.echo(f"{r['id']:<6} {r['target']:<24} {r['kind']:<8} {lengths}")


@cli.group()
def datasets():
    """Build, list and export datasets (the database is the cache)."""


@datasets.command(name="build", cls=VariadicCommand)
@grid_options
@db_option
@user_errors
def datasets_build(functions, lengths, train_size, val_size, test_size, seed,
                   strict_sizes, uci_dir, db_path):  # fmt: skip
    """Build the datasets of a grid into the database (stored ones are reused)."""
    from synth.build import build_grid

    stored = build_grid(
        functions=split_values(functions) or None,
        lengths=parse_lengths(lengths),
        train_size=train_size, val_size=val_size, test_size=test_size, seed=seed,
        strict_sizes=strict_sizes, uci_dir=uci_dir, db_path=db_path,
    )  # fmt: skip
    built = sum(s.built for s in stored)
    click.echo(f"{built} built, {len(stored) - built} already stored", err=True)


@datasets.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Output JSON")
@db_option
@user_errors
def datasets_list(as_json, db_path):
    """List the datasets stored in the database."""
    from tracker.datasets import list_datasets
    from tracker.db import open_db

    rows = list_datasets(open_db(db_path, readonly=True))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'fn':<6} {'L':>4} {'train':>6} {'val':>6} {'test':>6} {'seed':>11}  fingerprint")
    for r in rows:
        click.echo(
            f"{r['fn']:<6} {r['length']:>4} {r['train_effective']:>6} {r['val_effective']:>6} "
            f"{r['test_effective']:>6} {r['derived_seed']:>11}  {r['fingerprint'][:16]}"
        )


@datasets.command(name="export", cls=VariadicCommand)
@click.option("--dataset-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Root of the published layout <dir>/<target>/L<len>/seed<derived>/")  # fmt: skip
@click.option("--functions", multiple=True, metavar="FN...", help="Only these task ids")
@click.option("--lengths", multiple=True, metavar="L...", help="Only these lengths")
@db_option
@user_errors
def datasets_export(dataset_dir, functions, lengths, db_path):
    """Write stored datasets as split files and meta.json in the published layout."""
    from synth.build import export_datasets

    folders = export_datasets(
        db_path, dataset_dir, functions=split_values(functions) or None,
        lengths=parse_lengths(lengths),
    )  # fmt: skip
    for folder in folders:
        click.echo(str(folder))
    click.echo(f"{len(folders)} datasets written under {dataset_dir}", err=True)
