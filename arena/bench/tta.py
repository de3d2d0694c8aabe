"""``tta``: full swap TTA vs uncertain-only TTA, rows re-scored against the metric change.

Inputs are plain probabilities ``p`` and swapped-back probabilities ``q`` (the prediction on the
A/B-swapped pair with its classes swapped back) of labelled rows. A file (``tta_file=``: parquet
with ``label, prob_model_a, prob_model_b, swapped_prob_model_a, swapped_prob_model_b``) is used
when given; a run's ``oof.parquet`` holds only one of the two, so by default the pair is
simulated, deterministically from the seed:

    s ~ N(0, 1)                       latent preference for B
    label = B with probability sigmoid(2 s)
    logit_plain   = 1.6 s + bias + e1  (bias: a position preference, e1 ~ N(0, 0.8))
    logit_swapped = 1.6 s - bias + e2  (swapped back; e2 correlated 0.5 with e1)

For every fraction f, uncertain TTA re-scores the ``ceil(f n)`` rows of smallest margin
``|p_A - p_B|`` (as ``arena.predict tta=uncertain`` does) and averages ``p`` and ``q`` there.
Re-scoring cost is counted in rows (the time of a swapped pass is proportional to it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arena.bench.common import Settings
from arena.data.labels import log_loss

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (n,) and plain / swapped-back probabilities (n, 2) as described above."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-2 * s))).astype(np.int64)
    e1 = rng.normal(scale=0.8, size=n)
    e2 = 0.5 * e1 + math.sqrt(1 - 0.25) * rng.normal(scale=0.8, size=n)
    bias = 0.3
    return label, _two_class(1.6 * s + bias + e1), _two_class(1.6 * s - bias + e2)


def _two_class(logit_b: np.ndarray) -> np.ndarray:
    p_b = 1 / (1 + np.exp(-logit_b))
    return np.stack([1 - p_b, p_b], axis=1)


def read_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, plain and swapped-back probabilities from a parquet file (see the docstring)."""
    df = pd.read_parquet(path)
    plain = df[["prob_model_a", "prob_model_b"]].to_numpy(dtype=np.float64)
    back = df[["swapped_prob_model_a", "swapped_prob_model_b"]].to_numpy(dtype=np.float64)
    return df["label"].to_numpy(dtype=np.int64), plain, back


def metrics(probs: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Accuracy and log loss of (n, C) probabilities."""
    return {"acc": float((probs.argmax(1) == label).mean()), "log_loss": log_loss(probs, label)}


def uncertain_rows(plain: np.ndarray, fraction: float) -> np.ndarray:
    """The ``ceil(fraction n)`` rows of smallest ``|p_A - p_B|`` (ties by row order)."""
    k = min(len(plain), math.ceil(fraction * len(plain) - 1e-9))
    order = np.argsort(np.abs(plain[:, 0] - plain[:, 1]), kind="stable")
    return np.sort(order[:k])


def curve(label: np.ndarray, plain: np.ndarray, back: np.ndarray) -> list[dict[str, float]]:
    """Metrics after uncertain TTA at every fraction in :data:`FRACTIONS`."""
    base = metrics(plain, label)
    full = metrics((plain + back) / 2, label)
    gain, acc_gain = base["log_loss"] - full["log_loss"], full["acc"] - base["acc"]
    out = []
    for fraction in FRACTIONS:
        rows = uncertain_rows(plain, fraction)
        probs = plain.copy()
        probs[rows] = (plain[rows] + back[rows]) / 2
        m = metrics(probs, label)
        out.append(
            {
                "fraction": fraction,
                "rows_rescored": len(rows),
                **m,
                "acc_change": m["acc"] - base["acc"],
                "log_loss_change": m["log_loss"] - base["log_loss"],
                "share_of_full_gain": (base["log_loss"] - m["log_loss"]) / gain if gain else 0.0,
                "share_of_full_acc_gain": (m["acc"] - base["acc"]) / acc_gain if acc_gain else 0.0,
            }
        )
    return out


def run(settings: Settings, tta_file: Path | None = None) -> dict[str, Any]:
    """The uncertain-TTA curve on a file or on simulated probabilities."""
    if tta_file is not None:
        label, plain, back = read_file(tta_file)
        source = str(tta_file)
    else:
        label, plain, back = simulate(settings.pick(2000, 20000), settings.seed)
        source = "simulated"
    points = curve(label, plain, back)
    at30 = next(p for p in points if p["fraction"] == 0.3)
    return {
        "ratios": {"tta.uncertain_30pct_share_of_full_gain": at30["share_of_full_gain"]},
        "raw": {
            "rows": len(label),
            "source": source,
            "plain": metrics(plain, label),
            "full": metrics((plain + back) / 2, label),
            "swap_agreement": float((plain.argmax(1) == back.argmax(1)).mean()),
            "uncertain": points,
        },
    }
