"""The analysis layer: SQL analyses, charts and the HTML report over a run database.

Depends on ``tracker`` only (never on ``synth``). Entry points: :func:`build_report` (the
page or the text), :func:`analyse` (the same analyses as plain Python data) and
:func:`frames` (the main tables as pandas DataFrames; pandas only when called).
"""

from reports.build import analyse, build_report
from reports.errors import ReportError
from reports.frames import frames

__all__ = ["ReportError", "analyse", "build_report", "frames"]
