"""Sizing: parameter counts, FLOPs and memory of a model built on the meta device (``plan=true``,
the throughput callback and the GPU bench use the same formulas).

The model is built on the meta device from the backbone's architecture numbers; memory and speed
follow from counts:

* weights: frozen linear weights at the bytes of their quantization (nf4 ~0.5 B + double-quant
  scales, int8 1 B, else the dtype); the other frozen parameters (embeddings, norms, biases) at
  the dtype, or fp32 when quantized (peft's ``prepare_model_for_kbit_training`` upcasts them);
  trained parameters in fp32; divided over the data-parallel ranks under ``trainer=fsdp``;
* gradients (fp32) and optimizer state (AdamW: 8 B per trained parameter, 8-bit AdamW: 2 B);
* activations per layer and sample (Korthikanti et al. 2022, no sequence parallelism):
  ``T·h·(34 + 5·a·T/h)`` bytes at 16-bit, or only the layer inputs (``T·h`` in the residual
  stream's dtype: fp32 over a quantized base, whose embeddings are upcast) plus one layer's worth
  when activation checkpointing recomputes the rest;
* FLOPs per sample: forward ``F = 2·N·T`` (matmuls over non-embedding weights) ``+ 4·L·T²·d_attn``
  (scores and values); the backward pass costs ``F`` for activation gradients plus ``F`` times the
  trained share of the weights for weight gradients (so ~``2F`` in all for LoRA, ``3F`` for a full
  fine-tune), plus one forward more with activation checkpointing;
* samples/s = MFU x peak FLOP/s x devices / training FLOPs per sample.

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

BYTES = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "4bit": 0.5 + 0.5 / 64 + 4 / 4096,
    "8bit": 1.0 + 4 / 4096,
}


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """Total, trained, embedding and frozen-linear-weight parameter counts."""
    counts = dict.fromkeys(("total", "trainable", "embedding", "frozen_linear"), 0)
    linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    for name, p in model.named_parameters():
        counts["total"] += p.numel()
        counts["trainable"] += p.numel() if p.requires_grad else 0
        counts["embedding"] += p.numel() if "embed" in name else 0
        counts["frozen_linear"] += p.numel() if id(p) in linear and not p.requires_grad else 0
    return counts


def matmul_flops_per_token(n_nonembed: int, n_trained: int, training: bool = True) -> float:
    """FLOPs of the weight matmuls for one token: forward ``2·N``; training adds the activation
    gradients (``2·N``) and the trained weights' gradients (``2·N`` times their share), so ``6·N``
    for a full fine-tune and ~``4·N`` for LoRA on a frozen base. Attention scores are left out
    (a lower bound, as MFU conventions do)."""
    forward = 2.0 * n_nonembed
    if not training:
        return forward
    return forward * (2.0 + min(n_trained, n_nonembed) / max(n_nonembed, 1))


def flops_per_sample(
    arch: dict[str, Any], n_nonembed: int, n_trained: int, seq: int, checkpointing: bool
) -> dict[str, float]:
    """Forward and training FLOPs of one sequence of ``seq`` tokens, attention included."""
    layers = arch["num_hidden_layers"]
    d_attn = arch["num_attention_heads"] * arch.get(
        "head_dim", arch["hidden_size"] // arch["num_attention_heads"]
    )
    forward = matmul_flops_per_token(n_nonembed, n_trained, training=False) * seq
    forward += 4.0 * layers * seq * seq * d_attn  # attention scores and values
    # backward: activation gradients (1x forward) + gradients of the trained weights' share
    trained_share = min(n_trained, n_nonembed) / max(n_nonembed, 1)
    train = forward * (2.0 + trained_share + (1.0 if checkpointing else 0.0))
    return {"forward": forward, "train": train}


@dataclass(frozen=True)
class Setup:
    """How a model trains, as far as memory is concerned.

    Attributes:
        seq: tokens per sequence; batch: sequences per device and step.
        devices: data-parallel ranks; sharded: FSDP divides weights, gradients and optimizer
            state over them.
        quantization: ``none``, ``8bit`` or ``4bit`` for the frozen linear weights.
        dtype: the backbone's storage dtype name (``bfloat16``, ...).
        optimizer_8bit: 8-bit AdamW state (2 B per trained parameter) instead of 8 B.
        checkpointing: activation checkpointing of the decoder layers.
    """

    seq: int
    batch: int
    devices: int = 1
    sharded: bool = False
    quantization: str = "none"
    dtype: str = "bfloat16"
    optimizer_8bit: bool = False
    checkpointing: bool = False


def memory_gb(arch: dict[str, Any], counts: dict[str, int], setup: Setup) -> dict[str, float]:
    """Estimated peak memory per device (GiB), by part, plus ``total`` (x1.1 for fragmentation)."""
    shard = setup.devices if setup.sharded else 1
    quant, dtype = setup.quantization, setup.dtype
    opt_bytes = 2.0 if setup.optimizer_8bit else 8.0
    # a quantized base keeps its other frozen parameters (and so the residual stream) in fp32
    other_bytes = BYTES["float32"] if quant != "none" else BYTES[dtype]
    frozen_other = counts["total"] - counts["trainable"] - counts["frozen_linear"]
    weights = (
        counts["frozen_linear"] * BYTES[quant if quant != "none" else dtype]
        + frozen_other * other_bytes
        + counts["trainable"] * 4
    ) / shard
    grads = counts["trainable"] * 4 / shard
    optim = counts["trainable"] * opt_bytes / shard
    seq = setup.seq
    h, a, n_layers = arch["hidden_size"], arch["num_attention_heads"], arch["num_hidden_layers"]
    per_layer = seq * h * (34 + 5 * a * seq / h)
    stored = other_bytes * seq * h * n_layers + per_layer
    acts = setup.batch * (stored if setup.checkpointing else per_layer * n_layers)
    parts = {"weights": weights, "gradients": grads, "optimizer": optim, "activations": acts}
    gb = {k: v / 2**30 for k, v in parts.items()}
    gb["total"] = sum(gb.values()) * 1.1  # allocator fragmentation and workspace
    return gb
