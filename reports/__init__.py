"""The analysis layer: SQL analyses, charts and the HTML report over a run database.

Depends on ``tracker`` only (never on ``synth``). Entry point: :func:`build_report`.
"""

from reports.build import build_report
from reports.errors import ReportError

__all__ = ["ReportError", "build_report"]
