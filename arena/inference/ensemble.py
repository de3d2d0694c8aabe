"""Swap test-time augmentation and weighted ensembles of predictors.

    out = Ensemble([p0, p1], weights=[2.0, 1.0]).predict(table, TTA("uncertain", fraction=0.2))
    out.probs, out.rescored               # (n, C) in the table's order; rows re-scored by TTA

Swap TTA (``TTA.mode``): ``full`` scores every row twice, as given and with A and B exchanged, and
averages the first prediction with the swapped-back second one (``swap_probs``: A <-> B, tie stays).
``uncertain`` does that only for the least confident rows (smallest ``|p_A - p_B|``, or smallest
max probability): a ``fraction`` of the rows or, with ``time_budget_s``, as many as fit in the
time the plain pass left. The cost of re-scoring a row is estimated from the plain pass (its
seconds per formatted token times the row's length, summed over members), and rows are taken
least confident first while their summed cost fits.

Ensembles: weights are normalised to sum to 1; ``combine="prob"`` is the weighted mean of the
members' probabilities, ``combine="logit"`` the softmax of the weighted mean of their log
probabilities (a renormalised weighted geometric mean). TTA applies to the combined prediction:
rows are chosen by the ensemble's confidence and every member re-scores them swapped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch

from arena.inference.predictor import Encoded, Predictor

if TYPE_CHECKING:  # the model stack loads only in from_checkpoints (streamed workers start fast)
    from arena.models.quant import Quantization

TTAMode = Literal["none", "full", "uncertain"]
Uncertainty = Literal["margin", "max_prob"]
Combine = Literal["prob", "logit"]


@dataclass(frozen=True)
class TTA:
    """Swap test-time augmentation (see the module docstring).

    Attributes:
        mode: ``none``, ``full`` or ``uncertain``.
        fraction: share of rows re-scored by ``uncertain`` (rounded up).
        time_budget_s: wall seconds for the whole ``predict`` call; when set, ``uncertain``
            re-scores as many rows as fit in what the plain pass left, and ``fraction`` is unused.
        uncertainty: ``margin`` ranks rows by ``|p_A - p_B|``, ``max_prob`` by the top probability.
    """

    mode: TTAMode = "none"
    fraction: float = 0.25
    time_budget_s: float | None = None
    uncertainty: Uncertainty = "margin"

    def __post_init__(self) -> None:
        if self.mode not in ("none", "full", "uncertain"):
            raise ValueError(f"tta must be none, full or uncertain, got {self.mode!r}")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"uncertain_fraction must lie in [0, 1], got {self.fraction}")
        if self.uncertainty not in ("margin", "max_prob"):
            raise ValueError(f"uncertainty must be margin or max_prob, got {self.uncertainty!r}")


@dataclass(frozen=True)
class Prediction:
    """Result of :meth:`Ensemble.predict`.

    Attributes:
        probs: (n, C) float64 final probabilities, rows in the table's order.
        plain: (n, C) float64 probabilities before TTA.
        rescored: (m,) int64 sorted rows re-scored with swap TTA.
        seconds: wall time of the call; plain_seconds: of its plain pass (tokenizing included).
    """

    probs: np.ndarray
    plain: np.ndarray
    rescored: np.ndarray
    seconds: float
    plain_seconds: float


def combine(log_probs: Sequence[np.ndarray], weights: Sequence[float], how: Combine) -> np.ndarray:
    """Weighted ensemble of (n, C) log probabilities -> (n, C) float64 probabilities.

    ``prob``: ``sum_k w_k p_k``; ``logit``: ``softmax(sum_k w_k log p_k)``; weights sum to 1.
    """
    w = np.asarray(weights, dtype=np.float64)
    stacked = np.stack([np.asarray(lp, dtype=np.float64) for lp in log_probs])  # (K, n, C)
    if how == "prob":
        return np.einsum("k,knc->nc", w, np.exp(stacked))
    if how == "logit":
        mixed = torch.from_numpy(np.einsum("k,knc->nc", w, stacked))
        return torch.softmax(mixed, dim=-1).numpy()
    raise ValueError(f"combine must be prob or logit, got {how!r}")


def confidence(probs: np.ndarray, uncertainty: Uncertainty) -> np.ndarray:
    """(n,) confidence of (n, C) probabilities: ``|p_A - p_B|`` or the max probability."""
    if uncertainty == "margin":
        return np.abs(probs[:, 0] - probs[:, 1])
    return probs.max(axis=1)


def select_rows(
    probs: np.ndarray, tta: TTA, row_cost: np.ndarray | None = None, seconds_left: float = 0.0
) -> np.ndarray:
    """Rows to re-score with swap TTA, sorted ascending.

    Args:
        probs: (n, C) plain probabilities.
        tta: the mode and how ``uncertain`` is sized.
        row_cost: (n,) estimated seconds to re-score each row (needed with a time budget).
        seconds_left: time left of ``tta.time_budget_s``.

    Returns:
        (m,) int64: none, all, or the least confident rows (ties by row order).
    """
    n = len(probs)
    if tta.mode == "none" or n == 0:
        return np.zeros(0, dtype=np.int64)
    if tta.mode == "full":
        return np.arange(n, dtype=np.int64)
    order = np.argsort(confidence(probs, tta.uncertainty), kind="stable")
    if tta.time_budget_s is None:
        k = min(n, math.ceil(tta.fraction * n - 1e-9))
    else:
        if row_cost is None:
            raise ValueError("a time budget needs the per-row cost")
        k = int(np.searchsorted(np.cumsum(row_cost[order]), seconds_left, side="right"))
    return np.sort(order[:k]).astype(np.int64)


class Ensemble:
    """Weighted ensemble of predictors sharing a class layout.

    Args:
        members: the predictors (one is fine).
        weights: one non-negative weight each (normalised to sum 1); None weighs them equally.
        combine: ``prob`` or ``logit`` (see :func:`combine`).
    """

    def __init__(
        self,
        members: Sequence[Predictor],
        weights: Sequence[float] | None = None,
        combine: Combine = "prob",
    ):
        if not members:
            raise ValueError("an ensemble needs at least one checkpoint")
        if len({m.n_classes for m in members}) != 1:
            raise ValueError(f"members predict different classes: {[m.n_classes for m in members]}")
        w = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(members),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"need {len(members)} non-negative weights, not all 0; got {weights}")
        if combine not in ("prob", "logit"):
            raise ValueError(f"combine must be prob or logit, got {combine!r}")
        self.members, self.weights, self.how = list(members), w / w.sum(), combine
        self.n_classes = members[0].n_classes

    @classmethod
    def from_checkpoints(
        cls,
        paths: Sequence[str | Path],
        weights: Sequence[float] | None = None,
        combine: Combine = "prob",
        *,
        cache_dir: Path,
        device: torch.device,
        quantization: Quantization | None = None,
        trust_remote_code: bool = False,
        autocast: torch.dtype | None = None,
        batch_size: int = 32,
        max_tokens: int | None = None,
        max_length: int | None = None,
        packing: bool | str = False,
    ) -> Ensemble:
        """Load checkpoint (or run) dirs, one member each.

        Args:
            paths, weights, combine: the members and how they are combined.
            cache_dir: twin tokenizers and the token cache.
            device: where the members run (k-bit weights load in place on CUDA).
            quantization: load the backbones in ``8bit``/``4bit``/``none``; None: as saved.
            trust_remote_code: allow checkpoints whose backbone runs code shipped with it.
            autocast, batch_size, max_tokens: see :class:`Predictor`.
            max_length: tokens a sequence may hold instead of the training budget's; None
                formats exactly as each checkpoint was trained.
            packing: padding-free batches for decoders: true, false, or ``auto`` (where the
                member's attention kernel skips masked blocks, see ``resolve_packing``).
        """
        # the model stack loads here only
        from arena.models.backbone import resolve_packing
        from arena.models.checkpoint import load_checkpoint

        kbit = quantization not in (None, "none") and device.type == "cuda"
        members = []
        for path in paths:
            loaded = load_checkpoint(
                Path(path),
                cache_dir=cache_dir,
                quantization=quantization,
                device_map={"": str(device)} if kbit else None,
                trust_remote_code=trust_remote_code,
                max_length=max_length,
            )
            members.append(
                Predictor.from_loaded(
                    *loaded,
                    cache_dir=cache_dir,
                    device=device,
                    autocast=autocast,
                    batch_size=batch_size,
                    max_tokens=max_tokens,
                    max_length=max_length,
                    packing=resolve_packing(packing, loaded[2].backbone),
                )
            )
        return cls(members, weights, combine)

    def predict(self, df: pd.DataFrame, tta: TTA | None = None) -> Prediction:
        """Score every row of ``df`` (plain pass, then swap TTA on the chosen rows)."""
        tta = tta or TTA()
        start = time.perf_counter()
        encoded, plain, row_cost = self.score_plain(df)
        plain_seconds = time.perf_counter() - start
        left = (tta.time_budget_s or 0.0) - plain_seconds
        chosen = self.broadcast(select_rows(plain, tta, row_cost, left))
        probs = plain.copy()
        if len(chosen):
            probs[chosen] = (plain[chosen] + self.score_swapped(encoded, chosen)) / 2
        return Prediction(probs, plain, chosen, time.perf_counter() - start, plain_seconds)

    def score_plain(self, df: pd.DataFrame) -> tuple[list[Encoded], np.ndarray, np.ndarray]:
        """Every member's encoding of ``df``, the combined (n, C) probabilities of the rows as
        given, and the (n,) seconds a swapped pass over each row should take (each member's
        model time spread over its rows by formatted length; tokens are re-used then)."""
        rows = np.arange(len(df), dtype=np.int64)
        encoded, parts = [], []
        row_cost = np.zeros(len(df))
        for member in self.members:
            encoded.append(member.encode(df))
            began = time.perf_counter()
            parts.append(member.log_probs(encoded[-1], rows))
            lengths = encoded[-1].lengths.astype(np.float64)
            row_cost += (time.perf_counter() - began) * lengths / max(lengths.sum(), 1.0)
        return encoded, combine(parts, self.weights, self.how), row_cost

    def score_swapped(self, encoded: Sequence[Encoded], rows: np.ndarray) -> np.ndarray:
        """(len(rows), C) combined probabilities of ``rows`` scored A/B-swapped, swapped back."""
        pairs = zip(self.members, encoded, strict=True)
        swapped = [m.log_probs(e, rows, swapped=True) for m, e in pairs]
        return combine(swapped, self.weights, self.how)

    def broadcast(self, rows: np.ndarray) -> np.ndarray:
        """Rank 0's choice on every rank (timings, hence time-budget choices, differ by rank)."""
        if self.members[0].world == 1:
            return rows
        box = [rows]
        torch.distributed.broadcast_object_list(box, src=0)
        return np.asarray(box[0], dtype=np.int64)
