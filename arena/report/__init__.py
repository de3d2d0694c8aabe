"""Reports: EDA statistics of pair files and comparisons of training runs (``python -m
arena.report``), shared by the notebooks in ``notebooks/``."""

from arena.report.build import build_report
from arena.report.compare import aggregate, language_accuracy, load_history, load_oof, pick_best
from arena.report.runs import RunTable, find_runs, load_runs

__all__ = [
    "RunTable",
    "aggregate",
    "build_report",
    "find_runs",
    "language_accuracy",
    "load_history",
    "load_oof",
    "load_runs",
    "pick_best",
]
