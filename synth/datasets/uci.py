"""The five UCI source tables of the tabular tasks: find, download, cache and parse them.

A table is looked for as ``<file>`` or ``<file>.gz`` in the UCI folder (the ``uci_dir``
argument, else ``$SYNTH_UCI_DIR``), then in the cache folder (the ``cache_dir``
argument, else ``$SYNTH_CACHE_DIR``, else ``~/.cache/llm-pv/uci``). Failing both, it is
downloaded from the UCI repository (base URL: the ``base_url`` argument, else
``$SYNTH_UCI_BASE_URL``, else ``https://archive.ics.uci.edu``), taken out of its
archive (nested zips included) and written to the cache atomically. Whatever goes
wrong ends in one ``SourceError`` line saying what was tried and how to fix it.

Parsing is numpy-vectorised: every column becomes its sorted distinct raw strings
plus one code per row, so the 253,680-row CDC table loads in a fraction of a second
and costs a few MB, not millions of Python strings. None of these formats quotes
fields, so a separator always separates.
"""

from __future__ import annotations

import functools
import gzip
import http.client
import io
import math
import os
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth.errors import SourceError, SourceUnavailable, shortened
from tracker.files import write_atomic

DEFAULT_BASE_URL = "https://archive.ics.uci.edu"
DEFAULT_CACHE_DIR = Path("~/.cache/llm-pv/uci")
TIMEOUT = 60  # seconds to wait on the UCI server before giving up


@dataclass(frozen=True)
class Source:
    """One UCI data file: where it comes from and how to read it."""

    name: str
    title: str
    uci_id: int
    file: str
    # Path under the base URL; a .zip is searched (nested zips too) for ``file``,
    # anything else is the file itself.
    download: str
    sep: str
    header: bool
    # The class column: its header name, or its position in a file without header.
    label: str | int
    positive: frozenset[str]
    negative: frozenset[str]
    # Raw feature names in column order. With a header they are looked up by name
    # (extra columns, like the ID column UCI adds to the CDC file, are ignored);
    # without one they are the columns other than ``label``, in order.
    features: tuple[str, ...]
    numeric: frozenset[int]  # indices into ``features``

    @property
    def page(self) -> str:
        return f"{DEFAULT_BASE_URL}/dataset/{self.uci_id}"


def _source(*, features: str, numeric: tuple[int, ...] | None = None, **kw) -> Source:
    names = tuple(features.split())
    indices = range(len(names)) if numeric is None else numeric
    return Source(features=names, numeric=frozenset(indices), **kw)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        _source(
            name="adult",
            title="Adult",
            uci_id=2,
            file="adult.data",
            download="static/public/2/adult.zip",
            sep=", ",
            header=False,
            label=-1,
            positive=frozenset({">50K"}),
            negative=frozenset({"<=50K"}),
            features="age workclass fnlwgt education education-num marital-status "
            "occupation relationship race sex capital-gain capital-loss hours-per-week "
            "native-country",
            numeric=(0, 2, 4, 10, 11, 12),
        ),
        _source(
            name="mushroom",
            title="Secondary Mushroom",
            uci_id=848,
            file="secondary_data.csv",
            download="static/public/848/secondary+mushroom+dataset.zip",
            sep=";",
            header=True,
            label="class",
            positive=frozenset({"e"}),
            negative=frozenset({"p"}),
            features="cap-diameter cap-shape cap-surface cap-color does-bruise-or-bleed "
            "gill-attachment gill-spacing gill-color stem-height stem-width stem-root "
            "stem-surface stem-color veil-type veil-color has-ring ring-type "
            "spore-print-color habitat season",
            numeric=(0, 8, 9),
        ),
        _source(
            name="cdc_diabetes",
            title="CDC Diabetes Health Indicators",
            uci_id=891,
            file="diabetes_binary_health_indicators_BRFSS2015.csv",
            # UCI serves a plain CSV (with an added ID column), not an archive.
            download="static/public/891/data.csv",
            sep=",",
            header=True,
            label="Diabetes_binary",
            positive=frozenset({"1.0", "1"}),
            negative=frozenset({"0.0", "0"}),
            features="HighBP HighChol CholCheck BMI Smoker Stroke HeartDiseaseorAttack "
            "PhysActivity Fruits Veggies HvyAlcoholConsump AnyHealthcare NoDocbcCost "
            "GenHlth MentHlth PhysHlth DiffWalk Sex Age Education Income",
            numeric=(3, 13, 14, 15, 18, 19, 20),
        ),
        _source(
            name="htru2",
            title="HTRU2",
            uci_id=372,
            file="HTRU_2.csv",
            download="static/public/372/htru2.zip",
            sep=",",
            header=False,
            label=-1,
            positive=frozenset({"1"}),
            negative=frozenset({"0"}),
            features="Profile_mean Profile_stdev Profile_skewness Profile_kurtosis "
            "DM_mean DM_stdev DM_skewness DM_kurtosis",
        ),
        _source(
            name="chess",
            title="Chess (King-Rook vs. King-Pawn)",
            uci_id=22,
            file="kr-vs-kp.data",
            download="static/public/22/chess+king+rook+vs+king+pawn.zip",
            sep=",",
            header=False,
            label=-1,
            positive=frozenset({"won"}),
            negative=frozenset({"nowin"}),
            # The file names no attributes; UCI's documentation lists these 36.
            features="bkblk bknwy bkon8 bkona bkspr bkxbq bkxcr bkxwp blxwp bxqsq cntxt "
            "dsopp dwipd hdchk katri mulch qxmsq r2ar8 reskd reskr rimmx rkxwp rxmsq "
            "simpl skach skewr skrxp spcop stlmt thrsk wkcti wkna8 wknck wkovl wkpos wtoeg",
            numeric=(),
        ),
    )
}


