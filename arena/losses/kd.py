"""Multi-teacher knowledge distillation: CE + per-teacher KL and cosine terms.

With ``n_teachers`` teachers of weight ``w_t``::

    total = (w_ce * CE + sum_t w_t * (kl_w * KL_t + cos_w * COS_t)) / norm
    norm  = w_ce + sum_t w_t * (kl_w + cos_w)      if normalize else 1

With unit weights this is ``(CE + KL_1 + COS_1 + KL_2 + COS_2) / 5`` for two teachers and the
same sum over 7 for three.

Temperature convention. Teachers are stored as *probabilities* (out-of-fold files), not logits,
so a teacher at temperature T is ``p_t ** (1 / T)`` renormalised, which equals
``softmax(log p_t / T)``, i.e. exactly ``softmax(z_t / T)`` had the logits ``z_t`` been kept. The
student is ``q = softmax(z / T)``. ``KL_t = T**2 * sum_c p_t,c (log p_t,c - log q_c)`` (the
Hinton convention: the T**2 factor keeps gradient magnitudes comparable across temperatures).
``COS_t = 1 - cos_sim(q, p_t)`` at the same temperature, *not* scaled by T**2. Zero teacher
probabilities contribute 0 to KL (``xlogy``). Both terms are averaged over the batch.

Usage::

    loss = DistillLoss(n_teachers=2, temperature=2.0)
    parts = loss(logits, labels, teacher_probs)   # (B, C), (B,) or (B, C), (N, B, C)
    parts.total.backward(); parts["kl/0"]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arena.losses.pairwise import LossParts, soft_cross_entropy


def temper_probs(probs: Tensor, temperature: float) -> Tensor:
    """Sharpen (T < 1) or soften (T > 1) probabilities: ``p ** (1 / T)`` renormalised.

    Args:
        probs: (..., C) non-negative probabilities (zeros allowed).
        temperature: T > 0.

    Returns:
        (..., C) float32 probabilities summing to 1 along the last axis.
    """
    p = probs.float().clamp_min(0.0)
    if temperature != 1.0:
        p = p.pow(1.0 / temperature)
    return p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)


def kl_to_student(teacher: Tensor, logits: Tensor, temperature: float) -> Tensor:
    """``T**2 * KL(teacher || softmax(logits / T))`` averaged over the batch.

    Args:
        teacher: (B, C) teacher probabilities, already at temperature T.
        logits: (B, C) student logits.
        temperature: T > 0.

    Returns:
        Scalar tensor.
    """
    log_q = F.log_softmax(logits.float() / temperature, dim=-1)
    per_row = (torch.xlogy(teacher, teacher) - teacher * log_q).sum(-1)  # (B,)
    return per_row.mean() * temperature**2


def cosine_to_student(teacher: Tensor, logits: Tensor, temperature: float) -> Tensor:
    """``1 - cos_sim(softmax(logits / T), teacher)`` averaged over the batch.

    Args:
        teacher: (B, C) teacher probabilities, already at temperature T.
        logits: (B, C) student logits.
        temperature: T > 0.

    Returns:
        Scalar tensor in [0, 1] (both vectors are non-negative).
    """
    q = F.softmax(logits.float() / temperature, dim=-1)
    return (1.0 - F.cosine_similarity(q, teacher, dim=-1, eps=1e-8)).mean()


class DistillLoss(nn.Module):
    """CE on labels plus KL and cosine terms towards each teacher's probabilities.

    Args:
        n_teachers: N, the number of teachers given to :meth:`forward` (0 means CE only).
        ce_weight: weight of the CE term.
        teacher_weights: N weights, one per teacher; ``None`` means all 1.
        kl_weight: weight of every KL term (inside each teacher's weight).
        cos_weight: weight of every cosine term (inside each teacher's weight).
        temperature: T > 0 for student and teachers (see the module docstring; KL is scaled
            by T**2, cosine is not).
        normalize: divide by ``ce_weight + sum_t w_t * (kl_weight + cos_weight)``.
        label_smoothing: eps for the CE term.
    """

    def __init__(
        self,
        n_teachers: int,
        ce_weight: float = 1.0,
        teacher_weights: Sequence[float] | None = None,
        kl_weight: float = 1.0,
        cos_weight: float = 1.0,
        temperature: float = 1.0,
        normalize: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        weights = [1.0] * n_teachers if teacher_weights is None else list(teacher_weights)
        if n_teachers < 0 or len(weights) != n_teachers:
            raise ValueError(f"need {n_teachers} teacher_weights, got {len(weights)}")
        if temperature <= 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        norm = ce_weight + sum(w * (kl_weight + cos_weight) for w in weights)
        if normalize and norm <= 0.0:
            raise ValueError("the weights sum to 0; nothing to normalise by")
        self.n_teachers = n_teachers
        self.ce_weight = ce_weight
        self.teacher_weights = tuple(float(w) for w in weights)
        self.kl_weight = kl_weight
        self.cos_weight = cos_weight
        self.temperature = temperature
        self.label_smoothing = label_smoothing
        self.normalizer = norm if normalize else 1.0

    def forward(
        self, logits: Tensor, labels: Tensor, teacher_probs: Tensor | None = None
    ) -> LossParts:
        """Compute the loss.

        Args:
            logits: (B, C) student logits, C in {2, 3}.
            labels: (B,) int labels (``-1`` ignored by CE) or (B, C) float soft targets.
            teacher_probs: (N, B, C) teacher probabilities in class order; ``None`` when N = 0.

        Returns:
            :class:`LossParts` with ``total``, ``ce``, ``kl/<i>``, ``cos/<i>`` for each teacher
            i, and ``kl``, ``cos``: the teacher-weighted means of the per-teacher terms (for
            logging; 0 when N = 0).

        Raises:
            ValueError: when ``teacher_probs`` is not (N, B, C).
        """
        ce = soft_cross_entropy(logits, labels, self.label_smoothing)
        probs = self._checked_teachers(logits, teacher_probs)
        parts: dict[str, Tensor] = {"ce": ce}
        total = self.ce_weight * ce
        zero = logits.new_zeros((), dtype=torch.float32)
        kl_sum, cos_sum = zero, zero
        for i, w in enumerate(self.teacher_weights):
            teacher = temper_probs(probs[i], self.temperature)
            kl = kl_to_student(teacher, logits, self.temperature)
            cos = cosine_to_student(teacher, logits, self.temperature)
            parts[f"kl/{i}"], parts[f"cos/{i}"] = kl, cos
            total = total + w * (self.kl_weight * kl + self.cos_weight * cos)
            kl_sum, cos_sum = kl_sum + w * kl, cos_sum + w * cos
        w_sum = sum(self.teacher_weights)
        parts["kl"] = kl_sum / w_sum if w_sum else zero
        parts["cos"] = cos_sum / w_sum if w_sum else zero
        total = total / self.normalizer
        parts["total"] = total
        return LossParts(total=total, parts=parts)

    def _checked_teachers(self, logits: Tensor, teacher_probs: Tensor | None) -> Tensor:
        expected = (self.n_teachers, *logits.shape)
        if self.n_teachers == 0 and teacher_probs is None:
            return logits.new_zeros(expected)
        if teacher_probs is None or tuple(teacher_probs.shape) != expected:
            got = None if teacher_probs is None else tuple(teacher_probs.shape)
            raise ValueError(f"teacher_probs must have shape {expected} (N, B, C), got {got}")
        return teacher_probs
