"""Pure loss modules (no Lightning): preference CE and multi-teacher distillation."""

from arena.losses.kd import DistillLoss, cosine_to_student, kl_to_student, temper_probs
from arena.losses.pairwise import LossParts, PreferenceLoss, soft_cross_entropy, to_soft_target

__all__ = [
    "DistillLoss",
    "LossParts",
    "PreferenceLoss",
    "cosine_to_student",
    "kl_to_student",
    "soft_cross_entropy",
    "temper_probs",
    "to_soft_target",
]
