"""`synth datasets build|export` as library functions."""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from synth.config import default
from synth.custom_tasks import load_tasks_files
from synth.datasets.cache import StoredDataset, ensure_datasets
from synth.datasets.grid import Sizes, plan_grid
from synth.errors import RunInterrupted, SynthError
from synth.tasks import get_task, use_custom_tasks
from tracker.dataset_files import write_dataset_folders
from tracker.datasets import list_datasets
from tracker.db import StoreError, check_writable, open_db, remove_if_empty
from tracker.db import db_path as resolve_db


def build_grid(
    *,
    functions: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
    train_size: int = default("train_size"),
    val_size: int = default("val_size"),
    test_size: int = default("test_size"),
    seed: int = default("seed"),
    strict_sizes: bool = False,
    uci_dir: Path | None = None,
    db_path: Path | None = None,
    tasks_files: Sequence[str | Path] = (),
    notify=lambda message: None,
) -> list[StoredDataset]:
    """Check the grid and the database path, then build and store what is missing;
    ``tasks_files`` declare tasks of one's own; ``notify`` receives warnings meant for
    the user."""
    use_custom_tasks(load_tasks_files(tasks_files))
    path = resolve_db(db_path)
    check_writable(path)
    points = plan_grid(
        functions,
        lengths,
        Sizes(train_size, val_size, test_size),
        seed,
        strict_sizes=strict_sizes,
        uci_dir=uci_dir,
        notify=notify,
    )
    created = not path.exists()
    with _terminate_interrupts():
        try:
            with open_db(path) as db:
                return ensure_datasets(db, points, uci_dir=uci_dir)
        except BaseException as e:
            if created and path.exists():
                with suppress(StoreError, sqlite3.Error, OSError):
                    remove_if_empty(open_db(path), path)
            if isinstance(e, KeyboardInterrupt):  # each dataset is stored whole as it is built
                raise RunInterrupted(
                    "interrupted: the datasets built so far are stored; the same command builds the rest"
                ) from None
            raise


@contextmanager
def _terminate_interrupts():
    """SIGTERM (`timeout`, `kill`) stops a build as Ctrl-C does, in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def export_datasets(
    db_path: Path | None,
    dataset_dir: Path,
    *,
    functions: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
) -> list[Path]:
    """Write the stored datasets (optionally only some tasks/lengths) in the published layout."""
    with open_db(db_path, readonly=True) as db:
        stored = list_datasets(db)
        for fn in set(functions or ()) - {r["fn"] for r in stored}:
            get_task(fn)  # a built-in task without datasets yet, or a typo named as such
        rows = [
            r
            for r in stored
            if (not functions or r["fn"] in functions) and (not lengths or r["length"] in lengths)
        ]
        if not rows:
            raise SynthError("no stored dataset matches; build some with `synth datasets build`")
        try:
            dataset_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SynthError(f"cannot write to {dataset_dir}: {e.strerror}") from None
        return write_dataset_folders(db, rows, dataset_dir)
