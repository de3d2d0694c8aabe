"""Validation metrics: torchmetrics collections synced under DDP, plus whole-epoch checks.

Keys: ``val/acc``, ``val/log_loss`` (the LMSYS metric), ``val/auroc``, ``val/ece``,
``val/swap_consistency`` and, with swap TTA, the same with a ``_tta`` suffix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCalibrationError,
)
from torchmetrics.functional.classification import multiclass_auroc


class LogLoss(MeanMetric):
    """Mean negative log-likelihood of the true class, probabilities clipped like Kaggle's."""

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        p = probs.gather(1, target[:, None]).squeeze(1).clamp(1e-15, 1.0)
        super().update(-p.log())


def make_metrics(n_classes: int) -> MetricCollection:
    """Metrics over (B, C) probabilities and (B,) int labels."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(n_classes, average="micro"),
            "log_loss": LogLoss(),
            "auroc": MulticlassAUROC(n_classes),
            "ece": MulticlassCalibrationError(n_classes, n_bins=10),
        }
    )


def prior_entropy(labels: np.ndarray, n_classes: int) -> float:
    """Log loss of always predicting the class frequencies of ``labels``."""
    freq = np.bincount(labels, minlength=n_classes) / max(len(labels), 1)
    return float(-sum(f * math.log(f) for f in freq if f > 0))


def collapse_check(
    probs: np.ndarray,
    labels: np.ndarray,
    log_loss: float,
    tol: float = 0.005,
    min_auroc: float = 0.55,
) -> dict[str, float | bool]:
    """Did the model learn nothing, or only fail to beat the prior's log loss?

    ``beats_prior``: log loss at least ``tol`` below the prior's entropy (what always predicting
    the label frequencies scores). ``collapsed`` (learned nothing): the predicted probabilities
    barely vary (every class's std < 0.01), or the log loss does not beat the prior and the
    predictions do not rank the classes either (macro one-vs-rest AUROC < ``min_auroc``; without
    signal it is 0.5, with a std of ~0.015 on a thousand rows). A run that ranks well but is
    overconfident is bad, not collapsed: ``beats_prior`` false, ``collapsed`` false.

    Args:
        probs: (n, C) predicted probabilities; labels: (n,) int.
    """
    prior = prior_entropy(labels, probs.shape[1])
    spread = float(probs.std(axis=0).max()) if len(probs) else 0.0
    beats_prior = log_loss <= prior - tol
    ranks = ranking_auroc(probs, labels) >= min_auroc  # False when undefined (one class)
    return {
        "collapsed": bool(spread < 0.01 or not (beats_prior or ranks)),
        "beats_prior": bool(beats_prior),
        "prior_log_loss": prior,
        "prob_spread": spread,
    }


def ranking_auroc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes present in ``labels`` (NaN with fewer than 2)."""
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    per_class = multiclass_auroc(
        torch.tensor(probs, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.long),
        probs.shape[1],
        average=None,
    )
    return float(per_class[torch.from_numpy(present).long()].mean())


def check_warning(checks: dict[str, Any], log_loss: float, step: int | None = None) -> str | None:
    """The warning a run's :func:`collapse_check` result deserves, or None.

    Args:
        step: the global step of a validation during fit: the warning says how things stand so
            far (a run that goes on to learn starts at the prior). None: the final judgement.
    """
    versus = f"log loss {log_loss:.4f} vs prior {checks['prior_log_loss']:.4f}"
    if checks["collapsed"]:
        if step is not None:
            return (
                f"after {step} steps the validation predictions still sit at the class prior "
                f"({versus})"
            )
        return f"validation predictions sit at the class prior ({versus}): nothing was learned"
    if not checks["beats_prior"]:
        if step is not None:
            return (
                f"after {step} steps the validation log loss does not beat the class prior's yet "
                f"({versus}) although the predictions rank the classes"
            )
        return (
            f"validation log loss does not beat the class prior's ({versus}) although the "
            "predictions rank the classes: overconfident or miscalibrated"
        )
    return None


def per_group_accuracy(
    pred: np.ndarray, labels: np.ndarray, groups: np.ndarray
) -> dict[str, float]:
    """Accuracy within each value of ``groups`` (e.g. language)."""
    return {
        str(g): float((pred[groups == g] == labels[groups == g]).mean()) for g in np.unique(groups)
    }
