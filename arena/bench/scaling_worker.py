"""The ``scaling`` pipeline, and its memory measurement in a process of its own.

:func:`measure` times read -> tokenize -> score in the calling process; run as a module it
measures the peak memory of one file (see :mod:`arena.bench.scaling`)::

    python -m arena.bench.scaling_worker '{"file": "rows_256.parquet", "warmup": "warmup.parquet",
        "tokenizer": "<saved tokenizer dir>", "template": {...}, "max_length": 256,
        "seed": 0, "threads": 1}'

It prints one JSON line: ``peak_mb`` (prep, loop, total, and loop_repeat: a second pass over
the same rows; each the peak resident set above the stage's starting one),
``held_after_prep_mb`` and ``peak_reset`` (whether the kernel let us reset the
high-water mark; without it peaks only count what exceeds earlier ones).

The worker imports only torch, ``arena.data`` and the tokenizer (a fresh process per size must
start quickly); its model is a plain 2-layer encoder of hidden 64 with mean pooling and a linear
head, the size of the tiny BERT twin: the pipeline around it is what is measured.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from arena.data.batching import Collator, sorted_batches
from arena.data.dataset import PairArrays, PairDataset
from arena.data.format import Budget, Formatter, Template
from arena.data.readers import read_pairs
from arena.data.tokenize import cached_tokenize


class Block(nn.Module):
    """Pre-norm transformer layer: SDPA self-attention over real tokens, then a GELU MLP."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden)
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, N, T, D)
        x = x + self.out(attn.transpose(1, 2).reshape(b, t, h))
        return x + self.mlp(self.norm2(x))


class Trunk(nn.Module):
    """Embeddings -> 2 layers -> mean over real tokens -> (B, 2) logits."""

    def __init__(self, vocab: int, max_length: int, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_length, hidden)
        self.blocks = nn.ModuleList([Block(hidden, 4) for _ in range(2)])
        self.head = nn.Linear(hidden, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.embed(input_ids) + self.position(positions)  # (B, T, H)
        keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): attend to real tokens
        for block in self.blocks:
            x = block(x, keep)
        weights = attention_mask.unsqueeze(-1).to(x.dtype)
        return self.head((x * weights).sum(1) / weights.sum(1).clamp(min=1.0))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset the resident-set high-water mark (``VmHWM``); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def setup(args: dict[str, Any]) -> tuple[Any, Formatter, nn.Module]:
    """The saved tokenizer, a formatter with the template and budget, and the trunk."""
    from transformers import AutoTokenizer  # the only transformers import

    tokenizer = AutoTokenizer.from_pretrained(args["tokenizer"], local_files_only=True)
    formatter = Formatter(
        Template(**args["template"]),
        Budget(max_length=args["max_length"]),
        lambda s: tokenizer(s, add_special_tokens=False)["input_ids"],
    )
    torch.manual_seed(args["seed"])
    return tokenizer, formatter, Trunk(len(tokenizer), args["max_length"]).eval()


def prepare(file: Path, tokenizer: Any, formatter: Formatter) -> tuple[PairDataset, np.ndarray]:
    """Read, tokenize (no cache) and measure every row, as the predictor's ``encode`` does."""
    df, _ = read_pairs(file)
    n = len(df)
    arrays = PairArrays(np.full(n, -1, dtype=np.int64), np.zeros((n, 2), dtype=np.float32))
    dataset = PairDataset(cached_tokenize(df, tokenizer, None), arrays, formatter, "plain")
    return dataset, dataset.row_lengths()


def infer(
    model: nn.Module, collate: Collator, data: PairDataset, lengths: np.ndarray, tokens: int
) -> np.ndarray:
    """(n, 2) logits in row order from length-sorted token-budget batches."""
    out = np.zeros((len(lengths), 2), dtype=np.float32)
    with torch.inference_mode():
        for rows in sorted_batches(lengths, tokens, 64):
            batch = collate([data[int(i)] for i in rows])
            out[rows] = model(batch["input_ids"], batch["attention_mask"]).numpy()
    return out


class Pipeline:
    """Tokenizer, formatter, model and collator of one ``args`` dict, ready to run files."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.tokenizer, self.formatter, self.model = setup(args)
        self.collate = Collator(self.tokenizer.pad_token_id, self.tokenizer.padding_side)
        self.tokens = 16 * args["max_length"]  # padded tokens per inference batch

    def prepare(self, file: Path) -> tuple[PairDataset, np.ndarray]:
        return prepare(file, self.tokenizer, self.formatter)

    def infer(self, data: PairDataset, lengths: np.ndarray) -> np.ndarray:
        return infer(self.model, self.collate, data, lengths, self.tokens)

    def measure(self, file: Path) -> dict[str, float]:
        """Seconds of ``prep`` and ``inference`` over one file."""
        t0 = time.perf_counter()
        data, lengths = self.prepare(file)
        t1 = time.perf_counter()
        self.infer(data, lengths)
        return {"prep": t1 - t0, "inference": time.perf_counter() - t1}


def main(args: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of prep and of the batch loop over ``args["file"]``."""
    if args.get("threads"):
        torch.set_num_threads(args["threads"])
    pipe = Pipeline(args)
    # warm-up on a few rows: one-time allocations (Arrow pools, tokenizer threads, kernels)
    # belong to the baseline, not to the rows
    pipe.infer(*pipe.prepare(Path(args["warmup"])))
    ok = reset_peak()
    start_rss = _status_kb("VmRSS")
    data, lengths = pipe.prepare(Path(args["file"]))
    prep_peak = _status_kb("VmHWM")
    ok = reset_peak() and ok
    loop_rss = _status_kb("VmRSS")
    pipe.infer(data, lengths)
    loop_peak = _status_kb("VmHWM")
    ok = reset_peak() and ok  # a second pass: per-shape kernel caches exist by now
    repeat_rss = _status_kb("VmRSS")
    pipe.infer(data, lengths)
    repeat_peak = _status_kb("VmHWM")
    return {
        "rows": len(lengths),
        "tokens": int(lengths.sum()),
        "peak_mb": {
            "prep": (prep_peak - start_rss) / 1024,
            "loop": (loop_peak - loop_rss) / 1024,
            "total": (max(prep_peak, loop_peak) - start_rss) / 1024,
            "loop_repeat": (repeat_peak - repeat_rss) / 1024,
        },
        "held_after_prep_mb": (loop_rss - start_rss) / 1024,
        "peak_reset": ok,
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
