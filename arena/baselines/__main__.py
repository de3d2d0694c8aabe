"""Score a non-neural baseline on one fold, written like a training run.

Usage:
    python -m arena.baselines data.train_files=[a.parquet,b.parquet] data.fold=0 baseline=length
    python -m arena.baselines -m data.train_files=[...] data.fold=0,1,2,3,4 baseline=length,tfidf
    python -m arena.baselines data.synthetic={n:2000} baseline=tfidf baseline.C=4

Baselines: ``length`` (calibrated log length difference; also reports the raw "longer response
wins" accuracy) and ``tfidf`` (TF-IDF difference features + logistic regression, trained on both
A/B orders). The ``data`` and ``paths`` groups are the training run's, so files, column mappings,
dedup and folds are identical. Writes into the run dir ``.hydra/``, ``summary.json`` and
``oof.parquet`` with the keys of a training run, so ``arena.report`` compares them with models.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from arena.baselines.fit import baseline_run
from arena.utils.config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../../conf", config_name="baselines")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry; returns the optimized metric so that sweeps can use it."""
    return baseline_run(cfg)


if __name__ == "__main__":
    main()
