"""``gpu``: real-size training and scoring speed, MFU and peak memory on one GPU, padded vs packed.

    python -m arena.bench only=gpu output=gpu.json     # ~8 minutes on one H100/H200, no download
    bash .ci/gpu                                        # the same on a bare lent GPU machine

Skipped without CUDA. In order, one model at a time (each freed before the next):

1. the bf16 matmul roofline (best of ``repeats`` x 10 products of (n, n) @ (n, n));
2. per backbone family, an equivalence check: a 2-layer fp32 cut scores 8 mixed sequences padded
   and packed with the same logits (max abs diff <= 1e-4), else that family's packed/padded
   ratios are withheld (``None``): a speed-up of a wrong computation does not count;
3. :data:`CASES` at full depth with random weights (:mod:`arena.bench.gpu_models`): Gemma2-9B as
   4-bit QLoRA and as bf16 LoRA, Qwen2.5-14B as bf16 LoRA; LoRA r=16 on the family's targets,
   activation checkpointing on, the family's attention list resolved on this machine, bf16
   autocast (as ``conf/experiment/base/gpu_qlora.yaml`` trains). ``n_seqs`` sequences of a
   heavy-tailed length mix (log-normal, median ``max_length / 3``, clipped to [16, max_length])
   run right-padded to their longest and packed into rows of ``max_length`` tokens, through
   ``model_inputs`` and ``PreferenceModel.forward``: training steps (forward, backward, fused
   AdamW on the trained parameters), then scoring (``inference_mode``), each pair of layouts
   interleaved after an untimed warm-up, within the model's share of ``budget_s`` (fewer rounds
   when slow; a model that finds no time left is skipped).

Reported per model: seconds, tokens/s and samples/s (medians), MFU of the FLOPs each step needs
over real tokens (:func:`arena.bench.gpu_models.step_flops`) against the datasheet dense bf16 peak
and against the measured roofline, the peak allocated memory against
:func:`arena.models.sizing.memory_gb` for the same batch shape, and the packed/padded speed-ups.
Tests run all of it on CPU with the tiny twins (``twins=True``).
"""

from __future__ import annotations

import gc
import logging
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from arena.bench.common import Settings, interleave, speedup, stats
from arena.bench.gpu_models import (
    CACHE,
    LORA,
    bench_spec,
    build,
    datasheet_peak,
    layouts,
    length_mix,
    linear_4bit_layers,
    memory_check,
    packing_equivalence,
    step_flops,
)
from arena.models import build_preference_model
from arena.models.preference import PreferenceModel
from arena.models.quant import Quantization
from arena.models.sizing import count_params

GIB = 2**30
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """One measured model: a ``conf/backbone`` name and how its frozen weights are stored."""

    name: str
    backbone: str
    quantization: Quantization


CASES = (
    Case("gemma2_9b_qlora", "gemma2_9b", "4bit"),
    Case("gemma2_9b_lora", "gemma2_9b", "none"),
    Case("qwen2_5_14b_lora", "qwen2_5_14b", "none"),
)


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


def rounds(
    variants: dict[str, Callable[[], float]], repeats: int, deadline: float
) -> tuple[dict[str, list[float]], float]:
    """One untimed warm-up of each variant, then interleaved rounds: ``repeats``, or fewer (at
    least one) once ``deadline`` has passed. Returns the seconds per variant and the warm-up's."""
    start = time.perf_counter()
    interleave(variants, 1)  # kernels, compilation, allocator, optimizer state
    warmup = time.perf_counter() - start
    times = interleave(variants, 1)
    while min(map(len, times.values())) < repeats and time.perf_counter() < deadline:
        for name, seconds in interleave(variants, 1).items():
            times[name] += seconds
    return times, warmup


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA (the gpu trainer's ``bf16-mixed``), off on CPU (fp32 tests)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def measured(
    fn: Callable[[], Any], device: torch.device, name: str, peaks: dict[str, float]
) -> Callable[[], float]:
    """``fn`` timed; on CUDA its peak allocated GiB (max over calls) lands in ``peaks[name]``."""

    def go() -> float:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(fn, device)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / GIB
            peaks[name] = max(peaks.get(name, 0.0), peak)
        return seconds

    return go


