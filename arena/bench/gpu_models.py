"""What the ``gpu`` bench section measures: real-size models with random weights, their inputs,
and the FLOPs and memory they should take (see :mod:`arena.bench.gpu`).

    spec = bench_spec("gemma2_9b", layers=None, twin=False)  # full depth, checkpointing on
    model = build(spec, "4bit", torch.device("cuda"))         # QLoRA: r=16 on the family targets
    batches = layouts(spec, length_mix(16, 2048, seed=0), 2048, device, seed=0)
    logits = model(**batches["packed"])                       # == model(**batches["padded"])

A 4-bit model with random weights is built as a real one is loaded, minus the disk: random bf16
weights are drawn on the GPU from the architecture and handed as a state dict to the model class's
``from_pretrained`` with the QLoRA ``BitsAndBytesConfig``, whose bitsandbytes path quantizes them
(:func:`quantized_random_backbone`: the modules, 4-bit weights and flags of saving the weights and
loading them from disk, which for 9B parameters would write 18 GB first).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from transformers import PreTrainedModel

from arena.bench.common import REPO_ROOT, equivalence
from arena.bench.inputs import backbone_conf
from arena.data.batching import model_inputs, pack, pad
from arena.models import BackboneSpec, apply_lora, build_backbone, build_preference_model
from arena.models.heads import make_head
from arena.models.preference import PreferenceModel
from arena.models.quant import (
    Quantization,
    disable_cpu_weight_repack,
    quantization_config,
    torch_dtype,
)
from arena.models.sizing import Setup, matmul_flops_per_token, memory_gb

# the adapters of the shipped QLoRA classifier (conf/experiment/classifier_gemma9b_qlora.yaml)
LORA: dict[str, Any] = {"r": 16, "alpha": 32, "dropout": 0.05}
TWINS = {"gemma2_9b": "tiny_gemma2", "qwen2_5_14b": "tiny_qwen2"}  # the CPU stand-ins
CACHE = Path(".cache/arena")  # build_backbone's twin cache: nothing here writes to it


def datasheet_peak() -> float:
    """Dense bf16 FLOP/s of the H100/H200 SXM datasheet (the ``plan=true`` target's)."""
    planner = yaml.safe_load((REPO_ROOT / "conf/planner/h100_80gb.yaml").read_text())
    return float(planner["peak_flops"])


def bench_spec(backbone: str, layers: int | None, twin: bool) -> BackboneSpec:
    """``conf/backbone/<backbone>.yaml`` (or its tiny twin) as random weights from its
    architecture, ``layers`` deep (default: full depth), with activation checkpointing and the
    attention implementation this machine runs."""
    spec, _ = backbone_conf(TWINS[backbone] if twin else backbone)
    arch = dict(spec.arch or {})
    arch["num_hidden_layers"] = layers or arch["num_hidden_layers"]
    return replace(
        spec,
        hf_id=None,
        path=None,
        arch=arch,
        random_init=True,
        attn_implementation=spec.attention(),
        activation_checkpointing=True,
    )


def quantized_random_backbone(
    spec: BackboneSpec, quantization: Quantization, device: torch.device
) -> PreTrainedModel:
    """``spec``'s random weights, quantized on ``device`` by ``from_pretrained``'s bitsandbytes
    path (the modules, quantization and flags of a real QLoRA load; no file written)."""
    with device:  # random weights are drawn on the device itself
        plain = build_backbone(spec, cache_dir=CACHE)
    state, config, cls = plain.state_dict(), plain.config, type(plain)
    del plain
    where = torch.cuda.current_device() if device.type == "cuda" else str(device)
    model = cls.from_pretrained(
        None,
        config=config,
        state_dict=state,
        quantization_config=quantization_config(quantization, compute_dtype=spec.dtype),
        dtype=torch_dtype(spec.dtype),
        attn_implementation=spec.attention(),
        device_map={"": where},
        local_files_only=True,
    )
    disable_cpu_weight_repack(model)
    return model


def build(spec: BackboneSpec, quantization: Quantization, device: torch.device) -> PreferenceModel:
    """Backbone + LoRA (:data:`LORA`) + linear head on ``device``, as
    :func:`arena.models.build_preference_model` makes it from real weights."""
    if quantization == "none":
        with device:
            return build_preference_model(spec, n_classes=2, lora=LORA, cache_dir=CACHE)
    backbone = quantized_random_backbone(spec, quantization, device)
    with device:
        adapted = apply_lora(
            backbone,
            r=int(LORA["r"]),
            alpha=int(LORA["alpha"]),
            dropout=float(LORA["dropout"]),
            targets=spec.lora_targets,
            quantized=True,
            activation_checkpointing=spec.activation_checkpointing,
        )
        head = make_head("linear", backbone.config.hidden_size, 2)
    return PreferenceModel(adapted, head, "last", is_decoder=True)


def linear_4bit_layers(model: torch.nn.Module) -> int:
    """How many bitsandbytes 4-bit linear layers ``model`` computes with."""
    bnb = sys.modules.get("bitsandbytes")  # loaded by whatever built 4-bit layers
    return 0 if bnb is None else sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def length_mix(n: int, max_length: int, seed: int) -> np.ndarray:
    """(n,) heavy-tailed sequence lengths in [16, max_length], median ~``max_length / 3``."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(max_length / 3), 0.8, n), 16, max_length).astype(np.int64)


def layouts(
    spec: BackboneSpec, lengths: np.ndarray, max_length: int, device: torch.device, seed: int
) -> dict[str, dict[str, torch.Tensor]]:
    """The same random sequences as forward kwargs, right-padded (B, T) and packed (R, T)."""
    arch = spec.arch or {}
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(3, arch["vocab_size"], int(n)) for n in lengths]
    ids, mask = pad(seqs, int(arch.get("pad_token_id") or 0), spec.padding_side, 8)
    batches = {
        "padded": {"input_ids": ids, "attention_mask": mask},
        "packed": pack(seqs, max_length),
    }
    return {k: {n: t.to(device) for n, t in model_inputs(b).items()} for k, b in batches.items()}


def packing_equivalence(spec: BackboneSpec, device: torch.device, seed: int) -> dict[str, Any]:
    """Padded vs packed logits of a 2-layer fp32 cut of ``spec`` on 8 mixed sequences (a check
    that cannot run, e.g. a kernel without fp32 support, fails with its ``error``)."""
    layers = min(2, (spec.arch or {})["num_hidden_layers"])
    cut = replace(spec, arch={**(spec.arch or {}), "num_hidden_layers": layers}, dtype="float32")
    name = f"{spec.name}: padded vs packed logits (fp32, {layers} layers, {spec.attention()})"
    try:
        torch.manual_seed(seed)
        with device:
            model = build_preference_model(cut, n_classes=2, cache_dir=CACHE).eval()
        batches = layouts(cut, length_mix(8, 64, seed), 64, device, seed)
        with torch.inference_mode():
            diff = (model(**batches["padded"]) - model(**batches["packed"])).abs().max()
    except Exception as err:  # recorded as a failed check: the ratios it guards are withheld
        return {**equivalence(name, float("inf"), 1e-4), "error": f"{type(err).__name__}: {err}"}
    return equivalence(name, float(diff), 1e-4)


def step_flops(
    counts: dict[str, int], arch: dict[str, Any], lengths: np.ndarray, training: bool
) -> float:
    """FLOPs one step needs over the real tokens: weight matmuls
    (:func:`matmul_flops_per_token`) plus attention ``4 L d_attn sum(len^2)`` forward, x3 with
    the backward, plus one more forward for the activation checkpointing recompute."""
    n, trained = counts["total"] - counts["embedding"], counts["trainable"]
    heads = arch["num_attention_heads"]
    d_attn = heads * arch.get("head_dim", arch["hidden_size"] // heads)
    real = float(lengths.sum())
    attention = 4.0 * arch["num_hidden_layers"] * d_attn * float((lengths.astype(float) ** 2).sum())
    if not training:
        return 2.0 * n * real + attention
    return matmul_flops_per_token(n, trained) * real + 3 * attention + (2.0 * n * real + attention)


def memory_check(
    spec: BackboneSpec,
    counts: dict[str, int],
    quantization: Quantization,
    shapes: dict[str, tuple[int, ...]],
    peaks: dict[str, float],
) -> dict[str, Any]:
    """``memory_gb``'s total for each training batch's shape (rows x tokens) against the
    measured peak, with ``(estimate - measured) / measured``."""
    out = {}
    for layout, (rows, seq) in shapes.items():
        setup = Setup(seq=seq, batch=rows, quantization=quantization, dtype=spec.dtype)
        estimate = memory_gb(dict(spec.arch or {}), counts, replace(setup, checkpointing=True))
        peak = peaks.get(f"train_{layout}")
        out[f"train_{layout}"] = {
            "rows": rows,
            "seq": seq,
            "estimate": estimate["total"],
            "measured": peak,
            "relative_error": None if not peak else (estimate["total"] - peak) / peak,
        }
    return out