@dataclass(frozen=True, eq=False)
class Column:
    """One column as its sorted distinct raw strings and, per row, an index into them."""

    values: tuple[str, ...]
    codes: np.ndarray  # unsigned ints, read-only
    numbers: np.ndarray | None  # float(value) per distinct value, for numeric columns


@dataclass(frozen=True, eq=False)
class Table:
    """A parsed source file: its feature columns (in order) and a 0/1 label per row."""

    source: Source
    path: Path
    columns: tuple[Column, ...]
    labels: np.ndarray  # int8, 1 = the positive class, read-only

    @property
    def features(self) -> tuple[str, ...]:
        return self.source.features

    @property
    def numeric(self) -> frozenset[int]:
        return self.source.numeric

    def __len__(self) -> int:
        return len(self.labels)

    def row(self, i: int) -> tuple[str, ...]:
        """The raw feature strings of row ``i`` (0-based, data rows only)."""
        return tuple(c.values[c.codes[i]] for c in self.columns)


def load_table(
    name: str,
    *,
    uci_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
) -> Table:
    """The parsed table of source ``name``, from a local copy or downloaded once."""
    try:
        source = SOURCES[name]
    except KeyError:
        raise SourceError(f"unknown UCI source {name!r} (known: {', '.join(SOURCES)})") from None
    folder = uci_dir or os.environ.get("SYNTH_UCI_DIR") or None
    folder = Path(folder).expanduser() if folder else None
    cache = Path(cache_dir or os.environ.get("SYNTH_CACHE_DIR") or DEFAULT_CACHE_DIR).expanduser()
    found = _find(folder, source.file)
    if found:
        return _read_file(source, found)
    found = _find(cache, source.file)
    if found:
        try:
            return _read_file(source, found)
        except SourceError as e:
            raise SourceError(f"{e} (delete the cached file to download it again)") from None

    base = base_url or os.environ.get("SYNTH_UCI_BASE_URL") or DEFAULT_BASE_URL
    url = f"{base.rstrip('/')}/{source.download}"
    try:
        content = _extract(_fetch(url), source)
    except (
        OSError,
        ValueError,
        NotImplementedError,
        http.client.HTTPException,
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        LookupError,
    ) as e:
        where = (
            f"is in neither {folder}{'' if folder.is_dir() else ' (no such folder)'} nor the cache {cache}"
            if folder
            else f"is not in the cache {cache} (and SYNTH_UCI_DIR is not set)"
        )
        raise SourceUnavailable(
            f"UCI {source.title} ({source.file}) {where}, and downloading {url} failed: "
            f"{_reason(e)}. Get it from {source.page} and set SYNTH_UCI_DIR (or --uci-dir) "
            f"to the folder holding {source.file} or {source.file}.gz"
        ) from None
    try:
        cache.mkdir(parents=True, exist_ok=True)
        path = write_atomic(cache / source.file, content)
    except OSError as e:
        raise SourceUnavailable(
            f"cannot write the UCI cache {cache} ({e}); set SYNTH_CACHE_DIR to a writable folder"
        ) from None
    try:
        return _read_file(source, path)
    except SourceError as e:
        path.unlink()
        raise SourceUnavailable(f"{url} served a file that cannot be read: {e}") from None


