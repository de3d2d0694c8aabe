"""``gpu``: bf16 matmul roofline, then forward and train steps of a real-shape decoder, padded vs
packed, with MFU against the measured roofline. Skipped without CUDA.

The decoder is ``conf/backbone/<backbone>.yaml``'s architecture (default Gemma2-9B) cut to a few
layers: random weights in bf16, the backbone's attention implementation, a linear head on the last
real token. A batch of sequences with a heavy-tailed length mix (log-normal, median
``max_length / 3``) runs

- ``padded``: right-padded to the longest sequence, with an attention mask;
- ``packed``: all sequences in one row, position ids restarting per sequence and no mask, so
  transformers builds a block-diagonal causal mask (no attention across sequences).

Equivalence: both layouts must give the same logits (fp32, max abs diff <= 1e-4 on a small
batch) before the packed speed-up counts. MFU counts real tokens only: ``2 N`` FLOPs per token
forward and ``6 N`` for a train step over the ``N`` non-embedding weights (embeddings frozen).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena.bench.common import Settings, equivalence, interleave, pinned_adamw, speedup, stats
from arena.bench.inputs import backbone_conf
from arena.models import BackboneSpec, build_preference_model
from arena.models.preference import PreferenceModel
from arena.models.sizing import count_params, matmul_flops_per_token


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def roofline(device: torch.device, n: int, repeats: int) -> dict[str, Any]:
    """Measured bf16 matmul FLOP/s of (n, n) @ (n, n) (best of ``repeats`` x 10 products)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b  # warm-up (cuBLAS heuristics)
    secs = [timed(lambda: [a @ b for _ in range(10)], device) / 10 for _ in range(repeats)]
    return {"n": n, "seconds": stats(secs), "flops_per_second": 2 * n**3 / min(secs)}


def decoder(
    arch: dict[str, Any], layers: int, device: torch.device, dtype: str, attn: str
) -> PreferenceModel:
    """Our preference model on a ``layers``-deep cut of ``arch`` (random weights, ``attn``
    attention implementation)."""
    spec = BackboneSpec(
        name="gpu_bench",
        kind="decoder",
        arch={**arch, "num_hidden_layers": layers},
        random_init=True,
        dtype=dtype,
        attn_implementation=attn,
    )
    with device:  # weights are created (and randomly initialised) on the device itself
        model = build_preference_model(spec, n_classes=2, cache_dir=Path(".cache/arena"))
    for name, p in model.named_parameters():
        p.requires_grad_("embed" not in name)
    return model.to(device)


def length_mix(n: int, max_length: int, seed: int) -> np.ndarray:
    """(n,) heavy-tailed sequence lengths in [16, max_length]."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(max_length / 3), 0.8, n), 16, max_length).astype(np.int64)


def make_batches(
    lengths: np.ndarray, vocab: int, device: torch.device, seed: int
) -> dict[str, dict[str, torch.Tensor]]:
    """The same sequences, padded (B, T) and packed (1, sum of lengths)."""
    gen = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(3, vocab, (int(n),), generator=gen) for n in lengths]
    longest = int(lengths.max())
    ids = torch.zeros((len(seqs), longest), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    positions = torch.cat([torch.arange(len(s)) for s in seqs])
    ends = torch.as_tensor(np.cumsum(lengths) - 1)
    padded = {"input_ids": ids, "attention_mask": mask}
    packed = {"input_ids": torch.cat(seqs)[None], "position_ids": positions[None], "ends": ends}
    to = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
    return {"padded": to(padded), "packed": to(packed)}


def logits(model: PreferenceModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 2) logits of either layout."""
    if "attention_mask" in batch:
        return model(batch["input_ids"], batch["attention_mask"])
    out = model.backbone(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    )
    pooled = out.last_hidden_state[0, batch["ends"]]  # (B, H)
    head_dtype = next(model.head.parameters()).dtype
    return model.head(pooled.to(head_dtype)).float()


def packing_equivalence(
    arch: dict[str, Any], attn: str, device: torch.device, seed: int
) -> dict[str, Any]:
    """Padded vs packed logits of a 2-layer fp32 cut on 4 short sequences."""
    torch.manual_seed(seed)
    model = decoder(arch, 2, device, "float32", attn).eval()
    batches = make_batches(length_mix(4, 64, seed), arch["vocab_size"], device, seed)
    with torch.inference_mode():
        diff = (logits(model, batches["padded"]) - logits(model, batches["packed"])).abs().max()
    return equivalence("padded vs packed logits (fp32)", float(diff), 1e-4)


