"""The preference classifier: backbone (maybe LoRA / QLoRA) -> pooling -> head -> logits.

model = build_preference_model(spec, n_classes=3, head="fusion", n_features=8,
                               lora={"r": 16, "alpha": 32, "dropout": 0.05},
                               quantization="4bit", cache_dir=Path(".cache"))
logits = model(input_ids, attention_mask, features)  # (B, T), (B, T), (B, 8) -> (B, 3) fp32
logits = model(input_ids, position_ids=positions, seq_ends=ends)  # packed: (R, T), (R, T), (B,)
weights = trainable_state_dict(model)  # LoRA + head only: what a checkpoint stores
model = build_preference_model(spec, n_classes=2, head="lm_tokens", lora=..., cache_dir=...)
# the label tokens' scores from the backbone's own LM head (arena.models.lm_head)

architecture="siamese": one shared encoder reads prompt + A and prompt + B separately
(``input_ids`` (2N, T): first sides, then second sides) and a pair head scores them
(``head="linear"``: a Bradley-Terry reward per side; ``"fusion"``: the reward of a side's
state and the pair's features seen from that side; ``"mlp"``: a comparison MLP).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from peft import PeftModel
from torch import nn
from transformers import PreTrainedModel

from arena.models.backbone import BackboneSpec, build_backbone
from arena.models.heads import HeadKind, make_head, make_pair_head
from arena.models.lm_head import LM_TOKENS, LmTokens, check_lm_tokens, make_lm_tokens_head
from arena.models.lora import apply_lora
from arena.models.pooling import PoolingMode, pool, pool_packed, positions_from_mask
from arena.models.quant import Quantization

_LORA_KEYS = {"r", "alpha", "dropout", "targets"}
Architecture = Literal["joint", "siamese"]


class PreferenceModel(nn.Module):
    """Backbone + pooling + head.

    Attributes:
        backbone: Bare transformers trunk, or a ``PeftModel`` wrapping it.
        head: Maps ``(pooled (B, H), features (B, F) | None)`` to logits (B, C); kept in fp32.
        pooling: ``"last"``, ``"mean"`` or ``"cls"``.
        is_decoder: Decoders get position ids from the mask (left padding does not shift
            positions) and run without a KV cache.
    """

    def __init__(
        self,
        backbone: PreTrainedModel | PeftModel,
        head: nn.Module,
        pooling: PoolingMode,
        *,
        is_decoder: bool,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pooling = pooling
        self.is_decoder = is_decoder

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        seq_ends: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Score a batch of formatted pairs, padded or packed.

        Args:
            input_ids: (B, T) token ids padded on either side, or (R, T) rows of packed
                sequences (:func:`arena.data.batching.pack`).
            attention_mask: (B, T) 1 for real tokens (padded batches).
            features: (B, F) normalised hand-crafted features, for a fusion head.
            position_ids: (R, T) positions restarting at 0 for every packed sequence.
            seq_ends: (B,) index in the flattened rows of every packed sequence's last token.

        Returns:
            (B, C) float32 logits. The head runs with autocast off, in fp32 (as built).
        """
        pooled = self.encode(input_ids, attention_mask, position_ids, seq_ends)  # (B, H)
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            feats = None if features is None else features.to(pooled.dtype)
            return self.head(pooled, feats).float()

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        seq_ends: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the backbone and pool (see :meth:`forward` for the two batch layouts).

        Returns:
            (B, H) pooled states in the head's dtype (fp32 as built, unless a "-true"
            precision plugin converted it).

        Raises:
            ValueError: a packed batch for a model that cannot read one (see :meth:`check_packing`).
        """
        dtype = next(self.head.parameters()).dtype
        if seq_ends is not None:
            self.check_packing()
            if position_ids is None:
                raise ValueError("a packed batch needs the position ids of its sequences")
            # no attention mask: the block-diagonal causal mask comes from the position ids
            out = self.backbone(input_ids=input_ids, position_ids=position_ids, use_cache=False)
            hidden = out.last_hidden_state
            flat = hidden.reshape(-1, hidden.shape[-1])  # (R * T, H)
            lengths = position_ids.reshape(-1)[seq_ends] + 1  # (B,)
            return pool_packed(flat, seq_ends, lengths, self.pooling).to(dtype)
        if attention_mask is None:
            raise ValueError("a padded batch needs its attention_mask")
        extra: dict[str, Any] = {}
        if self.is_decoder:
            extra = {"position_ids": positions_from_mask(attention_mask), "use_cache": False}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return pool(out.last_hidden_state, attention_mask, self.pooling).to(dtype)

    def check_packing(self) -> None:
        """Packed rows need a decoder: its causal attention is kept within each sequence by the
        position ids; an encoder's bidirectional attention would read across them.

        Raises:
            ValueError: an encoder.
        """
        if not self.is_decoder:
            raise ValueError(
                "data.packing=true needs a decoder backbone (causal attention kept within each "
                "packed sequence); this one is an encoder: set data.packing=false"
            )


class SiamesePreferenceModel(PreferenceModel):
    """One shared encoder reads prompt + A and prompt + B as two sequences; a pair head
    (:func:`arena.models.heads.make_pair_head`) compares the two pooled vectors.

    Its batches (see :class:`arena.data.batching.Collator` with the ``siamese`` layout) hold
    ``2N`` sequences: the first side of N pairs, then their second side. Its A/B logits are
    antisymmetric under exchanging the sides, so the swapped pair gets exactly the swapped
    prediction (in eval mode).
    """

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        seq_ends: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Score N pairs.

        Args:
            input_ids: (2N, T) token ids: rows ``i`` and ``N + i`` are the two sides of pair i;
                or rows of 2N packed sequences in that order (``position_ids``,
                ``seq_ends``: see :meth:`PreferenceModel.forward`).
            attention_mask: (2N, T) 1 for real tokens.
            features: (2N, F) normalised features for a fusion reward, aligned with the
                sequences: pair i's features seen from its first side, then from its second
                (the swapped pair's); None for other heads.

        Returns:
            (N, C) float32 logits.

        Raises:
            ValueError: An odd number of sequences, or features the head cannot read.
        """
        n_seqs = input_ids.shape[0] if seq_ends is None else seq_ends.shape[0]
        if n_seqs % 2:
            raise ValueError(
                f"a siamese batch holds two sequences per pair, got {n_seqs}; "
                "the data needs data.layout=siamese"
            )
        pooled = self.encode(input_ids, attention_mask, position_ids, seq_ends)  # (2N, H)
        first, second = pooled.chunk(2)
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            feats = None if features is None else features.to(pooled.dtype)
            return self.head(first, second, feats).float()


