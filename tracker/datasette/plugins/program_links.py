"""Datasette plugin: a program hash, wherever a page shows one (the attempts table, the
flat views, canned queries), links to that program's row, so its code is one click away.
`synth browse` loads it; `datasette --plugins-dir tracker/datasette/plugins` does too."""

from datasette import hookimpl
from datasette.utils import tilde_encode
from markupsafe import Markup, escape

# Columns that hold a programs.hash; the programs table's own key is `hash`.
PROGRAM_HASH_COLUMNS = ("program_hash", "selected_program_hash")


@hookimpl
def render_cell(value, column, database, datasette):
    if column not in PROGRAM_HASH_COLUMNS or not isinstance(value, str) or not value:
        return None
    url = datasette.urls.row(database, "programs", tilde_encode(value))
    return Markup(f'<a href="{escape(url)}">{escape(value)}</a>')
