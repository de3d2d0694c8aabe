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
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from arena.data.readers import read_pairs
from arena.inference.ensemble import TTA, Ensemble
from arena.inference.predictor import Predictor
from arena.inference.submission import detect_layout, evaluate, write_outputs
from arena.models.quant import torch_dtype

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


def load_ensemble(cfg: DictConfig, device: torch.device) -> Ensemble:
    """The checkpoints of ``cfg.ckpt`` (one or a list) with ``cfg.weights`` and ``cfg.combine``."""
    autocast = torch_dtype(cfg.autocast) if cfg.autocast else None
    members = [
        Predictor.from_checkpoint(
            path,
            cache_dir=Path(cfg.paths.cache_dir),
            device=device,
            autocast=autocast,
            batch_size=cfg.batch_size,
            max_tokens=cfg.max_tokens,
        )
        for path in _as_list(cfg.ckpt)
    ]
    weights = None if cfg.weights is None else [float(w) for w in _as_list(cfg.weights)]
    return Ensemble(members, weights, cfg.combine)


def read_test(cfg: DictConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pair table of ``cfg.data.test_file`` and its read report."""
    data = cfg.data
    if not Path(data.test_file).is_file():
        raise FileNotFoundError(f"data.test_file={data.test_file} is not a file")
    if data.empty == "drop":
        raise ValueError("a submission needs every row: data.empty=drop is not allowed here")
    columns = OmegaConf.to_container(data.columns) if data.columns else None
    table, report = read_pairs(
        data.test_file,
        format=data.format,
        columns=columns,  # type: ignore[arg-type]
        surrogates=data.surrogates,
        empty=data.empty,
    )
    return table, asdict(report)


def predict_run(cfg: DictConfig) -> dict[str, Any]:
    """Predict ``cfg.data.test_file``, write the outputs (rank 0) and return the summary."""
    tta = TTA(cfg.tta, cfg.uncertain_fraction, cfg.time_budget_s, cfg.uncertainty)
    table, report = read_test(cfg)
    layout = detect_layout(cfg.data.test_file) if cfg.submission == "auto" else cfg.submission
    device = resolve_device(cfg.device)
    _init_distributed(device)
    began = time.perf_counter()
    ensemble = load_ensemble(cfg, device)
    load_seconds = time.perf_counter() - began
    result = ensemble.predict(table, tta)
    n = len(table)
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
        **evaluate(result.probs, table["label"].to_numpy()),
    }
    if ensemble.members[0].rank == 0:
        write_outputs(
            Path(cfg.paths.output_dir), table["id"].to_numpy(), result.probs, layout, summary
        )
        log.info(
            "predicted %d rows at %.1f rows/s into %s",
            n,
            summary["rows_per_second"] or 0,
            cfg.paths.output_dir,
        )
    return summary