def build_preference_model(
    spec: BackboneSpec,
    *,
    n_classes: int,
    head: HeadKind | LmTokens = "linear",
    n_features: int = 0,
    pooling: PoolingMode | None = None,
    lora: Mapping[str, Any] | None = None,
    quantization: Quantization = "none",
    cache_dir: Path,
    meta: bool = False,
    quant_storage: str | None = None,
    mlp_hidden: int = 256,
    head_dropout: float = 0.1,
    device_map: str | dict[str, Any] | None = None,
    architecture: Architecture = "joint",
    feature_projection: int | None = None,
) -> PreferenceModel:
    """Build backbone, adapters and head (the keyword names are the ``config["model"]`` keys).

    Args:
        spec: The backbone.
        n_classes: 2 (A/B) or 3 (A/B/tie).
        head: Head kind, see :func:`arena.models.heads.make_head`, or ``"lm_tokens"``: the
            label tokens' scores from the backbone's own LM head, LoRA only (see
            :mod:`arena.models.lm_head`).
        n_features: Feature width for a fusion head.
        pooling: Defaults to ``"last"`` for decoders and ``"mean"`` for encoders.
        lora: ``{"r", "alpha", "dropout"[, "targets"]}``; ``targets`` defaults to
            ``spec.lora_targets``. ``None`` trains the whole backbone.
        quantization: ``"none"``, ``"4bit"`` or ``"8bit"`` (needs ``lora``).
        cache_dir: Cache for twin tokenizers / weights.
        meta: Build everything on the meta device (planning: counts, no memory).
        quant_storage: 4-bit storage dtype (FSDP-QLoRA: the compute dtype).
        mlp_hidden: Hidden width of mlp/fusion heads.
        head_dropout: Dropout in the head.
        device_map: ``from_pretrained`` placement (e.g. ``{"": local_rank}`` to quantize straight
            onto a GPU); a runtime choice, not part of ``config["model"]``.
        architecture: ``"joint"`` (a cross-encoder reads prompt, A and B in one sequence) or
            ``"siamese"`` (:class:`SiamesePreferenceModel`; ``head="linear"`` is a Bradley-Terry
            reward per side, ``"fusion"`` that reward from the side's state and features,
            ``"mlp"`` a comparison MLP, see :func:`arena.models.heads.make_pair_head`).
        feature_projection: A fusion head's feature projection width (Linear, then L2 norm),
            or None, see :func:`arena.models.heads.make_head`.

    Returns:
        The model; trainable parameters are the LoRA weights + head (or everything without LoRA).

    Raises:
        ValueError: Quantization without LoRA, unknown LoRA keys or architecture, features
            the head cannot read, or an ``lm_tokens`` head it cannot have
            (:func:`arena.models.lm_head.check_lm_tokens`).
    """
    if architecture not in ("joint", "siamese"):
        raise ValueError(f"architecture {architecture!r}; expected 'joint' or 'siamese'")
    if quantization != "none" and lora is None:
        raise ValueError(f"quantization={quantization!r} weights cannot be trained: set model.lora")
    if lora is not None and set(lora) - _LORA_KEYS:
        raise ValueError(f"unknown lora keys {sorted(set(lora) - _LORA_KEYS)}; known {_LORA_KEYS}")
    if head == LM_TOKENS:
        check_lm_tokens(
            spec,
            architecture=architecture,
            n_features=n_features,
            pooling=pooling,
            lora=lora,
            meta=meta,
        )
    backbone = build_backbone(
        spec,
        cache_dir=cache_dir,
        quantization=quantization,
        meta=meta,
        quant_storage=quant_storage,
        device_map=device_map,
    )
    hidden = backbone.config.hidden_size
    with torch.device("meta") if meta else contextlib.nullcontext():
        # a meta plan is never quantized (see build_backbone), so nothing to prepare for k-bit
        quantized = quantization != "none" and not meta
        adapted = _adapt(backbone, spec, lora, quantized=quantized)
        head_module: nn.Module
        if head == LM_TOKENS:
            head_module = make_lm_tokens_head(
                spec, backbone.config, n_classes, cache_dir=cache_dir, meta=meta
            )
        elif architecture == "siamese":
            head_module = make_pair_head(
                head, hidden, n_classes, n_features, mlp_hidden, head_dropout, feature_projection
            )
        else:
            head_module = make_head(
                head, hidden, n_classes, n_features, mlp_hidden, head_dropout, feature_projection
            )
    default_pooling: PoolingMode = "last" if spec.kind == "decoder" else "mean"
    kind = SiamesePreferenceModel if architecture == "siamese" else PreferenceModel
    return kind(adapted, head_module, pooling or default_pooling, is_decoder=spec.kind == "decoder")


