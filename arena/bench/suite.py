"""Run the benchmark sections and assemble one result (ratios, targets, raw timings per section).

result = run_suite(Settings(quick=True), only=["tokenization", "tta"])
result["ratios"]["tokenization.cache_hit_vs_miss"], result["targets"], result["sections"]
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from arena.bench import (
    gpu,
    inference_batching,
    packing,
    scaling,
    tokenization,
    train_batching,
    train_loop,
    tta,
)
from arena.bench.common import Settings, loadavg
from arena.bench.inputs import ModelKit, build_kit
from arena.bench.report import judge

SECTIONS: tuple[str, ...] = (
    "train_loop",
    "train_batching",
    "inference_batching",
    "tokenization",
    "tta",
    "scaling",
    "packing",
    "gpu",
)


def _runners(
    settings: Settings, kit: Callable[[], ModelKit], tta_file: Path | None
) -> dict[str, Callable[[], dict[str, Any]]]:
    return {
        "train_loop": lambda: train_loop.run(settings, kit()),
        "train_batching": lambda: train_batching.run(settings, kit()),
        "inference_batching": lambda: inference_batching.run(settings, kit()),
        "tokenization": lambda: tokenization.run(settings, kit()),
        "tta": lambda: tta.run(settings, tta_file),
        "scaling": lambda: scaling.run(settings, kit()),
        "packing": lambda: packing.run(settings),
        "gpu": lambda: gpu.run(settings),
    }


def run_section(name: str, runner: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One section with its load average (start, end) and wall seconds."""
    start, load = time.perf_counter(), loadavg()
    section = runner()
    section["loadavg"] = {"start": load, "end": loadavg()}
    section["seconds"] = time.perf_counter() - start
    return section


def run_suite(
    settings: Settings, only: Sequence[str] | None = None, tta_file: Path | None = None
) -> dict[str, Any]:
    """Run ``only`` (default: every section) in :data:`SECTIONS` order.

    Raises:
        ValueError: an unknown section name.
    """
    wanted = list(only) if only else list(SECTIONS)
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown sections {unknown}; known: {list(SECTIONS)}")
    kits: list[ModelKit] = []

    def kit() -> ModelKit:
        if not kits:
            kits.append(build_kit(settings))
        return kits[0]

    start, load = time.perf_counter(), loadavg()
    runners = _runners(settings, kit, tta_file)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads or threads)
    try:
        sections = {name: run_section(name, runners[name]) for name in SECTIONS if name in wanted}
    finally:
        torch.set_num_threads(threads)
    ratios = {k: v for s in sections.values() for k, v in s.get("ratios", {}).items()}
    return {
        "ratios": ratios,
        "targets": judge(ratios, sections),
        "sections": sections,
        "meta": _meta(settings, load, time.perf_counter() - start),
    }


def _meta(settings: Settings, load: list[float], seconds: float) -> dict[str, Any]:
    return {
        "settings": {k: str(v) for k, v in vars(settings).items()},
        "loadavg": {"start": load, "end": loadavg()},
        "seconds": seconds,
        "torch": torch.__version__,
        "torch_threads": settings.threads or torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "optimizer": "torch.optim.AdamW(foreach=False, fused=False, weight_decay=0.01)",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
