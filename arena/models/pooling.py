"""Pool per-token hidden states into one vector per sequence.

Positions are read from the attention mask, never from the tokenizer's padding side, so left- and
right-padded batches pool the same tokens::

    pooled = pool(hidden, attention_mask, "last")  # (B, T, H), (B, T) -> (B, H)
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

PoolingMode = Literal["last", "mean", "cls"]
POOLING_MODES: tuple[str, ...] = get_args(PoolingMode)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """Pool hidden states over the real (mask == 1) tokens.

    Args:
        hidden: (B, T, H) per-token hidden states.
        attention_mask: (B, T) 1 for real tokens, 0 for padding (any padding side).
        mode: ``"last"``: the last real token (decoders: it has seen the whole sequence);
            ``"mean"``: average over real tokens; ``"cls"``: the first real token.

    Returns:
        (B, H) pooled states, in ``hidden``'s dtype. A row without real tokens pools position 0
        (last/cls) or zeros (mean).

    Raises:
        ValueError: Unknown mode or mismatched shapes.
    """
    if hidden.shape[:2] != attention_mask.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} vs attention_mask {attention_mask.shape}")
    mask = attention_mask.to(torch.bool)
    if mode == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        total = (hidden * weights).sum(dim=1)  # (B, H)
        return total / weights.sum(dim=1).clamp(min=1.0)
    if mode not in ("last", "cls"):
        raise ValueError(f"pooling mode {mode!r}; expected one of {POOLING_MODES}")
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, T)
    if mode == "last":
        index = torch.where(mask, positions, -1).amax(dim=1).clamp(min=0)  # (B,)
    else:
        index = torch.where(mask, positions, mask.shape[1]).amin(dim=1)
        index = torch.where(index == mask.shape[1], 0, index)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]  # (B, H)


def pool_packed(
    flat: torch.Tensor, ends: torch.Tensor, lengths: torch.Tensor, mode: PoolingMode
) -> torch.Tensor:
    """Pool sequences packed side by side (:func:`arena.data.batching.pack`).

    Args:
        flat: (R * T, H) hidden states of the flattened rows.
        ends: (B,) index of every sequence's last token in ``flat``.
        lengths: (B,) every sequence's length.
        mode: as in :func:`pool`.

    Returns:
        (B, H) pooled states, as :func:`pool` gives for the same sequences padded.
    """
    if mode == "last":
        return flat[ends]
    starts = ends - lengths + 1
    if mode == "cls":
        return flat[starts]
    if mode != "mean":
        raise ValueError(f"pooling mode {mode!r}; expected one of {POOLING_MODES}")
    segment = torch.repeat_interleave(torch.arange(len(ends), device=flat.device), lengths)
    tokens = torch.repeat_interleave(starts - torch.cumsum(lengths, 0) + lengths, lengths)
    tokens = tokens + torch.arange(len(segment), device=flat.device)  # each sequence's span
    total = flat.new_zeros((len(ends), flat.shape[-1])).index_add_(0, segment, flat[tokens])
    return total / lengths.unsqueeze(-1).to(flat.dtype)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens, so left padding does not shift positions.

    Args:
        attention_mask: (B, T) 1 for real tokens, 0 for padding.

    Returns:
        (B, T) int64 position ids: 0, 1, ... over real tokens; 0 on padding.
    """
    mask = attention_mask.to(torch.long)
    return ((mask.cumsum(dim=1) - 1) * mask).clamp(min=0)
