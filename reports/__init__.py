"""The analysis layer: SQL analyses, charts and the HTML report over a run database.

Depends on ``tracker`` only (never on ``synth``). Entry points: :func:`build_report` (the
page or the text) and :func:`analyse` (the same analyses as plain Python data).
"""

from reports.build import analyse, build_report
from reports.errors import ReportError

__all__ = ["ReportError", "analyse", "build_report"]
