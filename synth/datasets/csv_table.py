"""A researcher's CSV as a source table, for a tabular task of their own
(synth.tabular_task): read once, checked, and then sampled exactly as the UCI tables are
(synth.datasets.generators.tabular).

The file has a header row; every column but the label column is a feature, in file
order. A feature is numeric when every value in it reads as a finite number (it then
goes through the tabular tasks' affine map), categorical otherwise. The label column's
``positive`` value is class 1, every other value class 0.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path

import numpy as np

from synth.datasets.uci import Column, Source, Table
from synth.errors import SourceError


def read_csv_table(path: Path, label: str, positive: str) -> tuple[Table, str]:
    """The table of the CSV at ``path`` and the SHA-256 of its bytes."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SourceError(f"cannot read the CSV {path}: {e.strerror or e}") from None
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{path}: not a UTF-8 CSV file ({e})") from None
    rows = [r for r in rows if r]
    if not rows:
        raise SourceError(f"{path} is empty: a CSV with a header row is expected")
    header = [name.strip() for name in rows[0]]
    if label not in header:
        raise SourceError(f"{path} has no column {label!r} (its columns: {', '.join(header)})")
    bad = next((i for i, r in enumerate(rows[1:], 2) if len(r) != len(header)), None)
    if bad is not None:
        raise SourceError(f"{path}: line {bad} has {len(rows[bad - 1])} fields, the header {len(header)}")
    at = header.index(label)
    classes = sorted({r[at] for r in rows[1:]})
    if positive not in classes or len(classes) < 2:
        raise SourceError(
            f"{path}: the label column {label!r} holds only {', '.join(map(repr, classes)) or 'nothing'}; "
            f"it needs rows of both classes (positive: {positive!r}, and any other value)"
        )
    features = [i for i in range(len(header)) if i != at]
    columns = [_column([r[i] for r in rows[1:]]) for i in features]
    source = Source(
        name=path.stem,
        title=path.name,
        uci_id=0,
        file=path.name,
        download="",
        sep=",",
        header=True,
        label=label,
        positive=frozenset({positive}),
        negative=frozenset(classes) - {positive},
        features=tuple(header[i] for i in features),
        numeric=frozenset(j for j, c in enumerate(columns) if c.numbers is not None),
    )
    labels = np.array([r[at] == positive for r in rows[1:]], dtype=np.int8)
    labels.flags.writeable = False
    return Table(source, path, tuple(columns), labels), hashlib.sha256(data).hexdigest()


def _column(values: list[str]) -> Column:
    """Sorted distinct values and a code per row; numbers when every value is one."""
    distinct, codes = np.unique(np.array(values, dtype=str), return_inverse=True)
    kept = tuple(distinct.tolist())
    numbers = [_number(v) for v in kept]
    parsed = None if any(math.isnan(x) for x in numbers) else np.array(numbers)
    codes = codes.reshape(-1).astype(np.min_scalar_type(max(len(kept) - 1, 0)))
    for array in (codes, parsed):
        if array is not None:
            array.flags.writeable = False
    return Column(kept, codes, parsed)


def _number(value: str) -> float:
    """A finite number, else nan."""
    try:
        x = float(value)
    except ValueError:
        return math.nan
    return x if math.isfinite(x) else math.nan
