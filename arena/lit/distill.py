"""``DistillModule``: a student trained against N teachers' out-of-fold probabilities.

Training batches carry ``teachers`` of shape (B, N, C), already swapped with the pair when the
sampler drew the swapped order; validation is the classifier's (CE and metrics, no teachers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from arena.lit.classifier import Batch, ClassifierModule
from arena.losses import DistillLoss


class DistillModule(ClassifierModule):
    """Student of :class:`arena.losses.DistillLoss`; every other argument as the classifier.

    Args:
        loss: the distillation loss (its ``n_teachers`` must match the data's teachers).
    """

    def __init__(
        self,
        model_factory: Callable[[], torch.nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        loss: DistillLoss,
        **kwargs: Any,
    ):
        super().__init__(model_factory, optimizer, loss=loss, **kwargs)

    def compute_loss(
        self, loss_fn: torch.nn.Module, logits: torch.Tensor, batch: Batch, stage: str
    ) -> dict[str, torch.Tensor]:
        if stage != "train":
            return super().compute_loss(loss_fn, logits, batch, stage)
        if "teachers" not in batch:
            raise ValueError("DistillModule needs teacher probabilities: set data.teachers")
        teachers = batch["teachers"].transpose(0, 1)  # (B, N, C) -> (N, B, C)
        return loss_fn(logits, batch["target"], teachers).parts
