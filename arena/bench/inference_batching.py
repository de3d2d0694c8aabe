"""``inference_batching``: forward-only scoring of the same rows under four batch plans.

- ``pad_to_max``: rows in their given (random) order, ``batch`` rows, padded to ``max_length``;
- ``dynamic``: the same batches, padded to their longest row;
- ``length_sorted``: :func:`sorted_batches` (longest first), ``batch`` rows each;
- ``token_budget``: :func:`sorted_batches` with ``max_tokens = 4 * max_length`` padded tokens
  per batch (up to ``8 * batch`` rows), as ``arena.predict max_tokens=...`` does. On these CPUs
  small batches are fastest per token: MiniLM at 512 on 128 real rows, one thread, measured
  2.8x / 2.6x / 2.1x / 1.8x over pad-to-max with budgets of 2048 / 4096 / 8192 / 16384 tokens
  (length-sorted batches of 16 rows: 2.0x), so the budget is a few long rows, not
  ``batch * max_length``.

Rows are drawn from the real files' mix and formatted at ``settings.batching_max_length`` (512).
Outputs are put back in row order with the indices every batch carries; every variant's logits
must equal pad-to-max's to 1e-4 for its speed-up to count. ``padding_ceiling`` (next to the
ratio) is pad-to-max's padded tokens over token-budget's for the same rows: what removing
padding alone allows (attention, superlinear in length, can add to it); the raw
``padded_tokens_pad_to_max_over_token_budget`` gives it at several caps (a cap that truncates
most rows leaves little padding to remove).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from arena.bench.common import (
    Settings,
    equivalence,
    interleave,
    max_abs_diff,
    padding_efficiency,
    speedup,
    stats,
)
from arena.bench.inputs import ModelKit, build_kit, encode, lengths_at, load_table, sample_rows
from arena.data.batching import sorted_batches
from arena.data.dataset import PairDataset

Plan = tuple[list[np.ndarray], int]  # batches of row indices, pad multiple
CAPS = (256, 512, 1024)  # max_length values whose padding ceiling is reported
TOKEN_BUDGET = 4  # padded tokens per token-budget batch, in units of max_length


def inference_plans(lengths: np.ndarray, batch: int, max_length: int) -> dict[str, Plan]:
    """The four plans over rows ``0..n-1`` (see the module docstring)."""
    given = [np.arange(s, min(s + batch, len(lengths))) for s in range(0, len(lengths), batch)]
    return {
        "pad_to_max": (given, max_length),
        "dynamic": (given, 8),
        "length_sorted": (sorted_batches(lengths, None, batch), 8),
        "token_budget": (sorted_batches(lengths, TOKEN_BUDGET * max_length, 8 * batch), 8),
    }


def padded_ratio(lengths: np.ndarray, batch: int, max_length: int) -> float:
    """Padded tokens of pad-to-max over those of token-budget batches: the speed-up that padding
    alone allows (attention, quadratic in length, adds to it)."""
    plans = inference_plans(lengths, batch, max_length)
    padded = {k: padding_efficiency(lengths, b, m)["padded_tokens"] for k, (b, m) in plans.items()}
    return padded["pad_to_max"] / padded["token_budget"]


def score(
    model: torch.nn.Module, kit: ModelKit, dataset: PairDataset, plan: Plan
) -> tuple[float, np.ndarray]:
    """Seconds to score every row and the (n, C) logits in row order."""
    batches, multiple = plan
    collate = kit.collator(multiple)
    out: np.ndarray | None = None
    start = time.perf_counter()
    with torch.inference_mode():
        for rows in batches:
            batch = collate([dataset[int(i)] for i in rows])
            logits = model(batch["input_ids"], batch["attention_mask"]).numpy()
            if out is None:
                out = np.zeros((len(dataset), logits.shape[1]), dtype=np.float32)
            out[batch["index"].numpy()] = logits
    assert out is not None
    return time.perf_counter() - start, out


def run(settings: Settings, kit: ModelKit | None = None) -> dict[str, Any]:
    """Interleave the four plans; check every run's logits against pad-to-max's."""
    kit = kit or build_kit(settings)
    batch, n_rows, cap = settings.pick(8, 16), settings.pick(32, 128), settings.batching_max_length
    table, source = load_table(settings)
    data = encode(sample_rows(table, n_rows, settings.seed + 2), kit, cap)
    plans = inference_plans(data.lengths, batch, cap)
    model = kit.new_model().eval()
    logits: dict[str, list[np.ndarray]] = {name: [] for name in plans}

    def variant(name: str) -> Any:
        def go() -> float:
            seconds, out = score(model, kit, data.dataset, plans[name])
            logits[name].append(out)
            return seconds

        return go

    times = interleave({name: variant(name) for name in plans}, settings.repeats)
    reference = logits["pad_to_max"][0]
    diff = max(max_abs_diff(reference, out) for outs in logits.values() for out in outs)
    efficiency = {k: padding_efficiency(data.lengths, b, m) for k, (b, m) in plans.items()}
    ratios = {k: speedup(times["pad_to_max"], v) for k, v in times.items() if k != "pad_to_max"}
    ceiling = {
        length: padded_ratio(lengths_at(data, kit, length), batch, length) for length in CAPS
    }
    return {
        "ratios": {
            "inference_batching.token_budget_vs_pad_to_max": ratios["token_budget"]["paired"],
            "inference_batching.padding_ceiling": padded_ratio(data.lengths, batch, cap),
        },
        "equivalence": equivalence("logits in row order vs pad_to_max", diff, 1e-4),
        "raw": {
            "rows": n_rows,
            "data": source,
            "batch_size": batch,
            "max_length": cap,
            "max_tokens": TOKEN_BUDGET * cap,
            "mean_length": float(data.lengths.mean()),
            "batches": {k: len(b) for k, (b, _) in plans.items()},
            "seconds": {k: stats(v) for k, v in times.items()},
            "rows_per_second": {k: n_rows / min(v) for k, v in times.items()},
            "padding": efficiency,
            "vs_pad_to_max": ratios,
            "padded_tokens_pad_to_max_over_token_budget": ceiling,
        },
    }
