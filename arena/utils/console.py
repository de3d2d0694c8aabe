"""What the commands print: warnings into the job's log file, the run's one-line result.

The known third-party start-up noise is dropped message by message in ``arena/__init__.py``,
before those libraries load; which loggers reach the log file is ``hydra.job_logging`` in
``conf/hydra/default.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from lightning_utilities.core.rank_zero import rank_zero_only
from omegaconf import DictConfig

# the metrics a training run's last line shows, in this order
HEADLINE = ("val/acc", "val/log_loss", "val/swap_consistency")


class LogWarnings(Callback):
    """Hydra callback: Python warnings go through the ``py.warnings`` logger while the job runs,
    so that the job's log file holds them as well as the console (``hydra.callbacks`` in
    ``conf/hydra/default.yaml``)."""

    def __init__(self) -> None:
        self.strip = _StripNewline()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        logging.getLogger("py.warnings").addFilter(self.strip)
        logging.captureWarnings(True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        logging.captureWarnings(False)
        logging.getLogger("py.warnings").removeFilter(self.strip)


class _StripNewline(logging.Filter):
    """A captured warning's text ends with a newline (``warnings.formatwarning``'s): without it,
    each record is one line, not one line and a blank one."""

    def filter(self, record: logging.LogRecord) -> bool:
        # the text is the message (Python >= 3.11) or its one argument ("%s", before)
        if isinstance(record.msg, str):
            record.msg = record.msg.rstrip("\n")
        if isinstance(record.args, tuple):
            record.args = tuple(a.rstrip("\n") if isinstance(a, str) else a for a in record.args)
        return True


def log_run_dir(log: logging.Logger, run_dir: Path) -> None:
    """``run dir: <absolute path>``, once per run (the first rank's), as the run starts."""
    # set when Lightning is imported, from the launcher's environment (RANK, LOCAL_RANK, ...)
    if getattr(rank_zero_only, "rank", 0) == 0:
        log.info("run dir: %s", Path(run_dir).resolve())


def result_line(summary: Mapping[str, Any], run_dir: Path) -> str:
    """A finished run in one line:
    ``val/acc 0.812  val/log_loss 0.431  val/swap_consistency 0.950  (collapsed: no) -> <run dir>``.
    """
    parts = [f"{k} {summary[k]:.3f}" for k in HEADLINE if summary.get(k) is not None]
    if not parts:
        parts = [f"no validation metrics after {summary.get('global_step', '?')} steps"]
    if "collapsed" in summary:
        parts.append(f"(collapsed: {'YES' if summary['collapsed'] else 'no'})")
    return f"{'  '.join(parts)} -> {Path(run_dir).resolve()}"
