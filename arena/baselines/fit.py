"""What ``python -m arena.baselines`` does: read the data exactly as a training run does (same
readers, column mapping, dedup and stored folds), fit a baseline on the training folds, score the
validation fold and write ``summary.json`` and ``oof.parquet`` with a training run's keys.

Metrics use the training run's definitions (:func:`arena.lit.metrics.make_metrics`); the
baselines are swap-symmetric by construction, so their ``_tta`` keys equal the plain ones and
``val/swap_consistency`` measures the classifier before its two orders are averaged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from arena.baselines.models import PairBaseline, hard_labels, longer_wins_accuracy
from arena.data.folds import read_folded
from arena.data.schema import LABEL_NAMES, n_classes_of, report_totals
from arena.lit.datamodule import check_trainable
from arena.lit.metrics import check_warning, collapse_check, make_metrics, per_group_accuracy
from arena.utils.console import result_line
from arena.utils.io import claim_run_dir, write_json, write_parquet
from arena.utils.tracking import git_commit, scrub

log = logging.getLogger(__name__)


def load_split(data: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame, int, dict[str, Any]]:
    """(train, val, n_classes, report) for ``data.fold``, as :class:`PreferenceDataModule` splits.

    Args:
        data: the ``data`` config group (train_files or synthetic, extra_train_files, fold,
            n_folds, fold_seed, n_classes, columns, surrogates, empty, cache_dir).

    Raises:
        ValueError: no data, no validation fold, or a fold out of range.
    """
    if not data.train_files and not data.synthetic:
        raise ValueError("no data: set data.train_files=[...] (or data.synthetic={n: ...})")
    if data.fold is None or not 0 <= data.fold < data.n_folds:
        raise ValueError(f"baselines score a validation fold: data.fold in 0..{data.n_folds - 1}")
    df, reads = read_folded(
        list(data.train_files), list(data.get("extra_train_files") or []), data.synthetic,
        n_folds=data.n_folds, seed=data.fold_seed, store_dir=Path(data.cache_dir) / "folds",
        columns=data.columns, surrogates=data.surrogates, empty=data.empty,
    )  # fmt: skip
    report: dict[str, Any] = {}
    if reads:
        read = [{"role": role, **asdict(r)} for role, r in reads]
        report.update(read=read, read_total=report_totals(read))
    n_classes = int(data.n_classes or n_classes_of(df))
    check_trainable(df, n_classes)
    in_val = df["fold"].to_numpy() == data.fold
    train, val = df[~in_val].reset_index(drop=True), df[in_val].reset_index(drop=True)
    if len(val) == 0:
        raise ValueError(f"fold {data.fold} has no rows")
    report.update(n_train=len(train), n_val=len(val))
    return train, val, n_classes, report


def metrics_of(probs: np.ndarray, labels: np.ndarray, suffix: str = "") -> dict[str, float]:
    """``val/acc``, ``val/log_loss``, ``val/auroc``, ``val/ece`` (+ ``suffix``) of (n, C)
    probabilities against (n,) labels."""
    metrics = make_metrics(probs.shape[1])
    metrics.update(torch.from_numpy(probs).float(), torch.from_numpy(labels).long())
    return {f"val/{k}{suffix}": float(v) for k, v in metrics.compute().items()}


def evaluate(model: PairBaseline, val: pd.DataFrame) -> tuple[np.ndarray, dict[str, Any]]:
    """(n, C) swap-symmetric probabilities of the validation rows and their summary entries."""
    labels = hard_labels(val)
    plain, back = model.predict_both(val)
    probs = (plain + back) / 2
    out: dict[str, Any] = metrics_of(probs, labels) | metrics_of(probs, labels, "_tta")
    out["val/swap_consistency"] = float((plain.argmax(1) == back.argmax(1)).mean())
    out["val/acc_longer_wins"] = longer_wins_accuracy(val, labels)
    out |= collapse_check(probs, labels, out["val/log_loss"])
    out["acc_by_language"] = per_group_accuracy(probs.argmax(1), labels, val["language"].to_numpy())
    return probs, out


def oof_table(val: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """``id, fold, prob_model_a, prob_model_b[, prob_tie], label, language`` of the validation
    rows, as :class:`arena.callbacks.OOFWriter` writes them."""
    oof = pd.DataFrame({"id": val["id"].to_numpy(), "fold": val["fold"].to_numpy()})
    for c in range(probs.shape[1]):
        oof[f"prob_{LABEL_NAMES[c]}"] = probs[:, c]
    oof["label"], oof["language"] = val["label"].to_numpy(), val["language"].to_numpy()
    return oof


def baseline_run(cfg: DictConfig) -> float | None:
    """Fit one baseline on one fold and write the run dir; returns ``cfg.optimized_metric``."""
    out = Path(cfg.paths.output_dir)
    with claim_run_dir(out, resume=False):
        return _fit(cfg, out)


def _fit(cfg: DictConfig, out: Path) -> float | None:
    train, val, n_classes, report = load_split(cfg.data)
    model: PairBaseline = instantiate(cfg.baseline)
    start = time.perf_counter()
    model.fit(train, n_classes)
    seconds = time.perf_counter() - start
    probs, scores = evaluate(model, val)
    warning = check_warning(scores, scores["val/log_loss"])
    if warning is not None:
        log.warning(warning)
    summary = {
        **scores,
        **report,
        "experiment": cfg.experiment_name,
        "baseline": cfg.experiment_name,
        "backbone": cfg.experiment_name,
        "seed": cfg.seed,
        "fold": cfg.data.fold,
        "train_seconds": seconds,
        "train_samples_per_second": len(train) / max(seconds, 1e-9),
        "git_commit": git_commit(cfg.paths.root_dir),
    }
    write_parquet(out / "oof.parquet", oof_table(val, probs))
    write_json(out / "summary.json", scrub(summary))
    log.info("%s", result_line(summary, out))
    metric = summary.get(cfg.optimized_metric)
    return None if metric is None else float(metric)