def train_variants(
    model: PreferenceModel,
    batches: dict[str, dict[str, torch.Tensor]],
    lr: float,
    device: torch.device,
    peaks: dict[str, float],
) -> dict[str, Callable[[], float]]:
    """One training step per layout: forward, cross-entropy, backward, AdamW (fused, as
    ``conf/optimizer/adamw.yaml``) over the trained parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, fused=True)
    target = torch.arange(batches["packed"]["seq_ends"].numel(), device=device) % 2

    def variant(layout: str) -> Callable[[], float]:
        def step() -> None:
            with autocast(device):
                logits = model(**batches[layout])
            torch.nn.functional.cross_entropy(logits, target).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return measured(step, device, f"train_{layout}", peaks)

    return {f"train_{k}": variant(k) for k in batches}


def score_variants(
    model: PreferenceModel,
    batches: dict[str, dict[str, torch.Tensor]],
    device: torch.device,
    peaks: dict[str, float],
    outputs: dict[str, torch.Tensor],
) -> dict[str, Callable[[], float]]:
    """One scoring forward per layout (``inference_mode``); the last logits land in ``outputs``."""

    def variant(layout: str) -> Callable[[], float]:
        def forward() -> None:
            with torch.inference_mode(), autocast(device):
                outputs[layout] = model(**batches[layout])

        return measured(forward, device, f"score_{layout}", peaks)

    return {f"score_{k}": variant(k) for k in batches}


@dataclass(frozen=True)
class Sizes:
    """What a run measures: ``n_seqs`` sequences of at most ``max_length`` tokens per step,
    models ``layers`` deep (None: full depth), the tiny twins instead (``twins``, CPU tests)."""

    n_seqs: int
    max_length: int
    layers: int | None
    twins: bool


def measure_case(
    case: Case, settings: Settings, device: torch.device, sizes: Sizes, deadline: float
) -> dict[str, Any]:
    """Build ``case``, time its training steps then its scoring, both layouts interleaved; the
    training rounds stop at 70% of the time left until ``deadline``, the scoring ones at it."""
    start = time.perf_counter()
    spec = bench_spec(case.backbone, sizes.layers, sizes.twins)
    plan = build_preference_model(spec, n_classes=2, lora=LORA, cache_dir=CACHE, meta=True)
    counts = count_params(plan)
    torch.manual_seed(settings.seed)
    model = build(spec, case.quantization, device)
    built = time.perf_counter() - start
    lengths = length_mix(sizes.n_seqs, sizes.max_length, settings.seed)
    batches = layouts(spec, lengths, sizes.max_length, device, settings.seed)
    peaks: dict[str, float] = {}
    outputs: dict[str, torch.Tensor] = {}
    train_end = time.perf_counter() + 0.7 * (deadline - time.perf_counter())
    train = train_variants(model.train(), batches, settings.lr, device, peaks)
    times, warm_train = rounds(train, settings.repeats, train_end)
    score = score_variants(model.eval(), batches, device, peaks, outputs)
    score_times, warm_score = rounds(score, settings.repeats, deadline)
    diff = (outputs["padded"] - outputs["packed"]).abs().max()
    shapes = {k: tuple(b["input_ids"].shape) for k, b in batches.items()}
    return {
        "backbone": spec.name,
        "quantization": case.quantization,
        "attention": spec.attention(),
        "layers": (spec.arch or {})["num_hidden_layers"],
        "lora": LORA,
        "activation_checkpointing": spec.activation_checkpointing,
        "autocast": "bfloat16" if device.type == "cuda" else None,
        "params": counts,
        "linear_4bit_layers": linear_4bit_layers(model),
        "build_seconds": built,
        "warmup_seconds": {"train": warm_train, "score": warm_score},
        "times": {**times, **score_times},
        "peak_memory_gb": peaks,
        "tokens_computed": {k: rows * seq for k, (rows, seq) in shapes.items()},
        "memory_estimate_gb": memory_check(spec, counts, case.quantization, shapes, peaks),
        "logits_max_diff_padded_vs_packed": float(diff),
        "sequences": len(lengths),
        "real_tokens": int(lengths.sum()),
        "flops_per_step": {
            k: step_flops(counts, dict(spec.arch or {}), lengths, k.startswith("train"))
            for k in (*times, *score_times)
        },
    }


def rates(record: dict[str, Any], peak: float, roof: float) -> dict[str, Any]:
    """A measured case's timings as medians per step: tokens/s, samples/s, MFU against the
    datasheet ``peak`` and the measured ``roof``line, packed-vs-padded speed-ups."""
    times = record.pop("times")
    median = {k: statistics.median(v) for k, v in times.items()}
    achieved = {k: record["flops_per_step"][k] / median[k] for k in times}
    return {
        **record,
        "seconds": {k: stats(v) for k, v in times.items()},
        "tokens_per_second": {k: record["real_tokens"] / m for k, m in median.items()},
        "samples_per_second": {k: record["sequences"] / m for k, m in median.items()},
        "mfu": {k: a / peak for k, a in achieved.items()},
        "mfu_vs_roofline": {k: a / roof for k, a in achieved.items()},
        "packed_vs_padded": {
            kind: speedup(times[f"{kind}_padded"], times[f"{kind}_packed"])
            for kind in ("train", "score")
        },
    }


def release(device: torch.device) -> None:
    """Free what the last model held (its objects must be unreferenced) and reset the peak."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run(
    settings: Settings,
    device: str | None = None,
    cases: Sequence[Case] = CASES,
    twins: bool = False,
    layers: int | None = None,
    n_seqs: int | None = None,
    max_length: int | None = None,
    matmul_n: int | None = None,
    budget_s: float | None = None,
) -> dict[str, Any]:
    """The section (see the module docstring). ``device``, ``twins`` and the sizes are
    overridable so that tests run it on CPU, small; ``budget_s`` (default 420 s, quick 240 s)
    is shared out over the cases still to run, and a case that finds none left is skipped."""
    if device is None and not torch.cuda.is_available():
        return {"skipped": "no CUDA"}
    dev = torch.device(device or "cuda")
    deadline = time.perf_counter() + (budget_s or settings.pick(240.0, 420.0))
    sizes = Sizes(
        n_seqs or settings.pick(8, 16), max_length or settings.pick(1024, 2048), layers, twins
    )
    roof = roofline(dev, matmul_n or settings.pick(4096, 8192), settings.repeats)
    log.info("roofline: %.0f TFLOP/s", roof["flops_per_second"] / 1e12)
    checks = {}
    for name in dict.fromkeys(c.backbone for c in cases):
        checks[name] = packing_equivalence(bench_spec(name, None, twins), dev, settings.seed)
        log.info("equivalence: %s", checks[name])
    release(dev)
    records: dict[str, dict[str, Any]] = {}
    for i, case in enumerate(cases):
        left = deadline - time.perf_counter()
        if left <= 0:
            records[case.name] = {"skipped": "time budget spent"}
            continue
        end = time.perf_counter() + left / (len(cases) - i)
        log.info("%s: %.0f s of %.0f s left", case.name, end - time.perf_counter(), left)
        try:
            record = measure_case(case, settings, dev, sizes, end)
            records[case.name] = rates(record, datasheet_peak(), roof["flops_per_second"])
        except Exception as err:  # one failed model (OOM, a kernel) must not lose the others
            records[case.name] = {"error": f"{type(err).__name__}: {err}"}
            records[case.name]["traceback"] = traceback.format_exc(limit=-8)
        log.info("%s: %s", case.name, records[case.name].get("error") or "measured")
        release(dev)
    return _report(cases, records, checks, roof, sizes, settings, dev)