def _find(folder: Path | None, file: str) -> Path | None:
    """The file (or its .gz) in ``folder``; a folder or a device of that name is refused
    by name rather than passed over as missing (and then downloaded)."""
    for candidate in (folder / file, folder / f"{file}.gz") if folder else ():
        try:
            if candidate.is_file():
                return candidate.resolve()
            if candidate.exists() or candidate.is_symlink():
                what = (
                    "a folder"
                    if candidate.is_dir()
                    else "a link to nothing"
                    if not candidate.exists()
                    else "not a plain file"
                )
                raise SourceError(f"{candidate} is {what}, not the UCI file {file}")
        except OSError as e:  # a name too long, a folder we may not enter
            raise SourceError(
                f"cannot look for the UCI file {file} in {shortened(str(folder))}: {e.strerror}"
            ) from None
    return None


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return response.read()


def _extract(payload: bytes, source: Source) -> bytes:
    if not source.download.endswith(".zip"):
        return payload
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        members = archive.infolist()
        for member in members:
            if member.filename.rsplit("/", 1)[-1] == source.file:
                return archive.read(member)
        for member in members:
            if member.filename.endswith(".zip"):
                try:
                    return _extract(archive.read(member), source)
                except LookupError:
                    continue
    raise LookupError(f"the archive holds no {source.file}")


