"""Self-contained, offline HTML reports from saved analysis results (one page per result, an index, plotly.js)."""

from .builder import ReportError, build_report, find_result_dirs
from .registry import result_class

__all__ = ["build_report", "find_result_dirs", "ReportError", "result_class"]
