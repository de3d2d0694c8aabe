"""Build the run-comparison report: ``index.html`` + PNGs + ``runs.csv`` + ``best.json``.

Usage::

    best = build_report(["logs/train/minilm_cpu/multirun_x"], "reports/minilm", "val/log_loss")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from arena.report.compare import (
    METRICS,
    Mode,
    aggregate,
    language_accuracy,
    load_history,
    load_oof,
    pick_best,
    reliability,
)
from arena.report.html import Section, write_html
from arena.report.plots import (
    history_curves,
    language_accuracy_plot,
    metric_by_fold,
    metric_by_hparam,
    reliability_plot,
    save_figure,
    swap_consistency_plot,
)
from arena.report.runs import RunTable, load_runs
from arena.utils.io import atomic_path, write_json

__all__ = ["build_report"]

_RUN_COLUMNS = ("run", "config", "fold", "collapsed", "n_train", "n_val", "train_seconds")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _config_section(configs: pd.DataFrame, best: dict[str, Any], metric: str) -> Section:
    shown = configs.drop(columns=[c for c in configs.columns if c.endswith("_std")])
    for column in [c for c in configs.columns if c.endswith("_mean")]:
        base = column.removesuffix("_mean")
        pairs = zip(configs[column], configs[f"{base}_std"], strict=True)
        shown[base] = [f"{m:.4f} ± {s:.4f}" for m, s in pairs]
        shown = shown.drop(columns=[column])
    highlight = {i: "collapsed" for i, c in enumerate(configs["collapsed"]) if c}
    highlight[int(configs.index[configs["config"] == best["config"]][0])] = "best"
    text = (
        f"Mean ± std over each config's runs (folds). Best by {metric} ({best['mode']}imum, "
        f"collapsed configs excluded unless nothing else is left): {best['config']} = "
        f"{best['value']:.4f} ± {best['std']:.4f}. Red rows collapsed to the class prior."
    )
    return Section("Configurations", text, shown.reset_index(drop=True), highlight=highlight)


def _metric_sections(
    table: RunTable, configs: pd.DataFrame, metric: str, out: Path
) -> list[Section]:
    runs = table.runs
    shown = [c for c in (*_RUN_COLUMNS, metric, "val/acc", "val/log_loss") if c in runs.columns]
    shown = list(dict.fromkeys(shown + [c for c in runs.columns if c.startswith("val/")]))
    images = []
    for name in dict.fromkeys((metric, "val/acc", "val/log_loss")):
        if name in runs.columns:
            path = out / f"{_slug(name)}_by_fold.png"
            images.append(save_figure(metric_by_fold(runs, name), path))
    highlight = {i: "collapsed" for i, c in enumerate(runs["collapsed"]) if c}
    sections = [Section("Runs per fold", "", runs[shown], [p.name for p in images], highlight)]
    hparam_images = [
        save_figure(
            metric_by_hparam(configs, h, metric), out / f"{_slug(metric)}_by_{_slug(h)}.png"
        ).name
        for h in table.hparams
        if configs[h].nunique() > 1
    ]
    if hparam_images:
        text = "Each point: one value of the hyper-parameter, mean ± std over folds."
        sections.append(Section("Per hyper-parameter", text, images=hparam_images))
    if "val/swap_consistency_mean" in configs.columns:
        image = save_figure(swap_consistency_plot(configs), out / "swap_consistency.png")
        text = "Share of validation pairs whose predicted winner survives exchanging A and B."
        sections.append(Section("Swap consistency", text, images=[image.name]))
    return sections


def _oof_sections(table: RunTable, out: Path) -> list[Section]:
    oof = load_oof(table)
    sections = []
    languages = language_accuracy(table, oof)
    if len(languages):
        image = save_figure(language_accuracy_plot(languages), out / "language_accuracy.png")
        wide = languages.pivot(index="config", columns="language", values="acc").reset_index()
        text = "Validation accuracy per language, averaged over each config's folds."
        sections.append(Section("Accuracy per language", text, wide, [image.name]))
    bins = reliability(oof) if len(oof) else pd.DataFrame()
    if len(bins):
        image = save_figure(reliability_plot(bins), out / "calibration.png")
        text = "Top-label reliability of the out-of-fold probabilities (10 confidence bins)."
        sections.append(Section("Calibration", text, images=[image.name]))
    history = load_history(table)
    curves = [m for m in ("val/log_loss", "val/acc", "train/total") if m in history.columns]
    if curves:
        images = [
            save_figure(history_curves(history, m), out / f"history_{_slug(m)}.png").name
            for m in curves
        ]
        sections.append(Section("Training curves (offline W&B runs)", images=images))
    return sections


def build_report(
    paths: Sequence[str | Path],
    output_dir: str | Path,
    metric: str = "val/log_loss",
    mode: Mode = "auto",
    title: str = "arena run comparison",
) -> dict[str, Any]:
    """Compare the runs under ``paths`` and write the report into ``output_dir``.

    Writes ``index.html`` (tables + figures), one PNG per figure, ``runs.csv`` (one row per
    run) and ``best.json`` (the best config by ``metric``, its hyper-parameters and run dirs).

    Returns:
        The content of ``best.json``.

    Raises:
        FileNotFoundError, ValueError: a path that is not there or holds no run.
        KeyError: ``metric`` is in no run's summary.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = load_runs(paths)
    configs = aggregate(table, tuple(dict.fromkeys((metric, *METRICS))))
    best = pick_best(configs, metric, mode)
    best["runs"] = table.runs.loc[table.runs["config"] == best["config"], "path"].tolist()
    sections = [_config_section(configs, best, metric)]
    sections += _metric_sections(table, configs, metric, out)
    sections += _oof_sections(table, out)
    with atomic_path(out / "runs.csv") as tmp:
        table.runs.to_csv(tmp, index=False)
    write_json(out / "best.json", best)
    write_html(out / "index.html", title, sections)
    return best
