"""Compare runs: group them by configuration, average over folds, pick the best, read OOF files.

Usage::

    table = load_runs([sweep_dir])
    configs = aggregate(table)                      # one row per config, mean and std over folds
    best = pick_best(configs, "val/log_loss")       # lowest log loss among non-collapsed configs
    oof = load_oof(table)                           # every run's OOF rows with labels
    reliability(oof)                                # calibration bins per config
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from arena.data.schema import LABEL_NAMES
from arena.report.runs import RunTable
from arena.report.wandb_offline import find_wandb_files, read_wandb_run

__all__ = [
    "aggregate",
    "attach_labels",
    "language_accuracy",
    "load_history",
    "load_oof",
    "metric_mode",
    "pick_best",
    "probabilities",
    "reliability",
]

Mode = Literal["auto", "min", "max"]
METRICS = ("val/acc", "val/log_loss", "val/swap_consistency", "val/auroc", "val/ece")
_LOWER_IS_BETTER = ("log_loss", "ece", "loss", "ce", "total")


def metric_mode(metric: str, mode: Mode = "auto") -> Literal["min", "max"]:
    """``min`` for losses and calibration error, ``max`` for accuracy-like metrics."""
    if mode != "auto":
        return mode
    name = metric.split("/")[-1].removesuffix("_tta")
    return "min" if name in _LOWER_IS_BETTER else "max"


def aggregate(table: RunTable, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One row per config: hyper-parameters, ``n_runs``, folds, ``collapsed`` (any run) and
    ``<metric>_mean`` / ``<metric>_std`` over its runs (folds) for each metric present."""
    runs = table.runs
    present = [m for m in metrics if m in runs.columns]
    rows = []
    for config, group in runs.groupby("config", sort=False):
        row: dict[str, Any] = {"config": config}
        row.update({h: group[h].iloc[0] for h in table.hparams})
        folds = sorted(str(f) for f in group["fold"].dropna().unique())
        row.update(n_runs=len(group), folds=",".join(folds))
        row["collapsed"] = bool(group["collapsed"].any())
        for m in present:
            values = pd.to_numeric(group[m], errors="coerce")
            row[f"{m}_mean"] = values.mean()
            row[f"{m}_std"] = values.std(ddof=0) if len(values) > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def pick_best(configs: pd.DataFrame, metric: str, mode: Mode = "auto") -> dict[str, Any]:
    """The best config by ``<metric>_mean``; collapsed configs only when nothing else is left.

    Raises:
        KeyError: when no run has ``metric``.
    """
    column = f"{metric}_mean"
    if column not in configs.columns or configs[column].isna().all():
        have = [c.removesuffix("_mean") for c in configs.columns if c.endswith("_mean")]
        raise KeyError(f"metric {metric!r} is in no run summary; available: {have}")
    ok = configs[~configs["collapsed"] & configs[column].notna()]
    pool = ok if len(ok) else configs[configs[column].notna()]
    direction = metric_mode(metric, mode)
    index = pool[column].idxmin() if direction == "min" else pool[column].idxmax()
    best = pool.loc[index]
    return {
        "config": best["config"],
        "metric": metric,
        "mode": direction,
        "value": float(best[column]),
        "std": float(best[f"{metric}_std"]),
        "n_runs": int(best["n_runs"]),
        "collapsed": bool(best["collapsed"]),
        "hparams": {k: _plain(best[k]) for k in configs.columns if k in _hparam_columns(configs)},
    }


def _hparam_columns(configs: pd.DataFrame) -> list[str]:
    fixed = {"config", "n_runs", "folds", "collapsed"}
    return [c for c in configs.columns if c not in fixed and not c.endswith(("_mean", "_std"))]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def attach_labels(run_dir: str | Path, oof: pd.DataFrame) -> pd.DataFrame:
    """``oof`` with ``label`` and ``language``: kept when the file has them (arena writes them),
    else joined by id from the training data named in the run's ``.hydra/config.yaml``.

    Raises:
        ValueError: naming the run dir when labels can be found neither way.
    """
    if "label" in oof.columns:
        return oof if "language" in oof.columns else oof.assign(language="unknown")
    path = Path(run_dir) / ".hydra" / "config.yaml"
    data = (yaml.safe_load(path.read_text()) or {}).get("data", {}) if path.is_file() else {}
    if data.get("train_files"):
        from arena.data.readers import read_many

        kw = {k: data[k] for k in ("columns", "surrogates", "empty") if k in data}
        pairs = read_many(data["train_files"], **kw)[0]
    elif data.get("synthetic"):
        from arena.data.synthetic import make_synthetic

        pairs = make_synthetic(**data["synthetic"])
    else:
        raise ValueError(
            f"{run_dir}/oof.parquet has no label column and {path} names no training data"
        )
    known = pairs.set_index("id")[["label", "language"]]
    missing = ~oof["id"].isin(known.index)
    if missing.any():
        raise ValueError(
            f"{run_dir}/oof.parquet: {int(missing.sum())} ids are not in the training data "
            f"named by {path} (e.g. {oof.loc[missing, 'id'].iloc[0]!r})"
        )
    return oof.join(known, on="id")


