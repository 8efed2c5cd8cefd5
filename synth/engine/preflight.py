"""What a run checks before anything is recorded or paid for: the whole grid and its
size, the key, the template rendered at every grid point, and every folder and file the
run will write to."""

from __future__ import annotations

import csv
import fnmatch
import json
import os
from pathlib import Path

import sqlite_utils

from synth.config import (
    FORMULA_SETTINGS,
    MAX_TRIALS,
    MAX_TRIALS_ENV,
    OFFLINE_PROVIDERS,
    PROMPT_VERSIONS,
    RunConfig,
    experiment_sha256,
    parse_shard,
)
from synth.datasets.cache import StoredDataset
from synth.datasets.grid import GridPoint, Sizes, plan_grid
from synth.engine.loop import GridJob
from synth.errors import SynthError, shortened
from synth.prompts import load_template, render_prompt, template_from_text
from tracker.datasets import forget_new_datasets, load_examples
from tracker.files import NotAFile, check_replaceable, database_files, folder_problem, same_file
from tracker.prices import ModelPrice, PriceError, load_prices

API_KEY_ENV = "OPENAI_API_KEY"


def _job(db: sqlite_utils.Database, s: StoredDataset, template, wording: str, made: dict) -> GridJob:
    if s.id not in made:
        made[s.id] = load_examples(db, s.id)
    splits = made[s.id]
    prompt = render_prompt(s.point.task, s.point.length, splits["train"], template=template, prompt=wording)
    return GridJob(s, splits, prompt)


def check_grid_size(points: int, num_trials: int) -> None:
    """Refuses a grid of more trials than MAX_TRIALS (or $SYNTH_MAX_TRIALS)."""
    most = os.environ.get(MAX_TRIALS_ENV, "").strip() or str(MAX_TRIALS)
    if not most.isdigit() or not most.isascii():
        raise SynthError(f"{MAX_TRIALS_ENV} must be a whole number (got {most!r})")
    if points * num_trials > int(most):
        raise SynthError(
            f"the grid holds {points * num_trials:,} trials ({points:,} grid point(s) x "
            f"{num_trials:,}), more than {int(most):,}; lower --num-trials, or raise the bound with "
            f"{MAX_TRIALS_ENV}=N"
        )


def shard_record(config: RunConfig, points: list[GridPoint], notify) -> dict | None:
    """What a shard's run records of its shard (tracker.runs.create_run), once its grid is
    known: the experiment's settings fingerprint, and the run id derived from it when
    none was given (printed: every machine given these settings derives the same). A
    shard that would hold no trial is refused."""
    if config.shard is None:
        return None
    i, n = parse_shard(config.shard)
    trials = len(points) * config.num_trials
    if n > trials:
        raise SynthError(
            f"--shard {i}/{n}: the grid holds {trials:,} trial(s), so at most {trials:,} shard(s)"
        )
    keys = {(p.task.id, p.task.origin.key) for p in points if p.task.origin}
    sha = experiment_sha256(config, list(keys))
    if config.run_id is None:
        config.run_id = f"sharded_{sha[:16]}"
        notify(f"run id {config.run_id}: derived from the settings, the same for every shard given them")
    return {"shard": i, "shards": n, "settings_sha256": sha}


def plan(config: RunConfig, uci_dir: Path | None, notify) -> list[GridPoint]:
    return plan_grid(
        config.functions,
        config.lengths,
        Sizes(config.train_size, config.val_size, config.test_size),
        config.seed,
        strict_sizes=config.strict_sizes,
        uci_dir=uci_dir,
        notify=notify,
    )


def run_price(config: RunConfig) -> ModelPrice:
    """The price the run records its costs at: its model's in the package table, or in
    --prices (else $SYNTH_PRICES) over it. A cap needs a known price."""
    try:
        price = load_prices(config.prices_path).for_model(config.model)
    except PriceError as e:
        raise SynthError(str(e)) from None
    check_cap(config, price)
    return price.batch() if config.batch else price


def check_cap(config: RunConfig, price: ModelPrice) -> None:
    if config.max_cost is not None and config.provider not in OFFLINE_PROVIDERS and price.price is None:
        raise SynthError(
            f"--max-cost needs the price of model {config.model!r}, which the price table "
            f"({price.source}) does not have: give it with --prices FILE (see synth prices)"
        )


def recorded_settings(config: RunConfig) -> None:
    """What a new run records beside the settings it was given: its prompt wording's
    version, an offline proposer's settings in one line, and its template's text (so a
    resume renders the same prompts). A resume reads them back instead."""
    config.prompt_version = PROMPT_VERSIONS[config.prompt]
    config.proposer_setting = proposer_setting(config)
    if config.prompt_template_path and config.prompt_template is None:
        config.prompt_template = read_template(config.prompt_template_path)


def read_template(path: str) -> str:
    load_template(path)  # one-line errors for a missing or broken template
    text = Path(path).read_text(encoding="utf-8")
    # As the run will use it, from its text: an include of another file, or a variable
    # no render provides, is refused now, before any dataset is built.
    template_from_text(text, name=path)
    return text


def _template(config: RunConfig):
    if config.prompt_template is None:
        return None
    return template_from_text(config.prompt_template, name=config.prompt_template_path or "stored template")


