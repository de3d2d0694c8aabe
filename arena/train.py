"""Train a pairwise preference model.

Usage:
    python -m arena.train                                  # CPU quickstart (synthetic data)
    python -m arena.train experiment=minilm_cpu data.train_files=[a.parquet,b.parquet]
    python -m arena.train -m experiment=minilm_cpu data.fold=0,1,2,3,4   # K-fold as a sweep
    python -m arena.train experiment=distill_gemma9b plan=true           # plan only, no download
    python -m arena.train ckpt_path=last hydra.run.dir=<run dir>         # resume a run

Writes into the run dir: ``.hydra/config.yaml``, ``summary.json``, ``oof.parquet`` and
``checkpoints/`` (resumable ``last.ckpt`` and the final trained weights in ``final/``).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from arena.config import register_resolvers
from arena.runner import plan_run, train_run

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry; returns the optimized metric so that sweeps can use it."""
    if cfg.plan:
        plan_run(cfg)
        return None
    return train_run(cfg)


if __name__ == "__main__":
    main()
