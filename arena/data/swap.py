"""Exchanging the A and B sides of pairs: labels, probability vectors and whole pair tables.

Swapping is used as train-time augmentation and as test-time augmentation, so it must be exact:
A wins <-> B wins, a tie stays a tie, an unlabeled row stays unlabeled, and every probability
vector (soft label, each ``teacher:<name>`` column) exchanges its A and B entries. Swapping twice
gives back the original table.

Usage::

    from arena.data.swap import swap_pairs
    augmented = pd.concat([train, swap_pairs(train)], ignore_index=True)
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd
import torch

from arena.data.schema import LABEL_A, LABEL_B, teacher_columns

# Column pairs whose contents trade places; each side's text and model name move together.
SWAPPED_COLUMN_PAIRS: tuple[tuple[str, str], ...] = (
    ("response_a", "response_b"),
    ("model_a", "model_b"),
)
# Where each class index goes: A <-> B, tie (index 2) stays.
_PERMUTATION = {2: np.array([1, 0]), 3: np.array([1, 0, 2])}
ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


def swap_label(label: int) -> int:
    """Label of the same pair with A and B exchanged.

    Args:
        label: 0 (A wins), 1 (B wins), 2 (tie) or -1 (unlabeled).

    Returns:
        1 for 0, 0 for 1; a tie or an unlabeled row is returned unchanged.
    """
    if label == LABEL_A:
        return LABEL_B
    if label == LABEL_B:
        return LABEL_A
    return label


def swap_labels(labels: np.ndarray) -> np.ndarray:
    """Vectorized :func:`swap_label`.

    Args:
        labels: int array of any shape with values in {-1, 0, 1, 2}.

    Returns:
        A new array of the same shape and dtype with 0 and 1 exchanged.
    """
    labels = np.asarray(labels)
    out = labels.copy()
    out[labels == LABEL_A] = LABEL_B
    out[labels == LABEL_B] = LABEL_A
    return out


def swap_probs(p: ArrayOrTensor) -> ArrayOrTensor:
    """Exchange the A and B entries of probability (or logit) vectors.

    Args:
        p: array or tensor of shape (..., C) with C = 2 (A, B) or C = 3 (A, B, tie).

    Returns:
        A new array of shape (..., C), same dtype, with entries 0 and 1 exchanged; the tie
        entry stays in place.

    Raises:
        ValueError: if the last dimension is not 2 or 3.
    """
    if not isinstance(p, torch.Tensor):
        p = np.asarray(p)
    if p.ndim == 0 or p.shape[-1] not in _PERMUTATION:
        raise ValueError(f"swap_probs expects shape (..., 2) or (..., 3), got {p.shape}")
    return p[..., _PERMUTATION[p.shape[-1]]]


def _swap_vector_column(column: pd.Series) -> pd.Series:
    """Swap every non-null vector of an object column holding ndarrays of shape (C,).

    Rows are grouped by vector length and dtype and each group is stacked into one
    (n_group, C) block, so the swap itself is vectorized and every vector keeps its dtype;
    null rows (``None``/NaN) stay null, and an all-null column is returned as it is.

    Args:
        column: Series whose entries are ``None`` or array-likes of shape (C,).

    Returns:
        A new Series with the same index holding new arrays of shape (C,).
    """
    present = np.flatnonzero(column.notna().to_numpy())
    if len(present) == 0:
        return column.copy()
    values = [np.asarray(v) for v in column.to_numpy(dtype=object)[present]]
    groups: dict[tuple[int, str], list[int]] = {}
    for k, v in enumerate(values):
        groups.setdefault((len(v), v.dtype.str), []).append(k)
    out = np.full(len(column), None, dtype=object)
    for members in groups.values():
        block = swap_probs(np.stack([values[k] for k in members]))  # (n_group, C)
        for k, vector in zip(members, block, strict=True):
            out[present[k]] = vector
    return pd.Series(out, index=column.index, dtype=object, name=column.name)


def swap_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """A new pair table with every row's A and B sides exchanged.

    Exchanges ``response_a``/``response_b`` and ``model_a``/``model_b``, flips ``label``
    (tie and unlabeled stay), and swaps the A/B entries of ``soft_label`` and of every
    ``teacher:<name>`` column. ``id``, ``prompt`` and all other columns are unchanged, as are
    the index and column order. The input is never mutated.

    Args:
        df: pair table (see :mod:`arena.data.schema`), n rows.

    Returns:
        Swapped pair table, n rows; ``swap_pairs(swap_pairs(df))`` equals ``df``.

    Raises:
        ValueError: if only one column of an A/B column pair is present.
    """
    renames: dict[str, str] = {}
    for a, b in SWAPPED_COLUMN_PAIRS:
        if (a in df.columns) != (b in df.columns):
            raise ValueError(f"swap_pairs needs both {a!r} and {b!r} or neither")
        if a in df.columns:
            renames.update({a: b, b: a})
    out = df.rename(columns=renames)[list(df.columns)].copy()
    if "label" in df.columns:
        out["label"] = swap_labels(df["label"].to_numpy())
    for col in ["soft_label", *teacher_columns(df)]:
        if col in df.columns:
            out[col] = _swap_vector_column(df[col])
    return out
