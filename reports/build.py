"""``synth report`` as a library function: one snapshot of the database, analysed and
rendered as a self-contained HTML page or a text readout."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import fields
from pathlib import Path

from reports.analyses import Report, analyse_scope
from reports.errors import ReportError
from reports.html import NO_CHARTS, render_html, vega_javascript
from reports.scope import resolve_scope
from reports.study import study_runs
from reports.study_view import render_study_table, study_csv
from reports.text import render_text
from tracker.db import StoreError, open_db
from tracker.db import db_path as resolve_db
from tracker.files import (
    NotAFile,
    check_replaceable,
    database_files,
    folder_problem,
    same_file,
    write_atomic,
)
from tracker.prices import PRICES_ENV, PriceError, load_prices

RENDERERS = {"html": render_html, "md": render_text, "csv": lambda report: study_csv(report.study)}


def build_report(
    db_path: str | os.PathLike | None,
    run_ids: list[str] | None = None,
    out: str | os.PathLike | None = None,
    fmt: str = "html",
    filters: dict | None = None,
    prices: str | os.PathLike | None = None,
    notify=lambda message: None,
    study: str | None = None,
) -> str | Path:
    """Report on ``run_ids`` (none: the runs ``filters`` select, else the latest run), or
    on the runs of the ``study`` of that name, its tables first.

    ``filters`` keys: model, provider, task (a value or a list). ``prices``: a JSON price
    table merged over the package's (default: $SYNTH_PRICES). ``notify`` receives warnings
    meant for the user (charts that could not be drawn). Returns the text, or the
    path it was written to when ``out`` is given. The database is opened read-only and
    read in one transaction, so a run may keep writing meanwhile.
    """
    if fmt not in RENDERERS:
        raise ReportError(f"unknown report format {fmt!r}: use {', '.join(RENDERERS)}")
    if fmt == "csv" and study is None:
        raise ReportError("--format csv writes a study's table: give --study NAME")
    out = Path(out) if out is not None else None
    if out is not None:
        check_output(out)
    path = resolve_db(db_path)
    if out is not None and any(same_file(out, f) for f in database_files(path)):
        raise ReportError(
            f"cannot write {out}: it is a file of the database {path}, which the report would overwrite"
        )
    report = _snapshot(path, run_ids, filters, prices, study)
    text = RENDERERS[fmt](report)
    if fmt == "html" and vega_javascript() is None:
        notify(f"Warning: {NO_CHARTS}")
    if out is None:
        return text
    try:
        write_atomic(out, text)
    except OSError as e:  # a full disk, a name too long, a folder changed meanwhile
        raise ReportError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def build_figures(
    db_path: str | os.PathLike | None,
    folder: str | os.PathLike,
    run_ids: list[str] | None = None,
    filters: dict | None = None,
    prices: str | os.PathLike | None = None,
) -> list[Path]:
    """Every chart of the report on ``run_ids`` (chosen as ``build_report`` chooses) as
    SVG, PNG and PDF files in ``folder``, named by chart (reports.figures); returns
    their paths. The folder is made if need be; files of the same names are replaced."""
    from reports.figures import write_figures  # vl-convert's drawing, only when asked

    folder = Path(folder)
    if problem := folder_problem(folder, may_create=True):
        raise ReportError(f"cannot write figures to {folder}: {problem}")
    report = _snapshot(resolve_db(db_path), run_ids, filters, prices)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return write_figures(report, folder)
    except OSError as e:
        raise ReportError(f"cannot write figures to {folder}: {e.strerror or e}") from None


def build_table(
    db_path: str | os.PathLike | None,
    name: str,
    run_ids: list[str] | None = None,
    fmt: str = "md",
    pivot: bool = False,
    filters: dict | None = None,
    prices: str | os.PathLike | None = None,
    study: str | None = None,
) -> str:
    """One table of the report on ``run_ids`` alone, as Markdown, LaTeX or CSV text
    (reports.table_formats); ``pivot`` turns the leaderboard as papers print it. With
    ``study``: one of that study's tables (reports.tables.STUDY_TABLES), on its runs."""
    from reports.table_formats import check_table, render_table

    check_table(name, fmt, pivot, study is not None)
    report = _snapshot(resolve_db(db_path), run_ids, filters, prices, study)
    if study is not None:
        return render_study_table(report.study, name, fmt)
    return render_table(report, name, fmt, pivot)


def analyse(
    db_path: str | os.PathLike | None = None,
    run_ids: list[str] | None = None,
    *,
    prices: str | os.PathLike | None = None,
    **filters,
) -> dict:
    """Every analysis the report shows, as plain Python data, for a notebook or a script:
    ``{"runs": [...], "leaderboard": [...], "gate": {...}, ...}``, each a list of rows
    (dicts) named as the report's sections are. The runs are chosen as ``build_report``
    chooses them (``filters``: model, provider, task)."""
    report = _snapshot(resolve_db(db_path), run_ids, filters, prices)
    shown = {f.name: getattr(report, f.name) for f in fields(report) if f.name not in _FRAME}
    return {"run_ids": list(report.scope.run_ids), **shown}


_FRAME = ("database", "scope", "prices", "generated_at")  # how a report is made, not its data


def _snapshot(path: Path, run_ids, filters, prices, study: str | None = None) -> Report:
    """Every analysis, from one read-only snapshot of the database; costs as recorded,
    or re-priced at a price table given (``prices``, else $SYNTH_PRICES)."""
    try:
        price_table = load_prices(prices)
    except PriceError as e:
        raise ReportError(str(e)) from None
    repriced = bool(prices or os.environ.get(PRICES_ENV))
    try:
        db = open_db(path, readonly=True)
    except StoreError as e:
        raise ReportError(str(e)) from None
    with db:
        try:
            if study is not None:
                run_ids = study_runs(db, study)
                if not run_ids:
                    raise ReportError(f"no study {study!r} with runs in {path}")
            scope = resolve_scope(db, run_ids, filters)
            return analyse_scope(db, scope, price_table, str(path), repriced, study)
        except sqlite3.DatabaseError as e:
            raise ReportError(f"cannot read {path}: {e}") from None


def check_output(out: Path) -> None:
    """Refuse, before any work, an output the report could not be written to: a folder
    that does not exist or we may not write in, or at ``out`` something other than a
    regular file (a folder, a device, a pipe, a symbolic link; `-o ''` is the current
    folder), which writing would replace."""
    try:
        check_replaceable(out)
    except NotAFile as e:
        raise ReportError(f"cannot write {out}: it is {e.strerror}; only a plain file is replaced") from None
    except OSError as e:
        raise ReportError(f"cannot write {out}: {e.strerror or e}") from None
    if problem := folder_problem(out.parent):
        raise ReportError(f"cannot write {out}: {problem}")
