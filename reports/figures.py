"""The report's charts as files for a paper: SVG, PNG and PDF, drawn by vl-convert
(Vega in V8, no browser) from the same specs the HTML page embeds.

Each chart is written as ``<chart id>.<format>`` (``accuracy-by-length.pdf``...), names
that stay the same from one report to the next, so a paper's build can pick them up.
"""

from __future__ import annotations

from pathlib import Path

import vl_convert

from reports.analyses import Report
from reports.charts import build_charts
from reports.errors import ReportError
from reports.html import VL_VERSION, address_space_limited
from tracker.files import write_all_atomic

PNG_SCALE = 2  # pixels per CSS pixel: about 200 dpi at the charts' printed size
# Vega draws each chart once, as SVG, and the PNG and PDF are made from that SVG (as
# vl-convert makes them itself, without running Vega in V8 twice more: the same PNG).
FORMATS = {
    "svg": lambda svg: svg,
    "png": lambda svg: vl_convert.svg_to_png(svg, scale=PNG_SCALE),
    "pdf": vl_convert.svg_to_pdf,
}


def write_figures(report: Report, folder: Path) -> list[Path]:
    """Every chart in every format, written into ``folder`` all or none; returns the
    paths, chart by chart."""
    if address_space_limited():
        raise ReportError(
            "cannot draw figures under an address-space limit (`ulimit -v`): vl-convert's V8 "
            "would abort; lift the limit for this command"
        )
    files = {}
    for chart in build_charts(report):
        svg = vl_convert.vegalite_to_svg(chart.spec, vl_version=VL_VERSION)
        files.update({folder / f"{chart.id}.{ext}": convert(svg) for ext, convert in FORMATS.items()})
    write_all_atomic(files)
    return list(files)