def load_oof(table: RunTable) -> pd.DataFrame:
    """Every run's ``oof.parquet`` with ``run``, ``config``, ``label`` and ``language`` columns;
    runs without one are skipped (an empty table when none has one)."""
    frames = []
    for run, config, path in table.runs[["run", "config", "path"]].itertuples(index=False):
        file = Path(path) / "oof.parquet"
        if not file.is_file():
            continue
        oof = attach_labels(path, pd.read_parquet(file))
        frames.append(oof.assign(run=run, config=config))
    if not frames:
        return pd.DataFrame(columns=["run", "config", "id", "label", "language"])
    return pd.concat(frames, ignore_index=True)


def probabilities(oof: pd.DataFrame) -> np.ndarray:
    """(n, C) probabilities in label order (``prob_model_a``, ``prob_model_b`` [, ``prob_tie``])."""
    names = [f"prob_{n}" for n in LABEL_NAMES if f"prob_{n}" in oof.columns]
    return oof[names].to_numpy(dtype=np.float64)


def reliability(oof: pd.DataFrame, n_bins: int = 10) -> pd.DataFrame:
    """Top-label calibration per config: in each confidence bin, the mean confidence, the
    accuracy and the count; plus the expected calibration error ``ece`` of each config.

    Returns:
        Columns ``config, bin, confidence, accuracy, count, ece`` (labelled rows only).
    """
    rows = []
    labelled = oof[oof["label"] >= 0] if len(oof) else oof
    for config, group in labelled.groupby("config", sort=False):
        probs = probabilities(group)
        confidence, hit = probs.max(1), probs.argmax(1) == group["label"].to_numpy()
        bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
        ece = sum(
            abs(confidence[bins == b].mean() - hit[bins == b].mean()) * (bins == b).mean()
            for b in np.unique(bins)
        )
        for b in np.unique(bins):
            sel = bins == b
            rows.append(
                {
                    "config": config,
                    "bin": int(b),
                    "confidence": float(confidence[sel].mean()),
                    "accuracy": float(hit[sel].mean()),
                    "count": int(sel.sum()),
                    "ece": float(ece),
                }
            )
    return pd.DataFrame(rows, columns=["config", "bin", "confidence", "accuracy", "count", "ece"])


def language_accuracy(table: RunTable, oof: pd.DataFrame | None = None) -> pd.DataFrame:
    """Accuracy per config and language, averaged over the config's runs.

    Taken from the summaries' ``acc_by_language``; runs without it are computed from their OOF
    rows when ``oof`` is given.

    Returns:
        Columns ``config, language, acc, n_runs``.
    """
    per_run = table.languages[["run", "config", "language", "acc"]]
    if oof is not None and len(oof):
        todo = oof[~oof["run"].isin(per_run["run"]) & (oof["label"] >= 0)]
        if len(todo):
            hit = probabilities(todo).argmax(1) == todo["label"].to_numpy()
            computed = (
                todo.assign(acc=hit.astype(float))
                .groupby(["run", "config", "language"], as_index=False)["acc"]
                .mean()
            )
            per_run = pd.concat([per_run, computed], ignore_index=True)
    out = per_run.groupby(["config", "language"], sort=False, as_index=False).agg(
        acc=("acc", "mean"), n_runs=("run", "nunique")
    )
    return out.sort_values(["config", "language"], ignore_index=True)


def load_history(table: RunTable) -> pd.DataFrame:
    """The logged history of every run with an offline W&B run (the latest one per run dir),
    with ``run`` and ``config`` columns; empty when no run logged to W&B."""
    frames = []
    for run, config, path in table.runs[["run", "config", "path"]].itertuples(index=False):
        files = list(find_wandb_files(path))
        if files:
            frames.append(read_wandb_run(files[-1]).history.assign(run=run, config=config))
    if not frames:
        return pd.DataFrame(columns=["run", "config", "_step"])
    return pd.concat(frames, ignore_index=True)
