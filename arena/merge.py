"""Merge K fold checkpoints into one model; score it against the folds' logit ensemble; export a
bitsandbytes 8-bit / 4-bit copy.

Usage:
    python -m arena.merge ckpts=[<run0>,<run1>,<run2>] output_dir=<dir>            # method=delta
    python -m arena.merge ckpts=[...] output_dir=<dir> method=factor data.test_file=val.parquet
    python -m arena.merge ckpts=[...] output_dir=<dir> export_bits=8                # + int8 copy
    python -m arena.predict ckpt=<dir>/checkpoints/final data.test_file=test.parquet quantize=8

Writes into ``output_dir``: ``checkpoints/final/`` (the merged model, a checkpoint that
``arena.predict`` loads), ``checkpoints/quantized_<bits>bit/`` with ``export_bits``, and
``summary.json``: ``method``, ``ckpts``, ``n_folds``, ``merge_seconds`` and, with
``data.test_file``, ``n_rows``, the merged model's ``acc`` / ``log_loss``, the fold ensemble's
(``combine=logit``) ``ensemble_acc`` / ``ensemble_log_loss``, their ``max_abs_prob_diff`` and an
``export`` block comparing the quantized copy with the merged model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, cast

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from arena.data.chunks import ReadOptions
from arena.data.readers import read_pairs
from arena.distributed import resolve_device
from arena.inference.ensemble import Ensemble, combine
from arena.inference.submission import compare_probs, quantized_block
from arena.models.checkpoint import checkpoint_dir
from arena.models.merge import merge_checkpoints, quantized_copy, save_merged
from arena.models.quant import quantization_from_bits, torch_dtype
from arena.utils.config import register_resolvers
from arena.utils.io import write_json

register_resolvers()
log = logging.getLogger(__name__)


def _log_probs(cfg: DictConfig, path: Path, table: pd.DataFrame, device: torch.device) -> Any:
    """(n, C) log probabilities of every row of ``table`` under one checkpoint, loaded as saved
    and formatted with its training budget (the merged model and its folds alike)."""
    member = Ensemble.from_checkpoints(
        [path],
        cache_dir=Path(cfg.paths.cache_dir),
        device=device,
        autocast=torch_dtype(cfg.autocast) if cfg.autocast else None,
        batch_size=cfg.batch_size,
        max_tokens=cfg.max_tokens,
    ).members[0]
    return member.log_probs(member.encode(table), np.arange(len(table)))


def _read_held_out(cfg: DictConfig) -> pd.DataFrame:
    data = cfg.data
    columns = cast(dict[str, str], OmegaConf.to_container(data.columns)) if data.columns else None
    read = ReadOptions.for_file(
        data.test_file,
        format=data.format,
        columns=columns,
        surrogates=data.surrogates,
        empty=data.empty,
    )
    return read_pairs(read.path, **read.kwargs())[0]  # type: ignore[arg-type]


def compare(
    cfg: DictConfig, table: pd.DataFrame, folds: list[Path], merged: Path, export: Path | None
) -> dict[str, Any]:
    """Score ``table`` with the merged model, the folds' logit ensemble and the exported copy."""
    device = resolve_device(cfg.device)
    labels = table["label"].to_numpy()
    parts = [_log_probs(cfg, p, table, device) for p in folds]  # one fold in memory at a time
    ensemble = combine(parts, [1 / len(folds)] * len(folds), "logit")
    probs = np.exp(_log_probs(cfg, merged, table, device))
    out = {"n_rows": len(table), **compare_probs(probs, ensemble, labels, "ensemble")}
    if export is not None:
        quantized = np.exp(_log_probs(cfg, export, table, device))
        out["export"] = quantized_block(int(cfg.export_bits), quantized, probs, labels)
    return out


def merge_run(cfg: DictConfig) -> dict[str, Any]:
    """Merge ``cfg.ckpts``, save, optionally export and compare; returns the summary."""
    ckpts = list(cfg.ckpts) if OmegaConf.is_list(cfg.ckpts) else [cfg.ckpts]
    folds = [checkpoint_dir(str(p)) for p in ckpts]
    bits = quantization_from_bits(cfg.export_bits)  # bad values fail before any work
    table = _read_held_out(cfg) if cfg.data.test_file else None
    out, cache = Path(cfg.paths.output_dir), Path(cfg.paths.cache_dir)
    began = time.perf_counter()
    model, tokenizer, spec = merge_checkpoints(folds, method=cfg.method, cache_dir=cache)
    merged = save_merged(model, tokenizer, spec, out / "checkpoints" / "final")
    del model
    summary: dict[str, Any] = {
        "method": cfg.method,
        "ckpts": [str(p) for p in folds],
        "n_folds": len(folds),
        "checkpoint": str(merged),
        "merge_seconds": time.perf_counter() - began,
    }
    export = None
    if bits not in (None, "none"):
        copy = quantized_copy(merged, bits, cache_dir=cache)
        export = save_merged(*copy, out / "checkpoints" / f"quantized_{bits}")
        summary["export"] = {"bits": int(cfg.export_bits)}
    if table is not None:
        summary |= compare(cfg, table, folds, merged, export)
    if export is not None:
        summary["export"]["checkpoint"] = str(export)
    write_json(out / "summary.json", summary)
    log.info("merged %d checkpoints (%s) into %s", len(folds), cfg.method, merged)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="merge")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry; returns the summary."""
    return merge_run(cfg)


if __name__ == "__main__":
    main()
