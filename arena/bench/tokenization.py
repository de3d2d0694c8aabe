"""``tokenization``: the token cache, and what our formatting costs over a raw tokenizer call.

- ``cache``: :func:`cached_tokenize` into an empty cache folder (miss: hash, tokenize every
  turn, save) vs into a filled one (hit: hash, load). The hit must give identical arrays.
- ``format``: ours, :func:`tokenize_pairs` (every turn of every field, once) plus the
  :class:`Formatter` building every row under the budget, vs ``raw``: the tokenizer backend's
  ``encode_batch`` over the concatenated text of every row (the template written out as text),
  truncated to ``max_length``. ``formatter_vs_raw_encode`` is our time / raw time. Rows that fit
  the budget both ways must decode to the same text (ids may differ at field boundaries with a
  byte-level BPE; with BERT's WordPiece they are identical, reported as ``identical_ids_share``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arena.bench.common import Settings, equivalence, interleave, speedup, stats
from arena.bench.inputs import ModelKit, build_kit, load_table, sample_rows
from arena.data.format import Formatter, Template
from arena.data.tokenize import TokenizedPairs, cached_tokenize, tokenize_pairs


def joined_text(df: pd.DataFrame, t: Template) -> list[str]:
    """Every row written out as one string under the template (no truncation)."""
    return [
        t.prefix
        + t.prompt_tag
        + t.turn_sep.join(p)
        + t.a_tag
        + t.turn_sep.join(a)
        + t.b_tag
        + t.turn_sep.join(b)
        + t.suffix
        for p, a, b in zip(df["prompt"], df["response_a"], df["response_b"], strict=True)
    ]


def ours(df: pd.DataFrame, tokenizer: Any, formatter: Formatter) -> list[np.ndarray]:
    """Turn-level tokenization and budgeted formatting of every row."""
    tokens = tokenize_pairs(df, tokenizer)
    return [formatter(*tokens.fields(i)) for i in range(len(tokens))]


def raw(df: pd.DataFrame, backend: Any, template: Template) -> list[list[int]]:
    """One truncated ``encode_batch`` of the joined text (``backend`` truncates itself)."""
    return [
        e.ids for e in backend.encode_batch(joined_text(df, template), add_special_tokens=False)
    ]


def truncating_backend(tokenizer: Any, max_length: int) -> Any:
    """A copy of the fast tokenizer's backend that truncates to ``max_length``."""
    backend = type(tokenizer.backend_tokenizer).from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.enable_truncation(max_length)
    return backend


def same_tokens(a: TokenizedPairs, b: TokenizedPairs) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("ids", "offsets", "turns"))


def cache_comparison(df: pd.DataFrame, kit: ModelKit, root: Path, repeats: int) -> dict[str, Any]:
    """Miss vs hit of the on-disk token cache, interleaved."""
    warm = root / "warm"
    reference = cached_tokenize(df, kit.tokenizer, warm)
    results: list[TokenizedPairs] = []

    def miss() -> float:
        cold = Path(tempfile.mkdtemp(dir=root))
        start = time.perf_counter()
        results.append(cached_tokenize(df, kit.tokenizer, cold))
        seconds = time.perf_counter() - start
        shutil.rmtree(cold)
        return seconds

    def hit() -> float:
        start = time.perf_counter()
        results.append(cached_tokenize(df, kit.tokenizer, warm))
        return time.perf_counter() - start

    times = interleave({"miss": miss, "hit": hit}, repeats)
    same = all(same_tokens(reference, r) for r in results)
    check = equivalence("hit == miss arrays", 0.0 if same else 1.0, 0.0)
    return {"times": times, "equivalence": check, "tokens": len(reference.ids)}


def format_comparison(
    df: pd.DataFrame, kit: ModelKit, max_length: int, repeats: int
) -> dict[str, Any]:
    """Our tokenize + format vs a raw truncated ``encode_batch``, interleaved."""
    formatter = kit.formatter(max_length)
    backend = truncating_backend(kit.tokenizer, max_length)
    outputs: dict[str, list[Any]] = {"ours": [], "raw": []}

    def timed(name: str, fn: Any) -> Any:
        def go() -> float:
            start = time.perf_counter()
            outputs[name] = fn()
            return time.perf_counter() - start

        return go

    times = interleave(
        {
            "ours": timed("ours", lambda: ours(df, kit.tokenizer, formatter)),
            "raw": timed("raw", lambda: raw(df, backend, kit.template)),
        },
        repeats,
    )
    pairs = enumerate(zip(outputs["ours"], outputs["raw"], strict=True))
    fit = [i for i, (o, r) in pairs if max(len(o), len(r)) < max_length]
    decode = kit.tokenizer.decode
    differ = sum(decode(outputs["ours"][i]) != decode(outputs["raw"][i]) for i in fit)
    same_ids = sum(np.array_equal(outputs["ours"][i], outputs["raw"][i]) for i in fit)
    check = f"untruncated rows ({len(fit)}): same decoded text (share differing)"
    return {
        "times": times,
        "equivalence": equivalence(check, differ / max(len(fit), 1), 0.0),
        "identical_ids_share": same_ids / max(len(fit), 1),
    }


def run(settings: Settings, kit: ModelKit | None = None) -> dict[str, Any]:
    """Both comparisons on the same rows."""
    kit = kit or build_kit(settings)
    table, source = load_table(settings)
    df = sample_rows(table, settings.pick(200, 1500), settings.seed + 3)
    Path(settings.work_dir).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=settings.work_dir))
    try:
        cache = cache_comparison(df, kit, root, settings.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    fmt = format_comparison(df, kit, settings.max_length, settings.repeats)
    hit = speedup(cache["times"]["miss"], cache["times"]["hit"])
    cost = speedup(fmt["times"]["raw"], fmt["times"]["ours"])  # raw/ours: invert for the key
    return {
        "ratios": {
            "tokenization.cache_hit_vs_miss": hit["paired"],
            "tokenization.formatter_vs_raw_encode": 1.0 / cost["paired"],
        },
        "equivalence": {
            "tokenization.cache_hit_vs_miss": cache["equivalence"],
            "tokenization.formatter_vs_raw_encode": fmt["equivalence"],
        },
        "raw": {
            "rows": len(df),
            "data": source,
            "turn_tokens": cache["tokens"],
            "miss_tokens_per_second": cache["tokens"] / min(cache["times"]["miss"]),
            "identical_ids_share": fmt["identical_ids_share"],
            "seconds": {
                **{f"cache_{k}": stats(v) for k, v in cache["times"].items()},
                **{f"format_{k}": stats(v) for k, v in fmt["times"].items()},
            },
            "hit_vs_miss": hit,
            "ours_over_raw": {k: 1.0 / v for k, v in cost.items()},
        },
    }
