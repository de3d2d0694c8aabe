"""Matplotlib figures for the EDA notebook and the run comparison.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no
global state and no GUI backend (they render with Agg when saved), while a notebook still shows
a returned figure inline.

Usage::

    fig = metric_by_fold(table.runs, "val/log_loss")
    save_figure(fig, out / "log_loss_by_fold.png")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from arena.utils.io import atomic_path

__all__ = [
    "eda_figures",
    "history_curves",
    "language_accuracy_plot",
    "metric_by_fold",
    "metric_by_hparam",
    "reliability_plot",
    "save_figure",
    "swap_consistency_plot",
]


def _axes(width: float = 6.4, height: float = 4.0) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


# -- run comparison -----------------------------------------------------------------------


def metric_by_fold(runs: pd.DataFrame, metric: str) -> Figure:
    """Grouped bars: ``metric`` of every run, folds on the x axis, one bar per config; collapsed
    runs hatched."""
    fig, ax = _axes(7.5, 4.0)
    folds = sorted(runs["fold"].astype(str).unique())
    configs = list(dict.fromkeys(runs["config"]))
    width = 0.8 / max(len(configs), 1)
    for i, config in enumerate(configs):
        group = runs[runs["config"] == config]
        x = [folds.index(str(f)) + i * width for f in group["fold"]]
        hatch = ["//" if c else "" for c in group["collapsed"]]
        bars = ax.bar(x, group[metric].astype(float), width, label=_short(config))
        for bar, h in zip(bars, hatch, strict=True):
            bar.set_hatch(h)
    ax.set_xticks([j + width * (len(configs) - 1) / 2 for j in range(len(folds))], folds)
    ax.set_xlabel("fold (hatched: collapsed to the class prior)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per fold")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def metric_by_hparam(configs: pd.DataFrame, hparam: str, metric: str) -> Figure:
    """``metric`` mean ± std over folds against the values of one hyper-parameter."""
    fig, ax = _axes()
    data = configs.sort_values(hparam, key=lambda s: pd.to_numeric(s, errors="coerce"))
    numeric = pd.to_numeric(data[hparam], errors="coerce")
    x = numeric if numeric.notna().all() else np.arange(len(data))
    ax.errorbar(x, data[f"{metric}_mean"], yerr=data[f"{metric}_std"], fmt="o-", capsize=4)
    if numeric.notna().all() and (numeric > 0).all() and numeric.max() / numeric.min() >= 100:
        ax.set_xscale("log")
    elif not numeric.notna().all():
        ax.set_xticks(x, [_short(str(v), 20) for v in data[hparam]], rotation=20)
    ax.set_xlabel(hparam)
    ax.set_ylabel(f"{metric} (mean ± std over folds)")
    ax.set_title(f"{metric} by {hparam}")
    return fig


def language_accuracy_plot(languages: pd.DataFrame) -> Figure:
    """Heat map of accuracy per config (rows) and language (columns)."""
    table = languages.pivot(index="config", columns="language", values="acc")
    fig, ax = _axes(1.5 + 0.8 * table.shape[1], 1.5 + 0.5 * table.shape[0])
    image = ax.imshow(table.to_numpy(dtype=float), cmap="RdYlGn", vmin=0.3, vmax=0.9)
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
    ax.set_yticks(range(table.shape[0]), [_short(c) for c in table.index])
    for (i, j), value in np.ndenumerate(table.to_numpy(dtype=float)):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="small")
    fig.colorbar(image, ax=ax, label="accuracy")
    ax.set_title("accuracy per language")
    return fig


def swap_consistency_plot(configs: pd.DataFrame) -> Figure:
    """Bars of ``val/swap_consistency`` (mean ± std over folds) per config."""
    fig, ax = _axes()
    y = np.arange(len(configs))
    ax.barh(
        y,
        configs["val/swap_consistency_mean"],
        xerr=configs["val/swap_consistency_std"],
        capsize=4,
    )
    ax.set_yticks(y, [_short(c) for c in configs["config"]])
    ax.set_xlim(0, 1)
    ax.set_xlabel("swap consistency (same winner after exchanging A and B)")
    ax.set_title("swap consistency")
    return fig


def reliability_plot(bins: pd.DataFrame) -> Figure:
    """Reliability diagram: accuracy against mean confidence per bin, one line per config."""
    fig, ax = _axes(6.0, 5.0)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfectly calibrated")
    for config, group in bins.groupby("config", sort=False):
        label = f"{_short(str(config))} (ECE {group['ece'].iloc[0]:.3f})"
        ax.plot(group["confidence"], group["accuracy"], "o-", label=label)
    ax.set_xlabel("confidence (top-label probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("calibration (out-of-fold)")
    ax.legend(fontsize="small")
    return fig


def history_curves(history: pd.DataFrame, metric: str) -> Figure:
    """Logged ``metric`` against the step, one line per run (``history`` has ``run``, ``_step``
    or ``trainer/global_step``, and ``metric`` columns, as built from W&B runs)."""
    fig, ax = _axes()
    step = "trainer/global_step" if "trainer/global_step" in history.columns else "_step"
    for run, group in history.dropna(subset=[metric]).groupby("run", sort=False):
        config = f" ({group['config'].iloc[0]})" if "config" in group else ""
        ax.plot(group[step], group[metric], "o-", label=_short(f"{run}{config}", 60))
    ax.set_xlabel(step)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} during training (W&B)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


# -- EDA ----------------------------------------------------------------------------------


def _bars(ax: Axes, labels: list[str], values: list[float], title: str, xlabel: str) -> None:
    y = np.arange(len(labels))
    ax.barh(y, values)
    ax.set_yticks(y, [_short(str(v), 30) for v in labels])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)


def _label_plot(balance: pd.DataFrame) -> Figure:
    fig, ax = _axes()
    ax.bar(balance["label"], balance["share"])
    ax.set_ylabel("share of rows")
    ax.set_title("label balance")
    return fig


def _length_plot(sizes: pd.DataFrame) -> Figure:
    fig, ax = _axes()
    for column in ("prompt", "response_a", "response_b"):
        ax.hist(np.log10(sizes[column].clip(lower=1)), bins=40, alpha=0.5, label=column)
    ax.set_xlabel("log10 characters (all turns)")
    ax.set_ylabel("rows")
    ax.set_title("lengths")
    ax.legend()
    return fig


def _longer_plot(longer: pd.DataFrame) -> Figure:
    fig, ax = _axes()
    ax.bar(longer["bin"], longer["longer_wins"])
    ax.axhline(0.5, ls="--", color="grey")
    ax.set_xlabel("relative length gap |a-b|/max(a,b)")
    ax.set_ylabel("share of decisive rows won by the longer response")
    ax.tick_params(axis="x", labelrotation=20)
    ax.set_title("does the longer response win?")
    return fig


def _position_plot(position: pd.DataFrame) -> Figure:
    fig, ax = _axes(5.0, 3.5)
    shares = position[["a_wins", "b_wins", "ties"]].iloc[0]
    ax.bar(["A wins", "B wins", "tie"], shares.to_numpy(dtype=float))
    ax.set_ylabel("share of labelled rows")
    ax.set_title(f"position bias (A over B among decisive: {position['a_over_b'].iloc[0]:.3f})")
    return fig


def eda_figures(
    balance: pd.DataFrame,
    sizes: pd.DataFrame,
    languages: pd.DataFrame,
    win_rates: pd.DataFrame,
    longer: pd.DataFrame,
    position: pd.DataFrame,
    top: int = 20,
) -> dict[str, Figure]:
    """The EDA figures from the tables of :mod:`arena.report.eda` (same argument names); keys
    ``labels, lengths, languages, win_rates`` (only when models are named), ``longer_wins,
    position``."""
    figures = {"labels": _label_plot(balance), "lengths": _length_plot(sizes)}
    head = languages.head(top)
    fig, ax = _axes(6.4, 1.5 + 0.25 * len(head))
    _bars(ax, list(head["language"]), list(head["share"]), "language mix", "share of rows")
    figures["languages"] = fig
    if len(win_rates):
        head = win_rates.head(top)
        fig, ax = _axes(6.4, 1.5 + 0.25 * len(head))
        title = f"model win rates (top {len(head)}; ties count half)"
        _bars(ax, list(head["model"]), list(head["win_rate"]), title, "win rate")
        ax.axvline(0.5, ls="--", color="grey")
        figures["win_rates"] = fig
    figures["longer_wins"] = _longer_plot(longer)
    figures["position"] = _position_plot(position)
    return figures
