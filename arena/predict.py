"""Predict pair files with one checkpoint or a weighted ensemble, with optional swap TTA.

Usage:
    python -m arena.predict ckpt=<run dir or checkpoint dir> data.test_file=test.parquet \
        output_dir=<dir>                                      # WSDM test file -> id,winner
    python -m arena.predict ckpt=<run> data.test_file=test.csv output_dir=<dir> tta=full
    python -m arena.predict ckpt=[<run0>,<run1>] weights=[2,1] combine=logit \
        data.test_file=test.csv output_dir=<dir> tta=uncertain time_budget_s=3600 device=cuda
    torchrun --nproc_per_node=2 -m arena.predict ...          # rows shared over ranks

Writes into ``output_dir``: ``submission.csv`` (WSDM ``id,winner``; LMSYS
``id,winner_model_a,winner_model_b,winner_tie``, following the input file), ``probs.parquet``
(``id``, ``prob_*``), ``summary.json`` (rows/s, TTA, metrics when the file has labels) and
Hydra's ``.hydra/``.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from arena.data.chunks import ReadOptions
from arena.data.readers import read_pairs
from arena.distributed import init_distributed, resolve_device
from arena.inference.ensemble import TTA, Ensemble
from arena.inference.stream import predict_file, predict_to_files
from arena.inference.submission import (
    SUMMARY_FILE,
    evaluate,
    quantized_block,
    set_aside_previous,
    submission_layout,
    write_outputs,
)
from arena.models.quant import Quantization, quantization_from_bits, torch_dtype
from arena.utils.config import register_resolvers
from arena.utils.heap import return_freed_memory
from arena.utils.io import write_json

register_resolvers()
log = logging.getLogger(__name__)


def _as_list(value: Any) -> list[Any]:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def load_ensemble(
    cfg: DictConfig, device: torch.device, quantization: Quantization | None = None
) -> Ensemble:
    """``cfg.ckpt`` (one or a list) with ``cfg.weights`` and ``cfg.combine``, their backbones in
    ``quantization`` (default ``cfg.quantize``; None: as saved)."""
    weights = None if cfg.weights is None else [float(w) for w in _as_list(cfg.weights)]
    return Ensemble.from_checkpoints(
        _as_list(cfg.ckpt),
        weights,
        cfg.combine,
        cache_dir=Path(cfg.paths.cache_dir),
        device=device,
        quantization=quantization or quantization_from_bits(cfg.quantize),
        trust_remote_code=bool(cfg.trust_remote_code),
        autocast=torch_dtype(cfg.autocast) if cfg.autocast else None,
        batch_size=cfg.batch_size,
        max_tokens=cfg.max_tokens,
        max_length=cfg.max_length,
        packing=cfg.data.packing,
    )


def read_options(cfg: DictConfig) -> ReadOptions:
    """Checked options for ``cfg.data.test_file``: a submission needs every row."""
    data = cfg.data
    columns = cast(dict[str, str], OmegaConf.to_container(data.columns)) if data.columns else None
    try:
        return ReadOptions.for_file(
            data.test_file,
            format=data.format,
            columns=columns,
            surrogates=data.surrogates,
            empty=data.empty,
            every_row=True,
        )
    except FileNotFoundError as err:
        raise FileNotFoundError(f"data.test_file={data.test_file} is not a file") from err


def predict_run(cfg: DictConfig) -> dict[str, Any]:
    """Predict ``cfg.data.test_file``, write the outputs (rank 0) and return the summary."""
    tta = TTA(cfg.tta, cfg.uncertain_fraction, cfg.time_budget_s, cfg.uncertainty)
    read = read_options(cfg)  # bad options fail before loading; chunk_rows streams the file
    table, report = (None, {}) if cfg.chunk_rows else _read(read)
    layout = submission_layout(read.format) if cfg.submission == "auto" else cfg.submission
    device = resolve_device(cfg.device)
    init_distributed(device)
    return_freed_memory(cfg.malloc_mmap_threshold)
    began = time.perf_counter()
    ensemble = load_ensemble(cfg, device)
    load_seconds = time.perf_counter() - began
    out_dir, rank0 = Path(cfg.paths.output_dir), ensemble.members[0].rank == 0
    if rank0:  # a run that fails from here on leaves no complete-looking result
        set_aside_previous(out_dir)
    if table is None:  # streamed: probs.parquet and submission.csv are written on the way
        streamed = predict_to_files(
            ensemble, read, tta, out_dir if rank0 else None, layout=layout,
            chunk_rows=cfg.chunk_rows,
        )  # fmt: skip
        result, labels, report = streamed.prediction, streamed.labels, asdict(streamed.report)
    else:
        result, labels = ensemble.predict(table, tta), table["label"].to_numpy()
    quantized = _versus_reference(cfg, device, tta, table, read, result.probs, labels)
    n = len(labels)
    if n == 0:
        log.warning("%s has no rows: the submission is empty", cfg.data.test_file)
    summary: dict[str, Any] = {
        "n_rows": n,
        "rows_per_second": n / result.seconds if result.seconds > 0 else None,
        "predict_seconds": result.seconds,
        "plain_seconds": result.plain_seconds,
        "load_seconds": load_seconds,
        "tta": asdict(tta),
        "tta_rescored": int(len(result.rescored)),
        "ckpt": [str(p) for p in _as_list(cfg.ckpt)],
        "weights": ensemble.weights.tolist(),
        "combine": ensemble.how,
        "n_classes": ensemble.n_classes,
        "layout": layout,
        "device": str(device),
        "world_size": ensemble.members[0].world,
        "read": report,
        **evaluate(result.probs, labels),
    }
    if quantized is not None:
        summary["quantized"] = quantized
    if rank0 and table is not None:
        write_outputs(out_dir, table["id"].to_numpy(), result.probs, layout, summary)
    elif rank0:  # streamed: only the summary is left to write
        write_json(out_dir / SUMMARY_FILE, summary)
    if rank0:
        rate = summary["rows_per_second"] or 0
        scores = "".join(f"  {k} {summary[k]:.3f}" for k in ("acc", "log_loss") if k in summary)
        log.info("predicted %d rows at %.1f rows/s%s -> %s", n, rate, scores, out_dir.resolve())
    return summary


def _read(read: ReadOptions) -> tuple[pd.DataFrame, dict[str, Any]]:
    table, report = read_pairs(read.path, **read.kwargs())  # type: ignore[arg-type]
    return table, asdict(report)


def _versus_reference(
    cfg: DictConfig,
    device: torch.device,
    tta: TTA,
    table: pd.DataFrame | None,
    read: ReadOptions,
    probs: np.ndarray,
    labels: np.ndarray,
) -> dict[str, Any] | None:
    """With ``quantize=8|4 quantize_reference=true``: the same rows scored in full precision
    (streamed again when ``table`` is None, nothing written) against the quantized ones."""
    bits = quantization_from_bits(cfg.quantize)
    if not cfg.quantize_reference or bits in (None, "none"):
        return None
    reference = load_ensemble(cfg, device, "none")
    if table is not None:
        ref = reference.predict(table, tta).probs
    else:
        ref = predict_file(reference, read, tta, chunk_rows=cfg.chunk_rows).prediction.probs
    return quantized_block(int(cfg.quantize), probs, ref, labels)


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry; returns the summary. SIGTERM exits with status 143 through the usual
    clean-up (temporary files removed), as Ctrl-C does."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return predict_run(cfg)


if __name__ == "__main__":
    main()