def _report(
    cases: Sequence[Case],
    records: dict[str, dict[str, Any]],
    checks: dict[str, dict[str, Any]],
    roof: dict[str, Any],
    sizes: Sizes,
    settings: Settings,
    device: torch.device,
) -> dict[str, Any]:
    """Ratios per case (packed/padded speed-ups and the packed training MFU, each only where
    its family's equivalence check held), the check guarding each ratio, everything measured."""
    ratios: dict[str, float | None] = {}
    guards: dict[str, dict[str, Any]] = {}
    for case in cases:
        name, rec, check = case.name, records[case.name], checks[case.backbone]
        measured_ok = "packed_vs_padded" in rec
        for kind in ("train", "score"):
            key = f"gpu.{name}.{kind}_packed_vs_padded"
            guards[key] = check
            ok = measured_ok and check["ok"]
            ratios[key] = rec["packed_vs_padded"][kind]["paired"] if ok else None
        key = f"gpu.{name}.train_packed_mfu"  # the MFU of a wrong computation does not count either
        guards[key] = check
        ratios[key] = rec["mfu"]["train_packed"] if measured_ok and check["ok"] else None
    lengths = length_mix(sizes.n_seqs, sizes.max_length, settings.seed)
    return {
        "ratios": ratios,
        "equivalence": guards,
        "raw": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "datasheet_peak_flops": datasheet_peak(),
            "roofline": roof,
            "length_mix": {
                "sequences": sizes.n_seqs,
                "max_length": sizes.max_length,
                "lengths": lengths.tolist(),
                "real_tokens": int(lengths.sum()),
            },
            "optimizer": f"torch.optim.AdamW(lr={settings.lr}, weight_decay=0.01, fused=True)",
            "cases": records,
            "software": _versions(),
        },
    }


def _versions() -> dict[str, str]:
    names = ("torch", "transformers", "peft", "bitsandbytes")
    return {n: getattr(sys.modules[n], "__version__", "?") for n in names if n in sys.modules}