def grid_jobs(
    config: RunConfig,
    db: sqlite_utils.Database,
    stored: list[StoredDataset],
    *,
    created: bool = False,
    made: dict | None = None,
) -> dict[tuple[str, int], GridJob]:
    """Every grid point's splits and prompt, the prompt rendered from its own training
    split, sandboxed and within the limits of synth.prompts, before the run is recorded
    (or a resume claims it): a template that fails on any point is refused with the run
    untouched. The datasets are built by then; in a database this call's caller
    ``created``, the ones built are removed again, so that the caller can remove the
    file (remove_if_empty). ``made``: what earlier calls loaded (splits by dataset id)
    and made (jobs by dataset, wording and template), reused and added to: a study's
    cells of one seed share their datasets."""
    template = _template(config)
    made = {} if made is None else made
    try:
        jobs = {}
        for s in stored:
            key = (s.id, config.prompt, config.prompt_template)
            if key not in made:
                made[key] = _job(db, s, template, config.prompt, made)
            jobs[s.point.task.id, s.point.length] = made[key]
        return jobs
    except SynthError:
        built = [s.id for s in stored if s.built]
        if created and built:
            forget_new_datasets(db, built)
        raise


def _offline_options(config: RunConfig) -> dict:
    return {n: getattr(config, n) for n in FORMULA_SETTINGS} if config.provider == "formula" else {}


def proposer_setting(config: RunConfig) -> str | None:
    """An offline proposer's settings in one line, recorded with the run (the report's
    leaderboard shows them beside a model's reasoning effort); None for the API."""
    if config.provider not in OFFLINE_PROVIDERS:
        return None
    from synth.providers.offline import setting_of

    return setting_of(config.provider, _offline_options(config))


def provider_for(config: RunConfig, key_env: str = API_KEY_ENV):
    """The proposer of a run: offline, or the API with the key in ``key_env``."""
    if config.provider in OFFLINE_PROVIDERS:
        from synth.providers.offline import make_offline_provider

        return make_offline_provider(config.provider, **_offline_options(config))
    key = os.environ.get(key_env)
    if not key:
        raise SynthError(
            f"{key_env} is not set: export it, or use an offline --provider "
            f"({', '.join(OFFLINE_PROVIDERS)}); `synth run --dry-run` needs none either"
        )
    # It travels in an HTTP header: printable ASCII, no space (a pasted newline, a curly quote).
    bad = next((i for i, c in enumerate(key) if not (c.isascii() and c.isprintable()) or c == " "), None)
    if bad is not None:
        raise SynthError(
            f"{key_env} has a character an HTTP header cannot carry at position "
            f"{bad}: check that it was copied whole and alone"
        )
    from synth.providers.openai_api import make_provider

    provider = make_provider(config.api, key_env=key_env)  # read again at each call
    if config.batch:
        from synth.providers.batch_api import check_batch_api

        check_batch_api(provider)
    return provider


def check_out_dir(config: RunConfig, db_path: Path) -> None:
    """The exports' folders are writable, the exports three files, none of them the
    database, and no other run's exports are there: its manifest where ours goes, or its
    per-trial logs beside our JSONL (they would be left among ours)."""
    named = {
        "--out-jsonl": config.jsonl_path,
        "--out-csv": config.csv_path,
        "--out-manifest": config.manifest_path,
    }
    log = config.jsonl_path.parent / f"{config.jsonl_path.stem}_fn_L1_trial1.jsonl"
    for flag, path in {**named, "a per-trial log": log}.items():
        hits = [
            f
            for f in database_files(db_path)
            if same_file(path, f)
            or (
                flag == "a per-trial log"
                and same_file(path.parent, f.parent)
                and fnmatch.fnmatch(f.name, f"{config.jsonl_path.stem}_*_L*_trial*.jsonl")
            )
        ]
        if hits:
            raise SynthError(
                f"{flag} would be written over {hits[0]}, a file of the database "
                f"{db_path}: every run in it would be lost; choose another path"
            )
    seen: dict[Path, str] = {}
    for flag, path in named.items():
        if (other := seen.setdefault(path.resolve(), flag)) != flag:
            raise SynthError(
                f"{other} and {flag} name the same file, {path}: one export would overwrite the other"
            )
    for path in {p.parent for p in named.values()}:
        check_folder(path, "exports")
    for path in named.values():
        try:
            check_replaceable(path)
        except NotAFile as e:
            raise SynthError(f"cannot write exports: {e}") from None
        except OSError as e:  # a name too long, a folder we may not enter
            raise SynthError(f"cannot write exports to {shortened(str(path))}: {e.strerror}") from None
    logs = sorted(config.jsonl_path.parent.glob(f"{config.jsonl_path.stem}_*_L*_trial*.jsonl"))
    for path in [config.manifest_path, config.jsonl_path, config.csv_path, *logs[:1]]:
        other = _run_id_in(path)
        if other not in (None, config.run_id):
            raise SynthError(
                f"{path.parent} holds the exports of run {other!r}; "
                f"choose another --out-dir, or remove them first"
            )


def _run_id_in(path: Path) -> str | None:
    """The run id an export file names (a manifest, or the first row of a JSONL or CSV
    file), if any."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if path.suffix == ".csv":
                return next(csv.DictReader(fh)).get("run_id")
            return json.loads(fh.readline() if path.suffix == ".jsonl" else fh.read()).get("run_id")
    except (OSError, ValueError, AttributeError, StopIteration, csv.Error):
        return None


def check_outputs(config: RunConfig, db_path: Path) -> None:
    """Every folder a run writes to, before anything is spent."""
    check_out_dir(config, db_path)
    if config.dataset_dir:
        check_folder(Path(config.dataset_dir), "datasets")


def check_folder(path: Path, what: str) -> None:
    """That ``path`` can be made a folder to write ``what`` in, before anything is spent."""
    if problem := folder_problem(path, may_create=True):
        raise SynthError(f"cannot write {what} to {shortened(str(path))}: {problem}")
