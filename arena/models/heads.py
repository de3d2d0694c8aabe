"""Classification heads: pooled backbone state (+ optional hand-crafted features) -> logits.

    head = make_head("fusion", hidden=3584, n_classes=2, n_features=12)
    logits = head(pooled, features)  # (B, 3584), (B, 12) -> (B, 2)
    head = make_head("fusion", hidden=3584, n_classes=2, n_features=59, feature_projection=64)
    logits = head(pooled, features)  # [pooled, L2-normalised Linear(features) (B, 64)] -> MLP

``features`` must already be normalised (the data pipeline owns their statistics).

    pair_head = make_pair_head("mlp", hidden=384, n_classes=3)  # Siamese: compares two sides
    logits = pair_head(first, second)  # (B, 384), (B, 384) -> (B, 3)
    reward = make_pair_head("linear", hidden=384, n_classes=2)  # Bradley-Terry: r(A) - r(B)
    reward = make_pair_head("fusion", hidden=384, n_classes=2, n_features=56)
    logits = reward(first, second, features)  # features (2B, 56): each side's view of its pair
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
        project: Fusion only, or None: the feature branch, (B, F) -> (B, P), whose output is
            L2-normalised before it joins ``pooled``; its parameters are the feature layers
            (``model.feature_lr``).
    """

    def __init__(
        self, kind: HeadKind, net: nn.Module, n_features: int, project: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.kind = kind
        self.n_features = n_features
        self.net = net
        self.project = project

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
        feats = features.to(pooled.dtype)
        if self.project is not None:
            feats = nn.functional.normalize(self.project(feats), dim=-1)  # (B, P), unit norm
        return self.net(torch.cat([pooled, feats], dim=-1))


def make_head(
    kind: HeadKind,
    hidden: int,
    n_classes: int,
    n_features: int = 0,
    mlp_hidden: int = 256,
    dropout: float = 0.1,
    feature_projection: int | None = None,
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
        feature_projection: Fusion only: project the features to this width (Linear) and
            L2-normalise them before the MLP (the seed recipe); None feeds them as they are.

    Returns:
        The head, in float32.

    Raises:
        ValueError: Unknown kind, ``n_features`` inconsistent with ``kind``, or a
            ``feature_projection`` without fusion or not positive.
    """
    net, project = _layers(
        kind, hidden, n_classes, n_features, mlp_hidden, dropout, feature_projection
    )
    return ClassifierHead(kind, net, n_features, project).float()


def _layers(
    kind: HeadKind,
    hidden: int,
    n_out: int,
    n_features: int,
    mlp_hidden: int,
    dropout: float,
    feature_projection: int | None,
) -> tuple[nn.Module, nn.Module | None]:
    """The ``net`` and ``project`` of a :class:`ClassifierHead` (see :func:`make_head`)."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"head {kind!r}; expected one of {HEAD_KINDS}")
    if kind == "fusion" and n_features <= 0:
        raise ValueError("head=fusion needs n_features > 0")
    if kind != "fusion" and n_features != 0:
        raise ValueError(f"head={kind!r} cannot use n_features={n_features}; use head=fusion")
    if feature_projection is not None and (kind != "fusion" or feature_projection <= 0):
        raise ValueError(
            f"feature_projection={feature_projection} needs head=fusion and a positive width"
        )
    project = None if feature_projection is None else nn.Linear(n_features, feature_projection)
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_out)), project
    net = nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(hidden + (feature_projection or n_features), mlp_hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(mlp_hidden, n_out),
    )
    return net, project


