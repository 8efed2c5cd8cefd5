"""The report's HTML tables, written as text in Python rather than cell by cell in Jinja:
the template's per-cell macro calls took most of the time of a ten-run report (33,000
programs, 1,000 grid points). The markup is the one the template wrote, escaped as Jinja
escapes."""

from __future__ import annotations

import functools

from markupsafe import Markup

from reports.tables import Column, fmt


def _text(value) -> str:
    """``value`` as Jinja writes it: numbers as they are, text escaped as markupsafe
    escapes it (its escape() makes a Markup object per value: twice the time)."""
    if type(value) in (int, float):
        return str(value)
    return (
        str(value)
        .replace("&", "&amp;")
        .replace(">", "&gt;")
        .replace("<", "&lt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def _title(help: str) -> str:
    return f' title="{_text(help)}"' if help else ""


def table(name: str, columns: list[Column], rows: list[dict]) -> Markup:
    """A sortable table: each cell's text, and its value to sort by in ``data-v``."""
    heads = "".join(f'    <th{_title(c.help)} class="{c.kind}">{_text(c.label)}</th>\n' for c in columns)
    body = [_row(columns, row) for row in rows] or [
        f'    <tr class="empty"><td colspan="{len(columns)}">no rows</td></tr>\n'
    ]
    return Markup(
        f'<div class="scroll">\n<table class="sortable" id="table-{_text(name)}">\n'
        f"  <thead><tr>\n{heads}  </tr></thead>\n  <tbody>\n{''.join(body)}  </tbody>\n</table>\n</div>\n"
    )


def _row(columns: list[Column], row: dict) -> str:
    cells = []
    for c in columns:
        v = c.sort_key(row)
        cells.append(
            f'      <td class="{c.kind}" data-v="{"" if v is None else _text(v)}">{_text(c.text(row))}</td>\n'
        )
    return f"    <tr>\n{''.join(cells)}    </tr>\n"


def program_rows(programs: list[dict]) -> Markup:
    """The rows of the selected-programs table: each trial's selected attempt, its code
    folded away."""
    if not programs:
        return Markup('      <tr class="empty"><td colspan="8">no finished trials</td></tr>')
    # The same few runs, tasks, numbers and statuses come back row after row: each is
    # escaped once (typed: 1 and 1.0 are written differently).
    short = functools.lru_cache(maxsize=None, typed=True)(_text)
    return Markup("\n".join(_program_row(p, short) for p in programs))


def _program_row(p: dict, short) -> str:
    if p["code"] is not None:
        program = (
            f"          <details><summary>{short(p['eval_status'] or 'program')}</summary>"
            f"<pre><code>{_text(p['code'])}</code></pre></details>\n"
        )
    else:
        program = f'          <span class="note">no program ({short(p["failure_class"] or "none")})</span>\n'
    run, fn, length, trial, chosen = (
        short(p[k]) for k in ("run_id", "fn", "length", "trial", "selected_attempt")
    )
    val, test = short(p["val_acc"]), short(p["test_acc"])
    return (
        "      <tr>\n"
        f'        <td data-v="{run}">{run}</td><td data-v="{fn}">{fn}</td>\n'
        f'        <td class="int" data-v="{length}">{length}</td>\n'
        f'        <td class="int" data-v="{trial}">{trial}</td>\n'
        f'        <td class="int" data-v="{chosen}">{chosen} of {short(p["attempts_made"])}</td>\n'
        f'        <td class="acc" data-v="{val}">{short(fmt(p["val_acc"], "acc"))}</td>\n'
        f'        <td class="acc" data-v="{test}">{short(fmt(p["test_acc"], "acc"))}</td>\n'
        f'        <td data-v="">\n{program}        </td>\n'
        "      </tr>"
    )
