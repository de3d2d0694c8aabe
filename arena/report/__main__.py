"""Compare training runs (a sweep's folds and hyper-parameters) as a static HTML report.

Usage:
    python -m arena.report runs=<sweep dir> output_dir=<dir>
    python -m arena.report runs=[<run dir>,<run dir>,...] output_dir=<dir> metric=val/acc
    python -m arena.report runs=[logs/train/minilm_cpu] output_dir=<dir> mode=min

A run dir holds ``summary.json`` with ``val/acc`` and ``val/log_loss`` (``python -m arena.train``,
the baselines) or an offline W&B run; any other dir is searched for run dirs. Writes into
``output_dir``: ``index.html`` (configs with mean ± std over folds and the best one marked,
runs per fold, per-hyper-parameter and per-language plots, swap consistency, calibration,
W&B training curves), its PNGs, ``runs.csv`` (one row per run), ``best.json`` (the best config
by ``metric``, collapsed configs excluded) and Hydra's ``.hydra/``.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig

from arena.report.build import build_report
from arena.utils.config import register_resolvers

register_resolvers()
log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="report")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry; returns the content of ``best.json``."""
    runs = list(cfg.runs) if isinstance(cfg.runs, ListConfig) else [str(cfg.runs)]
    best = build_report(runs, cfg.output_dir, cfg.metric, cfg.mode, cfg.title)
    log.info(
        "best config by %s: %s = %.4f (report: %s/index.html)",
        best["metric"],
        best["config"],
        best["value"],
        cfg.output_dir,
    )
    return best


if __name__ == "__main__":
    main()
