"""What ``python -m arena.predict`` does: read the test file, load the checkpoints, predict, write.

Run under ``torchrun --nproc_per_node=N -m arena.predict ...`` it scores a share of the rows on
every rank (see :mod:`arena.inference.predictor`) and rank 0 writes the files.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from arena.data.chunks import file_layout
from arena.data.readers import read_pairs
from arena.heap import return_freed_memory
from arena.inference.ensemble import TTA, Ensemble
from arena.inference.predictor import Predictor
from arena.inference.stream import predict_file, predict_to_files
from arena.inference.submission import (
    SUMMARY_FILE,
    compare_probs,
    evaluate,
    set_aside_previous,
    submission_layout,
    write_outputs,
)
from arena.io import write_json
from arena.models.checkpoint import load_checkpoint
from arena.models.quant import Quantization, quantization_from_bits, torch_dtype

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:k]`` or ``auto`` (CUDA when available); under torchrun, the local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={name} but CUDA is not available; use device=cpu")
        if device.index is None and "LOCAL_RANK" in os.environ:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def _init_distributed(device: torch.device) -> None:
    """Join the process group torchrun describes (nothing to do in a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")


def _as_list(value: Any) -> list[Any]:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def load_ensemble(
    cfg: DictConfig, device: torch.device, quantization: Quantization | None = None
) -> Ensemble:
    """The checkpoints of ``cfg.ckpt`` (one or a list) with ``cfg.weights`` and ``cfg.combine``,
    their backbones loaded in ``quantization`` (default ``cfg.quantize``; None: as saved).
    Checkpoints whose backbone runs remote code are refused unless ``cfg.trust_remote_code``."""
    autocast = torch_dtype(cfg.autocast) if cfg.autocast else None
    quantization = quantization or quantization_from_bits(cfg.get("quantize"))
    kbit = quantization not in (None, "none") and device.type == "cuda"
    cache = Path(cfg.paths.cache_dir)
    members = []
    for path in _as_list(cfg.ckpt):
        loaded = load_checkpoint(
            Path(path),
            cache_dir=cache,
            quantization=quantization,
            device_map={"": str(device)} if kbit else None,  # k-bit weights load in place
            trust_remote_code=bool(cfg.get("trust_remote_code", False)),
        )
        members.append(
            Predictor.from_loaded(
                *loaded,
                cache_dir=cache,
                device=device,
                autocast=autocast,
                batch_size=cfg.batch_size,
                max_tokens=cfg.max_tokens,
                max_length=cfg.get("max_length"),  # predict only; merge scores as trained
            )
        )
    weights = None if cfg.weights is None else [float(w) for w in _as_list(cfg.weights)]
    return Ensemble(members, weights, cfg.combine)


def read_options(cfg: DictConfig) -> dict[str, Any]:
    """Checked keyword arguments of ``read_pairs``/``iter_pairs`` for ``cfg.data.test_file``."""
    data = cfg.data
    if not Path(data.test_file).is_file():
        raise FileNotFoundError(f"data.test_file={data.test_file} is not a file")
    if data.empty == "drop":
        raise ValueError("a submission needs every row: data.empty=drop is not allowed here")
    columns = cast(dict[str, str], OmegaConf.to_container(data.columns)) if data.columns else None
    return {  # the layout decided once for the whole file: the reader and submission.csv agree
        "format": file_layout(data.test_file, format=data.format, columns=columns),
        "columns": columns,
        "surrogates": data.surrogates,
        "empty": data.empty,
    }


def read_test(
    cfg: DictConfig, read: dict[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pair table of ``cfg.data.test_file`` (read with ``read``, default
    :func:`read_options`) and its read report."""
    table, report = read_pairs(cfg.data.test_file, **(read or read_options(cfg)))
    return table, asdict(report)


def predict_run(cfg: DictConfig) -> dict[str, Any]:
    """Predict ``cfg.data.test_file``, write the outputs (rank 0) and return the summary."""
    tta = TTA(cfg.tta, cfg.uncertain_fraction, cfg.time_budget_s, cfg.uncertainty)
    read = read_options(cfg)  # bad options fail before loading; chunk_rows streams the file
    table, report = (None, {}) if cfg.get("chunk_rows") else read_test(cfg, read)
    layout = submission_layout(read["format"]) if cfg.submission == "auto" else cfg.submission
    device = resolve_device(cfg.device)
    _init_distributed(device)
    return_freed_memory(cfg.get("malloc_mmap_threshold"))
    began = time.perf_counter()
    ensemble = load_ensemble(cfg, device)
    load_seconds = time.perf_counter() - began
    out_dir, rank0 = Path(cfg.paths.output_dir), ensemble.members[0].rank == 0
    if rank0:  # a run that fails from here on leaves no complete-looking result
        set_aside_previous(out_dir)
    if table is None:  # streamed: probs.parquet and submission.csv are written on the way
        streamed = predict_to_files(
            ensemble, cfg.data.test_file, tta, out_dir if rank0 else None,
            layout=layout, chunk_rows=cfg.chunk_rows, read=read,
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
        log.info(
            "predicted %d rows at %.1f rows/s into %s",
            n,
            summary["rows_per_second"] or 0,
            cfg.paths.output_dir,
        )
    return summary


def _versus_reference(
    cfg: DictConfig,
    device: torch.device,
    tta: TTA,
    table: pd.DataFrame | None,
    read: dict[str, Any],
    probs: np.ndarray,
    labels: np.ndarray,
) -> dict[str, Any] | None:
    """With ``quantize=8|4 quantize_reference=true``: the same rows scored in full precision
    (streamed again when ``table`` is None, nothing written) and :func:`quantized_block`."""
    bits = quantization_from_bits(cfg.get("quantize"))
    if not cfg.get("quantize_reference") or bits in (None, "none"):
        return None
    reference = load_ensemble(cfg, device, "none")
    if table is not None:
        ref = reference.predict(table, tta).probs
    else:
        path, rows = cfg.data.test_file, cfg.chunk_rows
        ref = predict_file(reference, path, tta, chunk_rows=rows, read=read).prediction.probs
    return quantized_block(int(cfg.quantize), probs, ref, labels)


def quantized_block(
    bits: int, probs: np.ndarray, reference: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Quantized (n, C) probabilities against full-precision ones on the same (n,) labels.

    Returns:
        ``bits``, ``max_abs_prob_diff`` and, for labelled rows, ``acc``, ``log_loss``,
        ``reference_acc``, ``reference_log_loss``, ``delta_acc``, ``delta_log_loss``
        (quantized minus reference).
    """
    block = {"bits": int(bits), **compare_probs(probs, reference, labels, "reference")}
    for key in ("acc", "log_loss"):
        if key in block:
            block[f"delta_{key}"] = block[key] - block[f"reference_{key}"]
    return block
