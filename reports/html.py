"""The report as one HTML file that works with no network.

One Jinja template (autoescaped) holds the tables and the chart specs; Vega, Vega-Lite
and vega-embed are inlined once, from vl-convert's bundle, at the Vega-Lite version
Altair writes. Nothing in the page refers to a URL: no CDN, no web font, no schema.
"""

from __future__ import annotations

import functools

import altair as alt
import vl_convert
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from reports import tables
from reports.analyses import Report
from reports.charts import build_charts

ENV = Environment(
    loader=PackageLoader("reports", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["fmt"] = tables.fmt


@functools.cache
def vega_javascript() -> str:
    """Vega, Vega-Lite and vega-embed as one script defining ``vegaEmbed`` (about 0.9 MB)."""
    version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    # "</script" would end the inline script early; in JavaScript "<\/" means "</".
    return vl_convert.javascript_bundle(vl_version=version).replace("</script", "<\\/script")


def render_html(report: Report) -> str:
    charts = {c.id: c for c in build_charts(report)}
    return ENV.get_template("report.html.j2").render(
        report=report, charts=charts, t=tables, vega_js=Markup(vega_javascript()),
    )  # fmt: skip
