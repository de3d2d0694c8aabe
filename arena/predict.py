"""Predict pair files with one checkpoint or a weighted ensemble, with optional swap TTA.

Usage:
    python -m arena.predict ckpt=<run dir or checkpoint dir> data.test_file=test.parquet \
        output_dir=<dir>                                      # WSDM test file -> id,winner
    python -m arena.predict ckpt=<run> data.test_file=test.csv output_dir=<dir> tta=full
    python -m arena.predict ckpt=[<run0>,<run1>] weights=[2,1] combine=logit \
        data.test_file=test.csv output_dir=<dir> tta=uncertain time_budget_s=3600 device=cuda
    torchrun --nproc_per_node=2 -m arena.predict ...          # rows shared over ranks

Writes into ``output_dir``: ``submission.csv`` (WSDM ``id,winner``; LMSYS
``id,winner_model_a,winner_model_b,winner_tie``, following the input file), ``probs.parquet``
(``id``, ``prob_*``), ``summary.json`` (rows/s, TTA, metrics when the file has labels) and
Hydra's ``.hydra/``.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from arena.config import register_resolvers
from arena.inference.run import predict_run

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry; returns the summary. SIGTERM exits with status 143 through the usual
    clean-up (temporary files removed), as Ctrl-C does."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return predict_run(cfg)


if __name__ == "__main__":
    main()