def step_variants(
    model: PreferenceModel, batches: dict[str, dict[str, torch.Tensor]], device: torch.device
) -> dict[str, Callable[[], float]]:
    """Forward-only and train-step callables for both layouts (seconds per call)."""
    optimizer = pinned_adamw([p for p in model.parameters() if p.requires_grad], 1e-5)
    target = torch.zeros(len(batches["packed"]["ends"]), dtype=torch.long, device=device)

    def forward(layout: str) -> Callable[[], float]:
        def go() -> float:
            with torch.inference_mode():
                return timed(lambda: logits(model, batches[layout]), device)

        return go

    def train(layout: str) -> Callable[[], float]:
        def step() -> None:
            loss = torch.nn.functional.cross_entropy(logits(model, batches[layout]), target)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return lambda: timed(step, device)

    return {
        "forward_padded": forward("padded"),
        "forward_packed": forward("packed"),
        "train_padded": train("padded"),
        "train_packed": train("packed"),
    }


def run(
    settings: Settings,
    device: str | None = None,
    backbone: str = "gemma2_9b",
    layers: int | None = None,
    n_seqs: int | None = None,
    max_length: int | None = None,
    matmul_n: int | None = None,
) -> dict[str, Any]:
    """The section; ``device``/sizes are overridable so that tests can run it on CPU, small."""
    if device is None and not torch.cuda.is_available():
        return {"skipped": "no CUDA"}
    dev = torch.device(device or "cuda")
    spec, _ = backbone_conf(backbone)
    arch = dict(spec.arch or {})
    layers = layers or settings.pick(2, 4)
    n_seqs, max_length = n_seqs or settings.pick(8, 16), max_length or settings.pick(512, 1024)
    peak = roofline(dev, matmul_n or settings.pick(4096, 8192), settings.repeats)
    check = packing_equivalence(arch, spec.attn_implementation, dev, settings.seed)
    torch.manual_seed(settings.seed)
    model = decoder(arch, layers, dev, "bfloat16", spec.attn_implementation).train()
    lengths = length_mix(n_seqs, max_length, settings.seed)
    batches = make_batches(lengths, arch["vocab_size"], dev, settings.seed)
    variants = step_variants(model, batches, dev)
    for fn in variants.values():
        fn()  # warm-up: kernels, allocator, optimizer state
    times = interleave(variants, settings.repeats)
    return _report(model, times, lengths, peak, check, layers, backbone)


def _report(
    model: PreferenceModel,
    times: dict[str, list[float]],
    lengths: np.ndarray,
    peak: dict[str, Any],
    check: dict[str, Any],
    layers: int,
    backbone: str,
) -> dict[str, Any]:
    counts = count_params(model)
    n_params = counts["total"] - counts["embedding"]
    real = int(lengths.sum())
    per_token = {
        k: matmul_flops_per_token(n_params, counts["trainable"], training=k.startswith("train"))
        for k in times
    }
    flops = {k: per_token[k] * real for k in times}
    achieved = {k: flops[k] / statistics.median(v) for k, v in times.items()}
    mfu = {k: v / peak["flops_per_second"] for k, v in achieved.items()}
    fwd = speedup(times["forward_padded"], times["forward_packed"])
    train = speedup(times["train_padded"], times["train_packed"])
    return {
        "ratios": {
            "gpu.packed_vs_padded_forward": fwd["paired"],
            "gpu.packed_vs_padded_train": train["paired"],
            "gpu.train_packed_mfu": mfu["train_packed"],
        },
        "equivalence": check,
        "raw": {
            "backbone": backbone,
            "layers": layers,
            "params_non_embedding": n_params,
            "sequences": len(lengths),
            "real_tokens": real,
            "padded_tokens": int(len(lengths) * lengths.max()),
            "roofline": peak,
            "seconds": {k: stats(v) for k, v in times.items()},
            "tokens_per_second": {k: real / min(v) for k, v in times.items()},
            "achieved_flops_per_second": achieved,
            "mfu_vs_roofline": mfu,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        },
    }
