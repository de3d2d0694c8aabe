"""``plan=true``: size an experiment without training or downloading anything.

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

The target hardware is the ``planner`` group (``conf/planner/*.yaml``, GPU experiments name
theirs); the plan says whether the run fits its memory (``fits_device_memory``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from arena.io import write_json

BYTES = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "4bit": 0.5 + 0.5 / 64 + 4 / 4096,
    "8bit": 1.0 + 4 / 4096,
}


def _devices(cfg: DictConfig) -> int:
    devices = cfg.trainer.get("devices", 1)
    per_node = devices if isinstance(devices, int) else int(cfg.planner.devices_per_node)
    return per_node * int(cfg.trainer.get("num_nodes", 1))


def count_params(model: Any) -> dict[str, int]:
    """Total, trained, embedding and frozen-linear-weight parameter counts."""
    counts = dict.fromkeys(("total", "trainable", "embedding", "frozen_linear"), 0)
    linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    for name, p in model.named_parameters():
        counts["total"] += p.numel()
        counts["trainable"] += p.numel() if p.requires_grad else 0
        counts["embedding"] += p.numel() if "embed" in name else 0
        counts["frozen_linear"] += p.numel() if id(p) in linear and not p.requires_grad else 0
    return counts


def flops_per_sample(
    arch: dict[str, Any], n_nonembed: int, n_trained: int, seq: int, checkpointing: bool
) -> dict[str, float]:
    """Forward and training FLOPs of one sequence of ``seq`` tokens."""
    layers = arch["num_hidden_layers"]
    d_attn = arch["num_attention_heads"] * arch.get(
        "head_dim", arch["hidden_size"] // arch["num_attention_heads"]
    )
    forward = 2.0 * n_nonembed * seq + 4.0 * layers * seq * seq * d_attn
    trained_share = min(n_trained, n_nonembed) / max(n_nonembed, 1)
    # backward: activation gradients (1x forward) + weight gradients of trained weights only
    train = forward * (2.0 + trained_share + (1.0 if checkpointing else 0.0))
    return {"forward": forward, "train": train}


def memory_gb(
    cfg: DictConfig,
    arch: dict[str, Any],
    counts: dict[str, int],
    devices: int,
    quant: str,
    dtype: str,
) -> dict[str, float]:
    """Estimated peak memory per device, by part."""
    sharded = "FSDP" in str(cfg.trainer.get("strategy", ""))
    shard = devices if sharded else 1
    opt_bytes = 2.0 if "8bit" in str(cfg.optimizer._target_).lower() else 8.0
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
    seq, batch = cfg.data.budget.max_length, cfg.data.batch_size
    h, a, L = arch["hidden_size"], arch["num_attention_heads"], arch["num_hidden_layers"]
    per_layer = seq * h * (34 + 5 * a * seq / h)
    ckpt = bool(cfg.backbone.spec.get("activation_checkpointing"))
    acts = batch * ((other_bytes * seq * h * L + per_layer) if ckpt else per_layer * L)
    parts = {"weights": weights, "gradients": grads, "optimizer": optim, "activations": acts}
    gb = {k: v / 2**30 for k, v in parts.items()}
    gb["total"] = sum(gb.values()) * 1.1  # allocator fragmentation and workspace
    return gb


def plan_run(cfg: DictConfig) -> dict[str, Any]:
    """Build on meta, price memory and FLOPs, print and write ``plan.json`` in the run dir."""
    spec = instantiate(cfg.backbone.spec)
    factory = instantiate(cfg.model.model_factory)
    model = factory(meta=True)
    counts = count_params(model)
    arch = dict(spec.arch)
    quant = cfg.model.model_factory.get("quantization") or "none"
    devices = _devices(cfg)
    seq = int(cfg.data.budget.max_length)
    flops = flops_per_sample(
        arch,
        counts["total"] - counts["embedding"],
        counts["trainable"],
        seq,
        bool(spec.activation_checkpointing),
    )
    p = cfg.planner
    plan = {
        "experiment": cfg.experiment_name,
        "backbone": spec.name,
        "params_total": counts["total"],
        "params_trainable": counts["trainable"],
        "precision": str(cfg.trainer.precision),
        "quantization": quant,
        "strategy": str(cfg.trainer.get("strategy", "auto")),
        "devices": devices,
        "seq_len": seq,
        "batch_size_per_device": int(cfg.data.batch_size),
        "memory_per_device_gb": memory_gb(cfg, arch, counts, devices, quant, spec.dtype),
        "flops_per_sample": flops["train"],
        "flops_per_sample_forward": flops["forward"],
        "device": p.device,
        "device_peak_flops": float(p.peak_flops),
        "mfu": float(p.mfu),
    }
    plan["est_samples_per_second"] = p.mfu * p.peak_flops * devices / flops["train"]
    plan["est_inference_samples_per_second"] = p.mfu * p.peak_flops * devices / flops["forward"]
    plan["target"] = f"{devices} x {p.device}"
    plan["device_memory_gb"] = float(p.memory_gb)
    plan["fits_device_memory"] = plan["memory_per_device_gb"]["total"] <= p.memory_gb
    write_json(Path(cfg.paths.output_dir) / "plan.json", plan)
    print(_table(plan))  # noqa: T201 - the CLI's output
    return plan


def _table(plan: dict[str, Any]) -> str:
    mem = plan["memory_per_device_gb"]
    lines = [
        f"plan for {plan['experiment']} ({plan['backbone']}, {plan['quantization']}, "
        f"{plan['strategy']} x{plan['devices']})",
        f"  params: {plan['params_total'] / 1e9:.3f} B total, "
        f"{plan['params_trainable'] / 1e6:.2f} M trainable",
        "  memory/device: " + ", ".join(f"{k} {v:.2f} GB" for k, v in mem.items()),
        f"  FLOPs/sample: {plan['flops_per_sample'] / 1e12:.2f} TFLOP train, "
        f"{plan['flops_per_sample_forward'] / 1e12:.2f} TFLOP forward (T={plan['seq_len']})",
        f"  est. {plan['est_samples_per_second']:.2f} samples/s training at MFU {plan['mfu']} of "
        f"{plan['device']} ({plan['device_peak_flops'] / 1e12:.0f} TFLOP/s)",
        f"  {'fits' if plan['fits_device_memory'] else 'DOES NOT FIT'} on {plan['target']}: "
        f"{mem['total']:.1f} of {plan['device_memory_gb']:.0f} GB per device",
    ]
    return "\n".join(lines)
