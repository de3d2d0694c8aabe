"""Cross-entropy for pairwise preference, on hard or soft targets.

Classes are ordered ``[model_a, model_b(, tie)]`` as in :mod:`arena.data.schema`. Hard labels of
``-1`` (unlabeled) are ignored, so a batch that mixes labelled and teacher-only rows trains
without a special case.

Usage::

    loss = PreferenceLoss(label_smoothing=0.05)
    parts = loss(logits, labels)        # logits (B, C), labels (B,) int or (B, C) float
    parts.total.backward()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class LossParts:
    """A loss value and its named components.

    Attributes:
        total: scalar tensor to call ``backward()`` on.
        parts: named scalar tensors, ``parts["total"] is total``; keys depend on the loss
            (``ce``; ``kl``, ``cos``, ``kl/<i>``, ``cos/<i>`` for distillation).
    """

    total: Tensor
    parts: dict[str, Tensor]

    def __getitem__(self, name: str) -> Tensor:
        return self.parts[name]

    def detached(self) -> dict[str, float]:
        """Every part as a Python float, for logging."""
        return {k: float(v.detach()) for k, v in self.parts.items()}


def to_soft_target(target: Tensor, n_classes: int) -> Tensor:
    """Turn hard labels into one-hot rows; pass soft targets through.

    Args:
        target: (B,) integer labels (``-1`` = unlabeled) or (B, C) float probabilities.
        n_classes: C.

    Returns:
        (B, C) float target; unlabeled rows are all zero.

    Raises:
        ValueError: on a shape that is neither (B,) nor (B, n_classes).
    """
    if target.dim() == 1 and not target.is_floating_point():
        out = torch.zeros(target.shape[0], n_classes, device=target.device)
        valid = target >= 0
        out[valid] = F.one_hot(target[valid].long(), n_classes).float()
        return out
    if target.dim() != 2 or target.shape[1] != n_classes:
        raise ValueError(
            f"target must be (B,) int or (B, {n_classes}) float, got {tuple(target.shape)} "
            f"{target.dtype}"
        )
    return target.float()


def soft_cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean of ``-sum_c p_c log softmax(z)_c`` over the rows that carry a target.

    Label smoothing mixes each target row with the uniform distribution:
    ``p <- (1 - eps) p + eps / C`` (the same convention as ``F.cross_entropy``).

    Args:
        logits: (B, C) student logits.
        target: (B,) int labels (``-1`` ignored) or (B, C) float probabilities (all-zero rows
            ignored).
        label_smoothing: eps in [0, 1).

    Returns:
        Scalar tensor; 0 (with a gradient path) when no row carries a target.
    """
    n_classes = logits.shape[-1]
    p = to_soft_target(target, n_classes)
    mass = p.sum(-1, keepdim=True)  # (B, 1): 1 for labelled rows, 0 for ignored ones
    if label_smoothing > 0.0:
        p = (1.0 - label_smoothing) * p + label_smoothing * mass / n_classes
    per_row = -(p * F.log_softmax(logits.float(), dim=-1)).sum(-1)  # (B,)
    n_valid = (mass.squeeze(-1) > 0).sum().clamp_min(1)
    return per_row.sum() / n_valid


class PreferenceLoss(nn.Module):
    """Cross-entropy on hard labels or soft targets.

    Args:
        label_smoothing: eps in [0, 1); targets become ``(1 - eps) p + eps / C``.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> LossParts:
        """Compute the loss.

        Args:
            logits: (B, C) student logits, C in {2, 3}.
            target: (B,) int labels (``-1`` ignored) or (B, C) float probabilities.

        Returns:
            :class:`LossParts` with parts ``total`` and ``ce`` (equal here).
        """
        ce = soft_cross_entropy(logits, target, self.label_smoothing)
        return LossParts(total=ce, parts={"total": ce, "ce": ce})
