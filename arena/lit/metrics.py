"""Validation metrics: torchmetrics collections synced under DDP, plus whole-epoch checks.

Keys: ``val/acc``, ``val/log_loss`` (the LMSYS metric), ``val/auroc``, ``val/ece``,
``val/swap_consistency`` and, with swap TTA, the same with a ``_tta`` suffix.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCalibrationError,
)


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
    probs: np.ndarray, labels: np.ndarray, log_loss: float, tol: float = 0.005
) -> dict[str, float | bool]:
    """Did the model learn nothing? True when its predictions sit at the class prior.

    A run is flagged ``collapsed`` when the spread of its predicted probabilities is tiny
    (std of every class probability < 0.01) or its log loss is within ``tol`` of the prior's
    entropy (what always predicting the label frequencies scores).

    Args:
        probs: (n, C) predicted probabilities; labels: (n,) int.
    """
    prior = prior_entropy(labels, probs.shape[1])
    spread = float(probs.std(axis=0).max()) if len(probs) else 0.0
    return {
        "collapsed": bool(spread < 0.01 or log_loss > prior - tol),
        "prior_log_loss": prior,
        "prob_spread": spread,
    }


def per_group_accuracy(
    pred: np.ndarray, labels: np.ndarray, groups: np.ndarray
) -> dict[str, float]:
    """Accuracy within each value of ``groups`` (e.g. language)."""
    return {
        str(g): float((pred[groups == g] == labels[groups == g]).mean()) for g in np.unique(groups)
    }
