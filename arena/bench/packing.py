"""``packing``: padding-free rows against arena's best padded path, on a small random decoder.

The same heavy-tailed mix of sequences (log-normal lengths, median a third of ``max_length``),
cut into batches of the same token budget by the same planners:

- ``padded``: length-grouped token-budget batches (:class:`LengthBatchSampler`, the budget
  counting padded tokens) and length-sorted scoring batches, padded to their longest row;
- ``packed``: the budget counting real tokens, every batch's sequences side by side in rows of
  ``max_length`` tokens (:func:`arena.data.batching.pack`).

Training runs one epoch from the same initial weights (pinned AdamW); scoring runs every row
once. Every variant sees every token once, so time ratios are tokens/s ratios. Reported beside
them: the share of the padded plan's computed tokens that the packed plan does not compute.
Equivalence first: packed logits equal padded ones (fp32, <= 1e-4) on eight mixed sequences.
The model is the Qwen2 twin's architecture widened (hidden 256, 4 layers) so that matmuls, not
Python, take the time; attention is SDPA (on CPU it applies each packed row's block mask densely).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena.bench.common import Settings, equivalence, interleave, pinned_adamw, speedup, stats
from arena.data.batching import LengthBatchSampler, model_inputs, pack, pad, sorted_batches
from arena.models import TINY_ARCH, BackboneSpec, build_preference_model
from arena.models.preference import PreferenceModel

ARCH = {
    **TINY_ARCH["qwen2"],
    "hidden_size": 256,
    "intermediate_size": 1024,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
BUDGET = 4  # tokens per batch, in units of max_length


def new_model() -> PreferenceModel:
    """The same random weights every call, so every variant starts from them."""
    torch.manual_seed(0)
    spec = BackboneSpec(name="bench_decoder", kind="decoder", arch=ARCH, random_init=True)
    return build_preference_model(spec, n_classes=2, cache_dir=Path(".cache/arena"))


def sequences(n: int, max_length: int, seed: int) -> list[np.ndarray]:
    """``n`` random id sequences, heavy-tailed lengths in [8, max_length]."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(max_length / 3), 0.8, n), 8, max_length).astype(int)
    return [rng.integers(5, ARCH["vocab_size"], size=k) for k in lengths]


def collate(seqs: list[np.ndarray], packed: bool, max_length: int) -> dict[str, torch.Tensor]:
    if packed:
        return pack(seqs, max_length)
    ids, mask = pad(seqs, 0, "right", 8)
    return {"input_ids": ids, "attention_mask": mask}


def plans(lengths: np.ndarray, max_length: int, seed: int) -> dict[str, list[np.ndarray]]:
    """Training and scoring batches of both layouts under one token budget."""
    budget, rows = BUDGET * max_length, 64
    out = {}
    for packed in (False, True):
        name = "packed" if packed else "padded"
        sampler = LengthBatchSampler(lengths, rows, budget, 64, seed=seed, packed=packed)
        out[f"train_{name}"] = [np.asarray(b) for b in sampler]
        out[f"score_{name}"] = sorted_batches(lengths, budget, rows, packed=packed)
    return out


def computed_tokens(batches: list[np.ndarray], lengths: np.ndarray, packed: bool, cap: int) -> int:
    """Tokens the model runs over: padded rows, or packed rows with their fill."""
    if packed:
        return sum(
            pack([np.zeros(lengths[i]) for i in b], cap)["input_ids"].numel() for b in batches
        )
    return sum(len(b) * (-(-int(lengths[b].max()) // 8) * 8) for b in batches)


def score_pass(seqs: list[np.ndarray], batches: list[np.ndarray], packed: bool, cap: int) -> float:
    """Seconds to score every sequence once (fresh model, inference mode)."""
    model = new_model().eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            model(**model_inputs(collate([seqs[i] for i in b], packed, cap)))
    return time.perf_counter() - start


def train_epoch(seqs: list[np.ndarray], batches: list[np.ndarray], packed: bool, cap: int) -> float:
    """Seconds of one training epoch from the same initial weights (pinned AdamW)."""
    model = new_model().train()
    optimizer = pinned_adamw([p for p in model.parameters() if p.requires_grad], 1e-4)
    target = torch.from_numpy(np.arange(len(seqs)) % 2)
    start = time.perf_counter()
    for b in batches:
        logits = model(**model_inputs(collate([seqs[i] for i in b], packed, cap)))
        loss = torch.nn.functional.cross_entropy(logits, target[b])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def run(settings: Settings) -> dict[str, Any]:
    """Interleave one training epoch and one scoring pass per layout."""
    cap, n = settings.pick(128, 512), settings.pick(48, 192)
    seqs = sequences(n, cap, settings.seed)
    lengths = np.array([len(s) for s in seqs])
    batches = plans(lengths, cap, settings.seed)
    first = seqs[:8]  # in drawn order: short and long together, several to a packed row
    model = new_model().eval()
    with torch.inference_mode():
        padded, packed = (model(**model_inputs(collate(first, p, cap))) for p in (False, True))
        diff = float((padded - packed).abs().max())
    variants = {
        name: (lambda name=name: (train_epoch if name.startswith("train") else score_pass)(
            seqs, batches[name], name.endswith("packed"), cap
        ))
        for name in batches
    }  # fmt: skip
    times = interleave(variants, settings.repeats)
    real = int(lengths.sum())
    computed = {
        k: computed_tokens(b, lengths, k.endswith("packed"), cap) for k, b in batches.items()
    }
    gain = {
        k: speedup(times[f"{k}_padded"], times[f"{k}_packed"])["paired"] for k in ("train", "score")
    }
    return {
        "ratios": {
            "packing.train_packed_vs_padded": gain["train"],
            "packing.score_packed_vs_padded": gain["score"],
            # the share of the padded plan's computed tokens that packing does not compute
            "packing.padding_share_removed": 1
            - computed["train_packed"] / computed["train_padded"],
        },
        "equivalence": equivalence("packed vs padded logits (fp32)", diff, 1e-4),
        "raw": {
            "sequences": n,
            "max_length": cap,
            "real_tokens": real,
            "computed_tokens": computed,
            "batches": {k: len(b) for k, b in batches.items()},
            "seconds": {k: stats(v) for k, v in times.items()},
            "tokens_per_second": {k: real / min(v) for k, v in times.items()},
        },
    }
