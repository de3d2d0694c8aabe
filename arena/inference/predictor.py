"""One checkpoint scoring pair tables: length-sorted token-budget batches, rows put back in order.

A :class:`Predictor` formats pairs exactly as its checkpoint was trained (the ``template``,
``budget`` and ``feature_normalizer`` of its :class:`arena.models.spec.CheckpointSpec`) with its
own tokenizer.

Data parallel: with ``world > 1`` (defaults from ``torch.distributed`` when it is initialised)
rank ``r`` scores every ``world``-th row of the length-sorted order (a balanced share of tokens,
see :func:`arena.data.batching.sorted_batches`); :meth:`Predictor.log_probs` all-gathers the
shares, so every rank gets the full result.

    predictor = Predictor.from_checkpoint(run_dir, cache_dir=Path(".cache/arena"), max_tokens=8192)
    encoded = predictor.encode(table)
    log_p = predictor.log_probs(encoded, np.arange(len(table)))       # (n, C)
    log_p_swapped_back = predictor.log_probs(encoded, rows, swapped=True)
    probs = predictor.predict(table)      # (n, C) as given; swap TTA: arena.inference.Ensemble
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import torch

from arena.data.batching import Collator, dist_info, model_inputs, sorted_batches
from arena.data.dataset import Layout, PairArrays, PairDataset
from arena.data.feature_sets import FeatureNormalizer
from arena.data.format import Budget, Formatter, Template
from arena.data.swap import swap_probs
from arena.data.tokenize import cached_tokenize

if TYPE_CHECKING:  # the model stack loads only where checkpoints do (streamed workers start fast)
    from arena.models.preference import PreferenceModel
    from arena.models.spec import CheckpointSpec


@dataclass(frozen=True)
class Encoded:
    """A pair table ready for one predictor.

    Attributes:
        dataset: both orders of every row (index ``n + i`` is row ``i`` swapped).
        lengths: (n,) int64 formatted length of every row (the same in both orders).
    """

    dataset: PairDataset
    lengths: np.ndarray


class Predictor:
    """One checkpoint, ready to score pair tables.

    Args:
        model: the trained model (moved to ``device`` and put in eval mode here).
        tokenizer: its tokenizer (pad token and padding side are used).
        template, budget: how pairs were formatted in training.
        n_classes: 2 or 3.
        normalizer: feature standardisation when the model takes engineered features (its
            featurizer computes them: the set and encoder the model was trained with).
        device: where to run; autocast: dtype for ``torch.autocast`` or None (full precision).
        batch_size: most rows per batch; max_tokens: padded-token cap per batch or None.
        cache_dir: token cache (None tokenizes every time).
        rank, world: data-parallel share; None reads ``torch.distributed``.
        layout: ``siamese`` for a siamese model (two sequences per pair), else ``joint``.
        packing: padding-free batches (:func:`arena.data.batching.pack`): ``max_tokens`` then
            counts real tokens, in rows of the budget's ``max_length``; same probabilities.
    """

    def __init__(
        self,
        model: PreferenceModel,
        tokenizer: Any,
        template: Template,
        budget: Budget,
        *,
        n_classes: int,
        normalizer: FeatureNormalizer | None = None,
        device: str | torch.device = "cpu",
        autocast: torch.dtype | None = None,
        batch_size: int = 32,
        max_tokens: int | None = None,
        cache_dir: Path | None = None,
        rank: int | None = None,
        world: int | None = None,
        layout: Layout = "joint",
        packing: bool = False,
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer, self.n_classes, self.normalizer = tokenizer, n_classes, normalizer
        self.formatter = Formatter(
            template, budget, lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]
        )
        if packing:
            model.check_packing()
        self.packing = packing
        self.collate = Collator(
            tokenizer.pad_token_id,
            tokenizer.padding_side,
            pack=packing,
            row_tokens=budget.max_length,
        )
        self.autocast, self.batch_size, self.max_tokens = autocast, batch_size, max_tokens
        self.cache_dir, self.layout = cache_dir, layout
        dist_rank, dist_world = dist_info()
        self.rank = dist_rank if rank is None else rank
        self.world = dist_world if world is None else world

    @classmethod
    def from_loaded(
        cls,
        model: PreferenceModel,
        tokenizer: Any,
        spec: CheckpointSpec,
        max_length: int | None = None,
        **kw: Any,
    ) -> Predictor:
        """Build from :func:`load_checkpoint` output; its spec sets the formatting.

        Args:
            max_length: tokens a sequence may hold, in place of the training budget's (a model
                trained on short inputs can read long responses); the field split is kept.
        """
        budget = spec.budget
        if max_length is not None:
            budget = dataclasses.replace(budget, max_length=max_length)
        norm = spec.feature_normalizer
        if spec.model.n_features and not norm:
            raise ValueError("the model reads features but its checkpoint has no normalizer")
        return cls(
            model,
            tokenizer,
            spec.template,
            budget,
            n_classes=spec.n_classes,
            normalizer=FeatureNormalizer.from_dict(norm) if norm else None,
            layout=cast(Layout, spec.model.architecture),
            **kw,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        cache_dir: Path,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        **kw: Any,
    ) -> Predictor:
        """Load a checkpoint dir (or a run dir holding ``checkpoints/final``)."""
        from arena.models.checkpoint import load_checkpoint

        model, tokenizer, spec = load_checkpoint(
            Path(path),
            cache_dir=cache_dir,
            max_length=max_length,
            trust_remote_code=trust_remote_code,
        )
        return cls.from_loaded(
            model, tokenizer, spec, max_length=max_length, cache_dir=cache_dir, **kw
        )

    def encode(self, df: pd.DataFrame) -> Encoded:
        """Tokenize ``df`` and compute its features; labels are not read."""
        n = len(df)
        feats = None
        if self.normalizer is not None:
            feats = self.normalizer.featurize(df, self.cache_dir)
        arrays = PairArrays(
            labels=np.full(n, -1, dtype=np.int64),
            targets=np.zeros((n, self.n_classes), dtype=np.float32),
            features=feats,
        )
        tokens = cached_tokenize(df, self.tokenizer, self.cache_dir)
        swap = self.normalizer.featurizer.swap if self.normalizer is not None else None
        data = PairDataset(
            tokens, arrays, self.formatter, "both", swap_features=swap, layout=self.layout
        )
        return Encoded(data, data.row_lengths())

    def local_logits(
        self, encoded: Encoded, rows: np.ndarray, swapped: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """This rank's share of ``rows``, in length-sorted token-budget batches.

        Args:
            encoded: from :meth:`encode`.
            rows: (m,) row indices to score.
            swapped: score the A/B-swapped pairs (logits stay in the swapped order).

        Returns:
            positions (k,) int64 into ``rows`` and their (k, C) float32 logits.
        """
        rows = np.asarray(rows, dtype=np.int64)
        lengths = encoded.lengths[rows]
        if self.packing and self.layout == "siamese":  # two sequences a row to pack
            lengths = 2 * lengths
        batches = sorted_batches(
            lengths, self.max_tokens, self.batch_size, self.rank, self.world, self.packing
        )
        dataset, shift = encoded.dataset, encoded.dataset.n_rows if swapped else 0
        positions, outputs = [], []
        with torch.inference_mode(), self._autocast():
            for pos in batches:
                batch = self.collate([dataset[int(i) + shift] for i in rows[pos]])
                inputs = {k: v.to(self.device) for k, v in model_inputs(batch).items()}
                logits = self.model(**inputs)
                positions.append(pos)
                outputs.append(logits.float().cpu().numpy())
        if not outputs:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.n_classes), dtype=np.float32)
        return np.concatenate(positions), np.concatenate(outputs)

    def _autocast(self) -> torch.autocast:
        dtype = self.autocast or torch.get_autocast_dtype(self.device.type)
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.autocast is not None)

    def log_probs(self, encoded: Encoded, rows: np.ndarray, swapped: bool = False) -> np.ndarray:
        """(len(rows), C) float64 log probabilities of ``rows`` in their given order, gathered
        over ranks; swapped predictions are swapped back to the original A/B order."""
        parts = [self.local_logits(encoded, rows, swapped)]
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(gathered, parts[0])
            parts = gathered
        out = assemble(parts, len(rows), self.n_classes)
        out = torch.log_softmax(torch.from_numpy(out).double(), dim=-1).numpy()
        return swap_probs(out) if swapped else out

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """(n, C) float64 probabilities of every row of ``df`` as given, in its order."""
        return np.exp(self.log_probs(self.encode(df), np.arange(len(df))))


def assemble(parts: Sequence[tuple[np.ndarray, np.ndarray]], n: int, n_classes: int) -> np.ndarray:
    """Put ``(positions (k,), values (k, C))`` shares back into one (n, C) array.

    Raises:
        ValueError: the shares do not cover every position exactly once.
    """
    out = np.zeros((n, n_classes), dtype=np.float32)
    seen = np.zeros(n, dtype=np.int64)
    for positions, values in parts:
        out[positions] = values
        np.add.at(seen, positions, 1)
    if n and not (seen == 1).all():
        raise ValueError(f"shares cover {int((seen > 0).sum())} of {n} rows, some twice or never")
    return out
