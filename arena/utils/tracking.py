"""Experiment tracking: loggers from config, W&B offline when no key is configured, and the
end-of-run artifacts (OOF table, confusion matrix)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig

from arena.utils.secrets import SECRET_ENV, scrub, scrubbed_argv

log = logging.getLogger(__name__)

__all__ = [
    "SECRET_ENV",
    "close",
    "git_commit",
    "log_oof",
    "make_loggers",
    "scrub",
    "wandb_has_key",
]


def wandb_has_key() -> bool:
    """True when an API key is configured (environment or ~/.netrc); never prompts."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def make_loggers(cfg: DictConfig) -> list[Logger]:
    """Instantiate ``cfg.logger``'s entries; W&B goes offline unless a key or WANDB_MODE says."""
    loggers: list[Logger] = []
    for name, lcfg in (cfg.get("logger") or {}).items():
        kwargs: dict[str, Any] = {}
        if name == "wandb" and not os.environ.get("WANDB_MODE") and not wandb_has_key():
            log.info("no W&B API key configured: logging offline (upload with `wandb sync`)")
            kwargs["offline"] = True
        logger = instantiate(lcfg, **kwargs)
        if isinstance(logger, WandbLogger):
            # Lightning 2.6 always passes wandb.init an ``anonymous`` argument, which wandb 0.31
            # warns has no effect whatever its value ("The anonymous setting has no effect")
            logger._wandb_init.pop("anonymous", None)
            with scrubbed_argv():  # W&B records the command line when its run starts
                logger.experiment  # noqa: B018 (starts the run; a no-op off rank 0)
        loggers.append(logger)
    return loggers


def git_commit(root: str | Path) -> str | None:
    """The commit of the code that runs (``-dirty`` when the work tree has changes), if any."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty.strip() else "")


def log_oof(loggers: list[Logger], oof: pd.DataFrame, labels: np.ndarray) -> None:
    """OOF table and confusion matrix to W&B (other loggers keep them in the run dir)."""
    for lg in loggers:
        if not isinstance(lg, WandbLogger):
            continue
        import wandb

        lg.log_table(key="val/oof", dataframe=oof)
        probs = oof.filter(like="prob_").to_numpy()
        names = [c.removeprefix("prob_") for c in oof.filter(like="prob_").columns]
        lg.experiment.log(
            {
                "val/confusion_matrix": wandb.plot.confusion_matrix(
                    y_true=labels.tolist(), preds=probs.argmax(1).tolist(), class_names=names
                )
            }
        )


def close(loggers: list[Logger], exit_code: int = 0) -> None:
    """Finish every logger with the run's exit status, W&B included, even after an error.

    Args:
        exit_code: 0 for a finished run, 128 + the signal's number for one a signal stopped
            (130 Ctrl-C, 143 SIGTERM), 1 for an error; W&B records it and marks the run failed
            unless it is 0.
    """
    for lg in loggers:
        lg.finalize("success" if exit_code == 0 else "failed")
        if isinstance(lg, WandbLogger):
            import wandb

            wandb.finish(exit_code=exit_code)