class PairComparisonHead(nn.Module):
    """Compares two pooled sides of a pair (Siamese): ``[u, v, u - v, u * v]`` -> MLP.

    The MLP gives an A-score (and a tie score with 3 classes) for the ordered pair ``(u, v)``
    and for ``(v, u)``. The A/B logits are ``(s(u, v) - s(v, u)) / 2`` and its negative, the tie
    logit the mean of both orders' tie scores; exchanging u and v therefore swaps the A and B
    logits exactly and keeps the tie logit.

    Attributes:
        n_classes: 2 or 3.
        net: MLP over the (B, 4H) comparison features, outputs (B, n_classes - 1).
    """

    def __init__(self, net: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.net = net

    def forward(
        self, first: torch.Tensor, second: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Compute logits.

        Args:
            first: (B, H) pooled prompt + A (or the pair's first side).
            second: (B, H) pooled prompt + B.
            features: None or an empty (2B, 0) tensor: this head reads no features.

        Returns:
            (B, C) logits of (A wins, B wins[, tie]).

        Raises:
            ValueError: The two sides' shapes differ, or features.
        """
        if first.shape != second.shape:
            raise ValueError(f"sides differ: {tuple(first.shape)} vs {tuple(second.shape)}")
        if features is not None and features.shape[-1] != 0:
            raise ValueError("a siamese head=mlp (comparison) reads no features; use head=fusion")
        both_orders = torch.cat([first, second]), torch.cat([second, first])  # (2B, H) each
        u, v = both_orders
        scores = self.net(torch.cat([u, v, u - v, u * v], dim=-1))  # (2B, C - 1)
        forward, backward = scores.chunk(2)
        a = (forward[:, :1] - backward[:, :1]) / 2  # (B, 1)
        logits = [a, -a]
        if self.n_classes == 3:
            logits.append((forward[:, 1:] + backward[:, 1:]) / 2)
        return torch.cat(logits, dim=-1)


class RewardHead(ClassifierHead):
    """Bradley-Terry over two pooled sides (Siamese): one scalar reward per side, from the side's
    pooled state (``linear``) or an MLP over it and the pair's features seen from that side
    (``fusion``, see :class:`ClassifierHead`).

    The A/B logits are ``(r(u) - r(v)) / 2`` and its negative, so ``P(A) = sigmoid(r(u) -
    r(v))``; with 3 classes the tie logit is one learned constant (Davidson's tie model: a tie
    is likeliest when the rewards are equal). A side's features are the pair's features for the
    first side and the swapped pair's for the second, so exchanging u and v (and with them the
    feature rows) swaps the A and B logits exactly.

    Attributes:
        n_classes: 2 or 3.
        tie: Learned tie logit (used with 3 classes).
        kind, n_features, net, project: the reward's layers, as in :class:`ClassifierHead`
            (``net`` outputs one value).
    """

    def __init__(
        self,
        kind: HeadKind,
        net: nn.Module,
        n_classes: int,
        n_features: int = 0,
        project: nn.Module | None = None,
    ) -> None:
        super().__init__(kind, net, n_features, project)
        self.n_classes = n_classes
        self.tie = nn.Parameter(torch.zeros(1)) if n_classes == 3 else None

    def forward(  # type: ignore[override]
        self, first: torch.Tensor, second: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Compute logits (B, C) of (A wins, B wins[, tie]).

        Args:
            first: (B, H) pooled prompt + A (or the pair's first side).
            second: (B, H) pooled prompt + B.
            features: (2B, F) for ``fusion``: rows ``i`` and ``B + i`` are pair i's features
                seen from its first and from its second side (the swapped pair's).

        Raises:
            ValueError: The two sides' shapes differ, or features as :class:`ClassifierHead`
                refuses them.
        """
        if first.shape != second.shape:
            raise ValueError(f"sides differ: {tuple(first.shape)} vs {tuple(second.shape)}")
        rewards = super().forward(torch.cat([first, second]), features)  # (2B, 1)
        a = (rewards[: len(first)] - rewards[len(first) :]) / 2  # (B, 1)
        logits = [a, -a]
        if self.tie is not None:
            logits.append(self.tie.expand_as(a))
        return torch.cat(logits, dim=-1)


def make_pair_head(
    kind: HeadKind,
    hidden: int,
    n_classes: int,
    n_features: int = 0,
    mlp_hidden: int = 256,
    dropout: float = 0.1,
    feature_projection: int | None = None,
) -> PairComparisonHead | RewardHead:
    """Build a Siamese head ``(first (B, H), second (B, H)[, features (2B, F)]) -> (B, C)``.

    Args:
        kind: ``"linear"``: a :class:`RewardHead` (Bradley-Terry, one linear reward per side);
            ``"fusion"``: a :class:`RewardHead` whose reward is an MLP over a side's pooled
            state and the pair's features seen from that side; ``"mlp"``: a
            :class:`PairComparisonHead` (an MLP over ``[u, v, u - v, u * v]``).
        hidden: Backbone hidden size H.
        n_classes: 2 or 3.
        n_features, feature_projection: the fusion reward's features, as in :func:`make_head`.
        mlp_hidden: Width of the MLP's hidden layer.
        dropout: Dropout before each linear layer.

    Returns:
        The head, in float32.

    Raises:
        ValueError: ``n_classes`` not 2 or 3, or features as :func:`make_head` refuses them.
    """
    if n_classes not in (2, 3):
        raise ValueError(f"a pair head needs n_classes 2 or 3, got {n_classes}")
    if kind != "mlp":
        net, project = _layers(kind, hidden, 1, n_features, mlp_hidden, dropout, feature_projection)
        return RewardHead(kind, net, n_classes, n_features, project).float()
    if n_features or feature_projection is not None:
        raise ValueError("a siamese head=mlp (comparison) reads no features; use head=fusion")
    net = nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(4 * hidden, mlp_hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(mlp_hidden, n_classes - 1),
    )
    return PairComparisonHead(net, n_classes).float()
