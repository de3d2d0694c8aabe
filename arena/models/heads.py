"""Classification heads: pooled backbone state (+ optional hand-crafted features) -> logits.

    head = make_head("fusion", hidden=3584, n_classes=2, n_features=12)
    logits = head(pooled, features)  # (B, 3584), (B, 12) -> (B, 2)

``features`` must already be normalised (the data pipeline owns their statistics).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

HeadKind = Literal["linear", "mlp", "fusion"]
HEAD_KINDS: tuple[str, ...] = get_args(HeadKind)


class ClassifierHead(nn.Module):
    """A linear, MLP, or feature-fusion MLP head.

    Attributes:
        kind: ``"linear"``, ``"mlp"`` or ``"fusion"``.
        n_features: Width of the feature vector (``> 0`` exactly for ``"fusion"``).
        net: The layers applied to ``pooled`` (or to ``[pooled, features]`` for fusion).
    """

    def __init__(self, kind: HeadKind, net: nn.Module, n_features: int) -> None:
        super().__init__()
        self.kind = kind
        self.n_features = n_features
        self.net = net

    def forward(self, pooled: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Compute logits.

        Args:
            pooled: (B, H) pooled backbone states.
            features: (B, F) normalised features; required for ``"fusion"``. Other heads accept
                ``None`` or an empty (B, 0) tensor and reject anything else rather than silently
                ignore it.

        Returns:
            (B, C) logits.

        Raises:
            ValueError: Features missing, unexpected, or of the wrong width.
        """
        if self.kind != "fusion":
            if features is not None and features.shape[-1] != 0:
                raise ValueError(
                    f"head {self.kind!r} got features of shape {tuple(features.shape)}; "
                    "use model.head=fusion with model.n_features to use them"
                )
            return self.net(pooled)
        if features is None:
            raise ValueError(f"fusion head needs features of shape (B, {self.n_features})")
        if features.shape != (pooled.shape[0], self.n_features):
            raise ValueError(
                f"fusion head expects features (B={pooled.shape[0]}, F={self.n_features}), "
                f"got {tuple(features.shape)}"
            )
        return self.net(torch.cat([pooled, features.to(pooled.dtype)], dim=-1))


def make_head(
    kind: HeadKind,
    hidden: int,
    n_classes: int,
    n_features: int = 0,
    mlp_hidden: int = 256,
    dropout: float = 0.1,
) -> ClassifierHead:
    """Build a head whose forward is ``(pooled (B, H), features (B, F) | None) -> (B, C)``.

    Args:
        kind: ``"linear"`` (dropout + linear), ``"mlp"`` (one hidden GELU layer) or ``"fusion"``
            (the MLP on ``[pooled, features]``).
        hidden: Backbone hidden size H.
        n_classes: Number of classes C (2, or 3 with ties).
        n_features: Feature width F; must be ``> 0`` for fusion and 0 otherwise.
        mlp_hidden: Width of the MLP's hidden layer.
        dropout: Dropout before each linear layer.

    Returns:
        The head, in float32.

    Raises:
        ValueError: Unknown kind, or ``n_features`` inconsistent with ``kind``.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"head {kind!r}; expected one of {HEAD_KINDS}")
    if kind == "fusion" and n_features <= 0:
        raise ValueError("head=fusion needs n_features > 0")
    if kind != "fusion" and n_features != 0:
        raise ValueError(f"head={kind!r} cannot use n_features={n_features}; use head=fusion")
    if kind == "linear":
        net: nn.Module = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))
    else:
        net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(hidden + n_features, mlp_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_hidden, n_classes),
        )
    return ClassifierHead(kind, net, n_features).float()
