"""Exploratory statistics of a pair table (any file :func:`arena.data.readers.read_pairs` reads).

Every function takes a pair table (:mod:`arena.data.schema`) and returns a small DataFrame, so a
notebook can show it and :mod:`arena.report.plots` can draw it.

Usage::

    pairs, _ = read_pairs("train.parquet")
    label_balance(pairs); lengths(pairs).describe(); longer_wins(pairs); position_bias(pairs)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arena.data.schema import LABEL_A, LABEL_B, LABEL_NAMES, LABEL_TIE, UNKNOWN, UNLABELED

__all__ = [
    "label_balance",
    "language_mix",
    "lengths",
    "longer_wins",
    "model_win_rates",
    "overview",
    "position_bias",
]

_LABELS = {**dict(enumerate(LABEL_NAMES)), UNLABELED: "unlabeled"}


def _chars(column: pd.Series) -> np.ndarray:
    return np.array([sum(len(turn) for turn in turns) for turns in column], dtype=np.int64)


def lengths(pairs: pd.DataFrame) -> pd.DataFrame:
    """Characters (summed over turns) of ``prompt``, ``response_a``, ``response_b`` and turns.

    Returns:
        One row per pair: ``prompt, response_a, response_b, turns, label``.
    """
    return pd.DataFrame(
        {
            "prompt": _chars(pairs["prompt"]),
            "response_a": _chars(pairs["response_a"]),
            "response_b": _chars(pairs["response_b"]),
            "turns": [len(t) for t in pairs["prompt"]],
            "label": pairs["label"].to_numpy(),
        },
        index=pairs.index,
    )


def label_balance(pairs: pd.DataFrame) -> pd.DataFrame:
    """Count and share of each label (``model_a``, ``model_b``, ``tie``, ``unlabeled``)."""
    counts = pairs["label"].map(_LABELS).value_counts()
    order = [n for n in (*LABEL_NAMES, "unlabeled") if n in counts.index]
    out = counts.reindex(order).rename_axis("label").reset_index(name="count")
    out["share"] = out["count"] / max(len(pairs), 1)
    return out


def language_mix(pairs: pd.DataFrame) -> pd.DataFrame:
    """Rows per language (most frequent first), their share and the tie rate within each."""
    out = pairs.groupby("language").agg(
        count=("label", "size"), tie_rate=("label", lambda s: float((s == LABEL_TIE).mean()))
    )
    out["share"] = out["count"] / max(len(pairs), 1)
    return out.sort_values("count", ascending=False).reset_index()


def model_win_rates(pairs: pd.DataFrame, min_games: int = 1) -> pd.DataFrame:
    """Per model: games, wins, losses, ties and ``win_rate`` = (wins + ties / 2) / games.

    Unknown model names and unlabeled rows are left out; models with fewer than ``min_games``
    games too. Sorted by win rate, best first (empty when no model is named).
    """
    rows = pairs[(pairs["label"] >= 0)]
    sides = []
    for me, my_win in (("model_a", LABEL_A), ("model_b", LABEL_B)):
        side = pd.DataFrame(
            {
                "model": rows[me].to_numpy(),
                "win": (rows["label"] == my_win).to_numpy(),
                "tie": (rows["label"] == LABEL_TIE).to_numpy(),
                "loss": ~rows["label"].isin([my_win, LABEL_TIE]).to_numpy(),
            }
        )
        sides.append(side)
    games = pd.concat(sides, ignore_index=True)
    games = games[games["model"] != UNKNOWN]
    out = games.groupby("model").agg(
        games=("win", "size"), wins=("win", "sum"), losses=("loss", "sum"), ties=("tie", "sum")
    )
    out = out[out["games"] >= min_games]
    out["win_rate"] = (out["wins"] + out["ties"] / 2) / out["games"]
    return out.sort_values("win_rate", ascending=False).reset_index()


def longer_wins(pairs: pd.DataFrame, n_bins: int = 5) -> pd.DataFrame:
    """How often the longer response wins, overall and by how much longer it is.

    Only decisive rows (A or B won) with responses of different lengths count. Bins are quantiles
    of the relative length difference ``|len_a - len_b| / max(len_a, len_b)``.

    Returns:
        Columns ``bin`` (``"all"`` first, then the bins), ``rows``, ``longer_wins``.
    """
    size = lengths(pairs)
    decisive = size[size["label"].isin([LABEL_A, LABEL_B])]
    decisive = decisive[decisive["response_a"] != decisive["response_b"]]
    a_longer = decisive["response_a"] > decisive["response_b"]
    won = np.where(a_longer, decisive["label"] == LABEL_A, decisive["label"] == LABEL_B)
    gap = (decisive["response_a"] - decisive["response_b"]).abs() / decisive[
        ["response_a", "response_b"]
    ].max(axis=1)
    overall = float(np.mean(won)) if len(won) else np.nan
    rows = [{"bin": "all", "rows": len(decisive), "longer_wins": overall}]
    if len(decisive) >= n_bins:
        bins = pd.qcut(gap.to_numpy(), n_bins, duplicates="drop")
        frame = pd.DataFrame({"bin": bins, "won": won})
        for interval, group in frame.groupby("bin", observed=True):  # categories in gap order
            name = f"{interval.left:.2f}-{interval.right:.2f}"
            share = float(group["won"].mean())
            rows.append({"bin": name, "rows": len(group), "longer_wins": share})
    return pd.DataFrame(rows)


def position_bias(pairs: pd.DataFrame) -> pd.DataFrame:
    """Share of A wins, B wins and ties among labelled rows, and ``a_over_b`` among decisive ones
    (0.5 = no position bias)."""
    labelled = pairs[pairs["label"] >= 0]["label"]
    n = max(len(labelled), 1)
    a, b = int((labelled == LABEL_A).sum()), int((labelled == LABEL_B).sum())
    return pd.DataFrame(
        {
            "a_wins": [a / n],
            "b_wins": [b / n],
            "ties": [int((labelled == LABEL_TIE).sum()) / n],
            "a_over_b": [a / (a + b) if a + b else np.nan],
            "rows": [len(labelled)],
        }
    )


def overview(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row of headline numbers: rows, labelled, tie rate, languages, models, median lengths,
    multi-turn share, longer-wins rate and A-over-B rate."""
    size = lengths(pairs)
    labelled = pairs["label"] >= 0
    models = set(pairs["model_a"]) | set(pairs["model_b"])
    return pd.DataFrame(
        {
            "rows": [len(pairs)],
            "labelled": [int(labelled.sum())],
            "tie_rate": [float((pairs["label"] == LABEL_TIE).sum() / max(labelled.sum(), 1))],
            "languages": [pairs["language"].nunique()],
            "models": [len(models - {UNKNOWN})],
            "median_prompt_chars": [float(size["prompt"].median())],
            "median_response_chars": [
                float(np.median(np.r_[size["response_a"], size["response_b"]]))
            ],
            "multi_turn_share": [float((size["turns"] > 1).mean())],
            "longer_wins": [longer_wins(pairs)["longer_wins"].iloc[0]],
            "a_over_b": [position_bias(pairs)["a_over_b"].iloc[0]],
        }
    )