def _adapt(
    backbone: PreTrainedModel, spec: BackboneSpec, lora: Mapping[str, Any] | None, quantized: bool
) -> PreTrainedModel | PeftModel:
    """Add LoRA adapters (or, for a full fine-tune, only switch on activation checkpointing)."""
    if lora is None:
        if spec.activation_checkpointing:
            backbone.activation_checkpointing_enable({"use_reentrant": False})
        return backbone
    return apply_lora(
        backbone,
        r=int(lora["r"]),
        alpha=int(lora["alpha"]),
        dropout=float(lora.get("dropout", 0.0)),
        targets=tuple(lora.get("targets") or spec.lora_targets),
        quantized=quantized,
        activation_checkpointing=spec.activation_checkpointing,
    )


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores: the parameters that require grad (LoRA + head, or the whole
    model without LoRA) and the frozen ones a module names in its ``kept_frozen`` (an
    ``lm_tokens`` head's label rows, which a merged backbone no longer holds).

    Returns:
        Name -> detached tensor (shares storage with the parameter; copy before mutating).
    """
    return {n: p.detach() for n, p in _stored_parameters(model).items()}


def _stored_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    kept = {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        for name in getattr(module, "kept_frozen", ())
    }
    return {n: p for n, p in model.named_parameters() if p.requires_grad or n in kept}


def load_trainable_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into the parameters :func:`trainable_state_dict` returns, strictly.

    Raises:
        KeyError: A trainable parameter is missing from ``state``, or ``state`` has a key that is
            not a trainable parameter (e.g. a checkpoint from another LoRA / head config).
        ValueError: A shape differs.
    """
    params = _stored_parameters(model)
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise KeyError(
            f"trainable state mismatch: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); was the checkpoint saved "
            "with the same backbone / lora / head config?"
        )
    with torch.no_grad():
        for name, param in params.items():
            value = state[name]
            if value.shape != param.shape:
                raise ValueError(f"{name}: checkpoint shape {tuple(value.shape)} != {param.shape}")
            param.copy_(value.to(device=param.device, dtype=param.dtype))
