"""``train_batching``: how training batches are cut, on the same rows, one epoch each.

Variants (each trains a fresh copy of the same model, plain loop, pinned AdamW):

- ``fixed``: random order, ``batch`` rows, padded to ``max_length``;
- ``dynamic``: the same batches, padded to their longest row;
- ``length_grouped``: :class:`LengthBatchSampler` without a token budget (rows of similar
  length together, batch order shuffled);
- ``token_budget``: :class:`LengthBatchSampler` with ``max_tokens = 4 * max_length`` padded
  tokens per batch (short rows make bigger batches, up to ``4 * batch`` rows). On these CPUs
  small batches are the fastest per token (compute dominates a MiniLM step; the optimizer step
  is a few percent of it), as in ``inference_batching``: the budget is a few long rows.

Every variant sees every row once, so the real tokens are equal and the time ratio is the
tokens/s ratio; ``padded_tokens_fixed_over_token_budget`` is what padding alone allows at
several ``max_length`` caps; ``padding_ceiling`` (next to the ratio) is that at the measured cap
(``settings.batching_max_length``, 512, on the real files' mix). Equivalence: padding must not
change a row's output, checked on the first batch of every variant (its logits with the
variant's padding vs padded to ``max_length``, <= 1e-4).
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
    param_groups,
    pinned_adamw,
    speedup,
    stats,
)
from arena.bench.inputs import ModelKit, build_kit, encode, lengths_at, load_table, sample_rows
from arena.data.batching import LengthBatchSampler
from arena.data.dataset import PairDataset
from arena.losses import PreferenceLoss

Plan = tuple[list[list[int]], int]  # batches of row indices, pad multiple
CAPS = (256, 512, 1024)  # max_length values whose padding ceiling is reported
TOKEN_BUDGET = 4  # padded tokens per token-budget batch, in units of max_length


def train_plans(lengths: np.ndarray, batch: int, max_length: int, seed: int) -> dict[str, Plan]:
    """The four batch plans over rows ``0..n-1`` (see the module docstring)."""
    order = np.random.default_rng(seed).permutation(len(lengths))
    random = [order[s : s + batch].tolist() for s in range(0, len(order), batch)]
    grouped = LengthBatchSampler(lengths, batch, None, bucket_batches=64, seed=seed)
    budget = LengthBatchSampler(
        lengths, 4 * batch, TOKEN_BUDGET * max_length, bucket_batches=64, seed=seed
    )
    return {
        "fixed": (random, max_length),
        "dynamic": (random, 8),
        "length_grouped": (list(grouped), 8),
        "token_budget": (list(budget), 8),
    }


def padded_ratio(lengths: np.ndarray, batch: int, max_length: int, seed: int) -> float:
    """Padded tokens of fixed over token-budget batches: the speed-up padding alone allows."""
    plans = train_plans(lengths, batch, max_length, seed)
    padded = {k: padding_efficiency(lengths, b, m)["padded_tokens"] for k, (b, m) in plans.items()}
    return padded["fixed"] / padded["token_budget"]


def train_epoch(kit: ModelKit, dataset: PairDataset, plan: Plan, lr: float) -> float:
    """Seconds to train one epoch of ``plan`` from a fresh model copy."""
    batches, multiple = plan
    collate, loss_fn = kit.collator(multiple), PreferenceLoss()
    model = kit.new_model().train()
    optimizer = pinned_adamw(param_groups(model), lr)
    start = time.perf_counter()
    for rows in batches:
        batch = collate([dataset[i] for i in rows])
        loss = loss_fn(model(batch["input_ids"], batch["attention_mask"]), batch["target"]).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def padding_invariance(kit: ModelKit, dataset: PairDataset, plan: Plan, max_length: int) -> float:
    """Max abs logit difference on the plan's first batch: its padding vs ``max_length``."""
    rows, multiple = plan[0][0], plan[1]
    model = kit.new_model().eval()
    items = [dataset[i] for i in rows]
    with torch.inference_mode():
        outs = []
        for pad_to in (multiple, max_length):
            batch = kit.collator(pad_to)(items)
            outs.append(model(batch["input_ids"], batch["attention_mask"]))
    return max_abs_diff(outs[0], outs[1])


def run(settings: Settings, kit: ModelKit | None = None) -> dict[str, Any]:
    """Interleave one-epoch trainings under the four plans."""
    kit = kit or build_kit(settings)
    batch, n_rows, cap = settings.pick(4, 8), settings.pick(8, 48), settings.batching_max_length
    table, source = load_table(settings)
    data = encode(sample_rows(table, n_rows, settings.seed + 1), kit, cap)
    plans = train_plans(data.lengths, batch, cap, settings.seed)
    for batches, _ in plans.values():
        assert sorted(i for b in batches for i in b) == list(range(n_rows)), "a row is missing"
    diff = max(padding_invariance(kit, data.dataset, p, cap) for p in plans.values())
    times = interleave(
        {name: _epoch(kit, data.dataset, plan, settings) for name, plan in plans.items()},
        settings.repeats,
    )
    efficiency = {k: padding_efficiency(data.lengths, b, m) for k, (b, m) in plans.items()}
    real = efficiency["fixed"]["real_tokens"]
    ceiling = {n: padded_ratio(lengths_at(data, kit, n), batch, n, settings.seed) for n in CAPS}
    ratios = {k: speedup(times["fixed"], v) for k, v in times.items() if k != "fixed"}
    return {
        "ratios": {
            "train_batching.token_budget_vs_fixed": ratios["token_budget"]["paired"],
            "train_batching.padding_ceiling": padded_ratio(data.lengths, batch, cap, settings.seed),
        },
        "equivalence": equivalence("first-batch logits: variant padding vs max_length", diff, 1e-4),
        "raw": {
            "rows": n_rows,
            "data": source,
            "batch_size": batch,
            "max_length": cap,
            "mean_length": float(data.lengths.mean()),
            "steps": {k: len(b) for k, (b, _) in plans.items()},
            "seconds": {k: stats(v) for k, v in times.items()},
            "tokens_per_second": {k: real / min(v) for k, v in times.items()},
            "padding": efficiency,
            "vs_fixed": ratios,
            "padded_tokens_fixed_over_token_budget": ceiling,
        },
    }


def _epoch(kit: ModelKit, dataset: PairDataset, plan: Plan, settings: Settings) -> Any:
    def go() -> float:
        torch.manual_seed(settings.seed)
        return train_epoch(kit, dataset, plan, settings.lr)

    return go
