"""The ``scaling`` pipelines, and their memory measurement in a process of its own.

Two pipelines over one pair file (see :mod:`arena.bench.scaling`):

- ``streamed`` (what ``arena`` does): ``prep`` is the training-data preparation,
  :func:`arena.data.chunks.iter_pairs` -> :func:`arena.data.tokenize.tokenize_chunks` (no cache;
  the token ids of every row written to a file and mapped) -> formatted lengths of each chunk,
  keeping the lengths and labels of every row;
  ``inference`` is ``arena.predict``'s scoring, :func:`arena.inference.stream.predict_to_files`
  (read, encode, length-sorted token-budget batches and outputs written a chunk at a time).
- ``memory`` (the whole-table path, for reference): ``read_pairs`` -> ``cached_tokenize`` of the
  whole table -> lengths, then sorted token-budget batches over all rows.

:meth:`Pipeline.measure` times them in the calling process; run as a module the worker measures
the peak memory of one file::

    python -m arena.bench.scaling_worker '{"file": "rows_256.parquet", "warmup": "warmup.parquet",
        "tokenizer": "<saved tokenizer dir>", "template": {...}, "max_length": 256,
        "chunk_rows": 256, "mode": "streamed", "seed": 0, "threads": 1}'

It prints one JSON line: ``peak_mb`` (prep, inference, and inference_repeat: a second pass over
the same file; each the peak resident set above the stage's starting one), ``held_after_prep_mb``
(what prep's result holds) and ``peak_reset`` (whether the kernel let us reset the high-water
mark; without it peaks only count what exceeds earlier ones).

The worker imports torch, ``arena.data``, ``arena.inference`` and the tokenizer; its model is a
plain 2-layer encoder of hidden 64 with mean pooling and a linear head, the size of the tiny BERT
twin: the pipeline around it is what is measured.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from arena.data.batching import Collator, sorted_batches
from arena.data.chunks import Chunk, iter_pairs
from arena.data.dataset import PairArrays, PairDataset
from arena.data.format import Budget, Formatter, Template
from arena.data.readers import read_pairs
from arena.data.tokenize import TokenizedPairs, cached_tokenize, tokenize_chunks
from arena.inference import Ensemble, Predictor
from arena.inference.stream import predict_to_files
from arena.utils.heap import return_freed_memory


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

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T) ids and mask -> (B, 2) logits; ``features`` (none here) as a
        :class:`PreferenceModel` takes them."""
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


def lengths_of(tokens: TokenizedPairs, formatter: Formatter) -> np.ndarray:
    """(n,) formatted length of every row."""
    return np.array([formatter.length(*tokens.fields(i)) for i in range(len(tokens))])


def _tables(chunks: Iterator[Chunk], labels: list[np.ndarray]) -> Iterator[pd.DataFrame]:
    """The chunks' tables, keeping only their labels (the text goes once tokenized)."""
    for chunk in chunks:
        labels.append(chunk.table["label"].to_numpy())
        yield chunk.table


class Pipeline:
    """Tokenizer, formatter, model and predictor of one ``args`` dict, ready to run files."""

    def __init__(self, args: dict[str, Any]) -> None:
        from transformers import AutoTokenizer  # the only transformers import

        tokenizer = AutoTokenizer.from_pretrained(args["tokenizer"], local_files_only=True)
        template, budget = Template(**args["template"]), Budget(max_length=args["max_length"])
        self.formatter = Formatter(
            template, budget, lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]
        )
        torch.manual_seed(args["seed"])
        self.model = Trunk(len(tokenizer), args["max_length"]).eval()
        self.tokenizer, self.mode, self.chunk_rows = tokenizer, args["mode"], args["chunk_rows"]
        self.tokens = 16 * args["max_length"]  # padded tokens per inference batch
        self.collate = Collator(tokenizer.pad_token_id, tokenizer.padding_side)  # type: ignore[arg-type]
        predictor = Predictor(
            self.model, tokenizer, template, budget, n_classes=2,  # type: ignore[arg-type]
            batch_size=64, max_tokens=self.tokens, rank=0, world=1,
        )  # fmt: skip
        self.ensemble = Ensemble([predictor])
        # removed with the pipeline (or at exit)
        self._out = tempfile.TemporaryDirectory(prefix="arena-scaling-")
        self.out_dir = Path(self._out.name)

    def prepare(self, file: Path) -> Any:
        """Training-data preparation: token ids, lengths and labels of every row."""
        if self.mode == "streamed":
            labels: list[np.ndarray] = []
            lengths: list[np.ndarray] = []
            tables = _tables(iter_pairs(file, chunk_rows=self.chunk_rows), labels)
            tokens = tokenize_chunks(
                tables,
                self.tokenizer,
                None,
                lambda t: lengths.append(lengths_of(t, self.formatter)),
            )
            return tokens, np.concatenate(lengths), np.concatenate(labels)
        df, _ = read_pairs(file)
        tokens = cached_tokenize(df, self.tokenizer, None)
        return tokens, lengths_of(tokens, self.formatter), df["label"].to_numpy()

    def infer(self, file: Path) -> np.ndarray:
        """(n, 2) probabilities (streamed: written to files too) or logits of every row."""
        if self.mode == "streamed":
            streamed = predict_to_files(
                self.ensemble, file, None, self.out_dir, layout="wsdm", chunk_rows=self.chunk_rows
            )
            return streamed.prediction.probs
        tokens, lengths, labels = self.prepare(file)
        arrays = PairArrays(labels, np.zeros((len(labels), 2), dtype=np.float32))
        data = PairDataset(tokens, arrays, self.formatter, "plain")
        out = np.zeros((len(lengths), 2), dtype=np.float32)
        with torch.inference_mode():
            for rows in sorted_batches(lengths, self.tokens, 64):
                batch = self.collate([data[int(i)] for i in rows])
                out[rows] = self.model(batch["input_ids"], batch["attention_mask"]).numpy()
        return out

    def measure(self, file: Path) -> dict[str, float]:
        """Seconds of ``prep`` and ``inference`` over one file."""
        t0 = time.perf_counter()
        self.prepare(file)
        t1 = time.perf_counter()
        self.infer(file)
        return {"prep": t1 - t0, "inference": time.perf_counter() - t1}


def main(args: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of prep and of inference over ``args["file"]``."""
    if args.get("threads"):
        torch.set_num_threads(args["threads"])
    return_freed_memory(args.get("malloc_mmap_threshold"))  # as arena.predict does
    pipe = Pipeline(args)
    # warm-up on a few rows: one-time allocations (Arrow pools, tokenizer threads, kernels)
    # belong to the baseline, not to the rows
    pipe.prepare(Path(args["warmup"]))
    pipe.infer(Path(args["warmup"]))
    gc.collect()
    peaks, ok = {}, True
    start_rss = _status_kb("VmRSS")
    ok = reset_peak() and ok
    prepared = pipe.prepare(Path(args["file"]))
    peaks["prep"] = _status_kb("VmHWM") - start_rss
    held = _status_kb("VmRSS") - start_rss
    del prepared
    gc.collect()
    for stage in ("inference", "inference_repeat"):  # the repeat: per-shape caches exist by now
        rss = _status_kb("VmRSS")
        ok = reset_peak() and ok
        pipe.infer(Path(args["file"]))
        peaks[stage] = _status_kb("VmHWM") - rss
    return {
        "mode": args["mode"],
        "peak_mb": {k: v / 1024 for k, v in peaks.items()},
        "held_after_prep_mb": held / 1024,
        "peak_reset": ok,
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
