"""What every benchmark section shares: settings, interleaved timing, ratios, data and models.

Timing rules (the machines are shared and noisy): variants of one comparison run interleaved in
one process (A, B, A, B, ...), every variant at least ``repeats`` times; a comparison reports the
min and median of each variant and the median of the per-repeat paired ratios (neighbouring runs
see the same load). The load average is recorded around every section.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Settings:
    """Options shared by every section (``key=value`` on the command line).

    Attributes:
        quick: small sizes and fewer steps (about 2 minutes with MiniLM on 2 cores).
        backbone: ``minilm`` (real all-MiniLM-L6-v2 weights) or ``tiny`` (random BERT twin).
        seed: seeds data sampling, model heads and the simulated TTA probabilities.
        repeats: interleaved repeats of every variant (at least 3 for a comparison).
        max_length: token budget of a formatted pair in the train-loop, tokenization and
            scaling sections.
        batching_max_length: the same for the two batching sections (the padded length of
            "fixed" / "pad_to_max"). 512, MiniLM's position limit: at 256 about 40% of the real
            rows hit the cap and padding has little to remove (see their ``padding_ceiling``).
        data_dir: the shared data folder; its files (``wsdm/*.parquet``, ``lmsys/*.csv``) give
            the length mix.
        work_dir: scratch space (token caches, scaling inputs, HF Trainer output).
        lr: AdamW learning rate used by every training variant.
        threads: torch intra-op threads (0: torch's default, one per core). The default 1 is
            for shared machines: with 2 threads on 2 busy cores every parallel op waits at a
            barrier for a descheduled thread (measured: MiniLM forward 0.37 s or 0.9 s from run
            to run with 2 threads, 0.52 s steady with 1; a tiny model 8x slower with 2).
    """

    quick: bool = False
    backbone: str = "minilm"
    seed: int = 0
    repeats: int = 3
    max_length: int = 256
    batching_max_length: int = 512
    data_dir: Path = DEFAULT_DATA_DIR
    work_dir: Path = field(default_factory=lambda: Path(".cache/arena/bench"))
    lr: float = 1e-4
    threads: int = 1

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def seconds_since(start: float) -> float:
    return time.perf_counter() - start


Variant = Callable[[], float]


def interleave(variants: Mapping[str, Variant], repeats: int) -> dict[str, list[float]]:
    """Run every variant ``repeats`` times in the order A, B, ..., A, B, ...

    Args:
        variants: name -> callable returning the measured seconds of one run.
        repeats: how many times each variant runs.

    Returns:
        name -> the seconds of its runs, in run order.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            times[name].append(float(run()))
    return times


def stats(samples: list[float]) -> dict[str, Any]:
    """Min, median and all samples of one variant's timings."""
    return {"min": min(samples), "median": statistics.median(samples), "samples": samples}


def speedup(baseline: list[float], candidate: list[float]) -> dict[str, float]:
    """How much faster ``candidate`` did the same work than ``baseline`` (seconds of each run).

    Returns:
        ``paired``: median of the per-repeat ratios (the headline), ``of_mins`` and
        ``of_medians``.
    """
    pairs = [b / c for b, c in zip(baseline, candidate, strict=True)]
    return {
        "paired": statistics.median(pairs),
        "of_mins": min(baseline) / min(candidate),
        "of_medians": statistics.median(baseline) / statistics.median(candidate),
    }


def equivalence(check: str, diff: float, tol: float) -> dict[str, Any]:
    """Record of one equivalence check: a speed-up only counts when ``ok``."""
    return {"check": check, "max_diff": float(diff), "tol": tol, "ok": bool(diff <= tol)}


def pinned_adamw(params: Any, lr: float) -> torch.optim.Optimizer:
    """The optimizer of every training comparison: single-tensor AdamW (neither foreach nor
    fused), so that implementation choice never differs between variants."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01, foreach=False, fused=False)


def param_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Backbone and head groups, in the order :class:`arena.lit.ClassifierModule` makes them."""
    head = [p for p in model.head.parameters() if p.requires_grad]  # type: ignore[union-attr]
    ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": rest, "name": "backbone"}, {"params": head, "name": "head"}]


def max_abs_diff(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a_np = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b_np = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    if a_np.shape != b_np.shape:
        return float("inf")
    return float(np.abs(a_np.astype(np.float64) - b_np.astype(np.float64)).max(initial=0.0))


def padding_efficiency(lengths: np.ndarray, batches: list[Any], multiple: int) -> dict[str, float]:
    """Real and padded tokens of a batch plan (batches pad to their longest row, rounded up to
    ``multiple``) and their ratio."""
    real = padded = 0
    for batch in batches:
        rows = np.asarray(batch, dtype=np.int64)
        longest = int(lengths[rows].max())
        real += int(lengths[rows].sum())
        padded += len(rows) * (-(-longest // multiple) * multiple)
    return {"real_tokens": real, "padded_tokens": padded, "efficiency": real / max(padded, 1)}