def _reason(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    if isinstance(e, LookupError):
        return str(e.args[0])
    if isinstance(e, zipfile.BadZipFile | zlib.error | EOFError):
        return f"not a valid zip archive ({e})"
    return str(e) or type(e).__name__


def _read_file(source: Source, path: Path) -> Table:
    stat = path.stat()
    return _read_cached(source.name, path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_cached(name: str, path: Path, mtime_ns: int, size: int) -> Table:
    """Parse once per process (and again only if the file changes on disk)."""
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise SourceError(f"cannot read {path}: {e}") from None
    try:
        return parse(SOURCES[name], data, path)
    except SourceError as e:
        raise SourceError(f"{path}: {e}") from None


def parse(source: Source, data: bytes, path: Path) -> Table:
    """Parse a source file's bytes: any line ending (LF, CRLF, bare CR), blank lines skipped."""
    text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in data else data
    while b"\n\n" in text:
        text = text.replace(b"\n\n", b"\n")
    text = text.strip(b"\n")
    names = None
    if source.header:  # names as a spreadsheet may save them: BOM, quotes, spaces
        head, _, text = text.removeprefix(b"\xef\xbb\xbf").partition(b"\n")
        names = [n.strip().strip('"') for n in _decode(head).split(source.sep)]
    width, label_at, feature_at = _layout(source, names)
    if not text:
        raise SourceError("no data rows")
    sep = source.sep.encode()
    if len(sep) > 1:  # one unit-separator byte stands for adult's ", "
        text, sep = text.replace(sep, b"\x1f"), b"\x1f"
    starts, widths = _field_bounds(text, sep[0], width, source.header)
    buffer = np.frombuffer(text + b"\0" * 8, dtype=np.uint8)

    label = _column(buffer, starts[label_at], widths[label_at])
    unknown = set(label.values) - source.positive - source.negative
    if unknown:
        raise SourceError(
            f"unexpected class value(s) {', '.join(map(repr, sorted(unknown)))} in the class "
            f"column {source.label if names else f'#{label_at + 1}'} "
            f"(expected {', '.join(sorted(source.positive | source.negative))})"
        )
    positive = np.array([v in source.positive for v in label.values])
    labels = _frozen(positive[label.codes].astype(np.int8))
    columns = []
    for i, j in enumerate(feature_at):
        column = _column(buffer, starts[j], widths[j])
        if i in source.numeric:
            column = Column(column.values, column.codes, _numbers(column, source.features[i]))
        columns.append(column)
    return Table(source, path, tuple(columns), labels)


def _layout(source: Source, names: list[str] | None) -> tuple[int, int, list[int]]:
    """(fields per line, class column, feature columns): by name with a header, else
    the features are every column but the class, in order."""
    if names is None:
        width = len(source.features) + 1
        label_at = source.label % width
        return width, label_at, [j for j in range(width) if j != label_at]
    missing = [n for n in (source.label, *source.features) if n not in names]
    if missing:
        raise SourceError(f"the header lacks the column(s) {', '.join(missing)}")
    return len(names), names.index(source.label), [names.index(n) for n in source.features]


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(f"not UTF-8 text ({e})") from None


def _field_bounds(text: bytes, sep: int, width: int, header: bool) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of every field, as (fields-per-row, rows) arrays, checking
    that every line has ``width`` fields."""
    buffer = np.frombuffer(text, dtype=np.uint8)
    is_sep = buffer == sep
    is_end = buffer == ord("\n")
    bounds = np.flatnonzero(is_sep | is_end)
    line_ends = np.flatnonzero(is_end[bounds])
    # fields per line = separators + 1; lines end at the newline bounds (and at EOF)
    per_line = np.diff(np.concatenate(([-1], line_ends, [len(bounds)])))
    bad = np.flatnonzero(per_line != width)
    if bad.size:
        line = int(bad[0]) + 1 + header
        raise SourceError(
            f"line {line} (not counting blank lines) has {per_line[bad[0]]} fields, expected {width}"
        )
    starts = np.concatenate(([0], bounds + 1))
    ends = np.concatenate((bounds, [len(buffer)]))
    # column-major, so each column's fields are contiguous
    return starts.reshape(-1, width).T.copy(), (ends - starts).reshape(-1, width).T.copy()


# _KEEP[k] keeps the first k bytes of a big-endian 8-byte word and zeroes the rest.
_KEEP = np.array([0] + [(2**64 - 1) ^ (2 ** (8 * (8 - k)) - 1) for k in range(1, 9)], np.uint64)


def _column(buffer: np.ndarray, starts: np.ndarray, widths: np.ndarray) -> Column:
    """Sorted distinct values and per-row codes of one column, without a Python loop
    per row: each field's bytes, zero padded, are read as big-endian 8-byte words, so
    ordering the keys orders the strings exactly as ``sorted`` does (for UTF-8 too)."""
    words = max(1, -(-int(widths.max()) // 8))
    windows = np.ndarray((len(buffer) - 7,), dtype=">u8", buffer=buffer.data, strides=(1,))
    keys = np.empty((len(starts), words), dtype=np.uint64)
    for w in range(words):
        at = np.minimum(starts + 8 * w, len(windows) - 1)  # past the end: 0 bytes kept
        keys[:, w] = windows[at].astype(np.uint64) & _KEEP[np.clip(widths - 8 * w, 0, 8)]
    if words == 1:  # the common case, and much faster than unique rows
        distinct, codes = np.unique(keys[:, 0], return_inverse=True)
        distinct = distinct[:, None]
    else:
        distinct, codes = np.unique(keys, axis=0, return_inverse=True)
    values = tuple(
        _decode(b"".join(int(w).to_bytes(8, "big") for w in key).rstrip(b"\0")) for key in distinct.tolist()
    )
    smallest = np.min_scalar_type(len(values) - 1)  # uint8 for most columns
    return Column(values, _frozen(codes.reshape(-1).astype(smallest)), None)


def _numbers(column: Column, feature: str) -> np.ndarray:
    numbers = []
    for value in column.values:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise SourceError(f"numeric column {feature!r} holds {value!r}")
        numbers.append(number)
    return _frozen(np.array(numbers))


def _frozen(array: np.ndarray) -> np.ndarray:
    """Read-only, so a caller cannot corrupt the per-process cache."""
    array.flags.writeable = False
    return array
