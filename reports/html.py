"""The report as one HTML file that works with no network.

One Jinja template (autoescaped) holds the tables and the chart specs; Vega, Vega-Lite
and vega-embed are inlined once, from vl-convert's bundle, at the Vega-Lite version
Altair writes. Nothing in the page refers to a URL: no CDN, no web font, no schema.
"""

from __future__ import annotations

import functools
import os
import resource
import subprocess
import sys
from pathlib import Path

import altair as alt
import vl_convert
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from reports import study_view, tables
from reports.analyses import Report
from reports.charts import build_charts
from reports.html_tables import program_rows, table
from tracker.files import write_atomic

ENV = Environment(
    loader=PackageLoader("reports", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["fmt"] = tables.fmt


# vl-convert makes the bundle in V8, which reserves far more address space than it uses
# and aborts the whole process (SIGTRAP, a C stack trace) when an address-space limit
# (`ulimit -v`, common on clusters) refuses it. Under such a limit it runs in a child.
_BUNDLE = "import sys, vl_convert; sys.stdout.write(vl_convert.javascript_bundle(vl_version=sys.argv[1]))"
NO_CHARTS = (
    "the charts are not drawn: their JavaScript could not be made here (vl-convert's "
    "V8 cannot start under this address-space limit, `ulimit -v`); the tables hold "
    "every number"
)


# The Vega-Lite version Altair writes, as vl-convert names it ("6.4").
VL_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


def address_space_limited() -> bool:
    """Whether V8 may be refused the address space it reserves (see _BUNDLE)."""
    return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY


@functools.cache
def vega_javascript() -> str | None:
    """Vega, Vega-Lite and vega-embed as one script defining ``vegaEmbed`` (about 0.9 MB);
    None where it cannot be made (see _BUNDLE). Made once per vl-convert version and kept
    in :func:`bundle_file`: making it takes V8 1-5 s, more than the rest of most reports."""
    cache = bundle_file()
    try:
        bundle = cache.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        bundle = None
    if not bundle:  # none kept yet (or an empty file, which no report wrote)
        bundle = _make_bundle()
        if bundle is None:
            return None
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, bundle)
        except OSError:
            pass  # an unwritable cache: the next report makes it again
    # "</script" would end the inline script early; in JavaScript "<\/" means "</".
    return bundle.replace("</script", "<\\/script")


def bundle_file() -> Path:
    """Where the bundle is kept: the user's cache folder ($XDG_CACHE_HOME, else
    ~/.cache), named by the vl-convert and Vega-Lite versions it depends on."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return base / "llm-pv" / f"vega-bundle-{vl_convert.__version__}-vl{VL_VERSION}.js"


def _make_bundle() -> str | None:
    if not address_space_limited():
        return vl_convert.javascript_bundle(vl_version=VL_VERSION)
    return _bundle_in_a_child(VL_VERSION)


def _bundle_in_a_child(version: str) -> str | None:
    """The bundle made by a child process that first lifts its soft address-space limit
    to the hard one; None when V8 fails there too."""

    def lift():
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))

    try:
        done = subprocess.run(
            [sys.executable, "-c", _BUNDLE, version],
            capture_output=True,
            preexec_fn=lift,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8") if done.returncode == 0 and done.stdout else None


def render_html(report: Report) -> str:
    charts = {c.id: c for c in build_charts(report)}
    js = vega_javascript()
    return ENV.get_template("report.html.j2").render(
        report=report,
        charts=charts,
        t=tables,
        study_view=study_view,
        table=table,
        program_rows=program_rows,
        vega_js=Markup(js) if js else None,
        no_charts=NO_CHARTS,
    )
