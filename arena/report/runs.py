"""Find run dirs (training runs, baselines, sweeps) and load them into one tidy table.

A *run dir* is a directory with a ``summary.json`` holding ``val/acc`` and ``val/log_loss`` (what
``python -m arena.train`` and the baselines write), or, without one, an offline W&B run under
``wandb/`` (its summary is read instead). A path that is not a run dir is searched for run dirs
below it, so a multirun sweep dir (numbered subdirs + ``multirun.yaml``) or a whole log folder
works too.

Usage::

    table = load_runs(["logs/train/minilm_cpu/multirun_2026-11-22_10-00-00"])
    table.runs[["config", "fold", "val/acc", "val/log_loss"]]
    table.hparams  # e.g. ["optimizer.lr"]: the overrides whose values differ between runs
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from arena.report.wandb_offline import find_wandb_files, read_wandb_run

__all__ = ["REQUIRED_METRICS", "RunTable", "find_runs", "load_runs", "read_summary"]

REQUIRED_METRICS = ("val/acc", "val/log_loss")
SUMMARY_FILE = "summary.json"
# override keys that say where or which fold a run is, not how it was configured
_NOT_HPARAMS = ("data.fold", "seed", "ckpt_path", "init_from", "plan", "logger", "tags")
_NOT_HPARAM_PREFIXES = ("hydra", "paths.", "trainer.enable_progress_bar")


@dataclass(frozen=True)
class RunTable:
    """Runs side by side.

    Attributes:
        runs: one row per run: ``run`` (a short unique name), ``path``, ``config`` (the
            hyper-parameters that differ, ``"k=v, ..."``, ``"default"`` when none do), ``fold``,
            one column per hyper-parameter and per scalar of ``summary.json``.
        hparams: the hyper-parameter columns (override keys whose values differ between runs).
        languages: long table ``run, config, fold, language, acc`` from the runs' summaries.
    """

    runs: pd.DataFrame
    hparams: list[str]
    languages: pd.DataFrame


def _is_run(path: Path) -> bool:
    summary = path / SUMMARY_FILE
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        return isinstance(data, dict) and all(k in data for k in REQUIRED_METRICS)
    return any(True for _ in find_wandb_files(path))


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run dirs named by ``paths`` or found below them (sweep dirs, log folders), sorted.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: no run dir anywhere under ``paths``.
    """
    if not paths:
        raise ValueError("no run dirs given: pass runs=[<run dir or sweep dir>,...]")
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such run or sweep directory")
        if _is_run(path):
            found[path.resolve()] = None
            continue
        below = {p.parent for p in path.rglob(SUMMARY_FILE)}
        below |= {p.parents[2] for p in path.rglob("wandb/offline-run-*/run-*.wandb")}
        for run in sorted(below):
            if _is_run(run):
                found[run.resolve()] = None
    if not found:
        raise ValueError(
            f"no run found under {[str(p) for p in paths]}: expected run dirs with a "
            f"{SUMMARY_FILE} holding {list(REQUIRED_METRICS)} (or an offline W&B run), "
            "or a sweep dir holding them"
        )
    return sorted(found)


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """A run's summary: ``summary.json``, else the summary of its offline W&B run.

    Raises:
        ValueError: naming the file when it is not a JSON object with the required metrics.
    """
    run_dir = Path(run_dir)
    path = run_dir / SUMMARY_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: broken JSON ({err.msg}, line {err.lineno})") from None
    else:
        files = list(find_wandb_files(run_dir))
        if not files:
            raise ValueError(f"{path}: missing, and no offline W&B run under {run_dir}/wandb")
        wb = read_wandb_run(files[-1])
        data = {k: v for k, v in wb.summary.items() if "/" not in k or k.startswith("val/")}
        data = {k: v for k, v in data.items() if not k.startswith("_") and _scalar(v)}
        fold = (wb.config.get("data") or {}).get("fold")
        data.setdefault("fold", fold)
        data.setdefault("experiment", wb.config.get("experiment_name", wb.group))
        path = files[-1]
    missing = [k for k in REQUIRED_METRICS if k not in data] if isinstance(data, dict) else []
    if not isinstance(data, dict) or missing:
        raise ValueError(f"{path}: expected a JSON object with {list(REQUIRED_METRICS)}")
    return data


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in out.items()}


def _read_yaml(path: Path, kind: type) -> Any:
    if not path.is_file():
        return kind()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: broken YAML ({err})") from None
    if data is None:
        return kind()
    if not isinstance(data, kind):
        raise ValueError(f"{path}: expected a YAML {kind.__name__}, found {type(data).__name__}")
    return data


def _overrides(run_dir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in _read_yaml(run_dir / ".hydra" / "overrides.yaml", list):
        key, sep, value = str(item).partition("=")
        if sep:
            out[key.lstrip("+~")] = value
    return out


def _is_hparam(key: str) -> bool:
    if key in _NOT_HPARAMS or key.startswith(_NOT_HPARAM_PREFIXES):
        return False
    return not key.endswith(("_dir", ".dir", "_file", "_files"))


def _value(config: dict[str, Any], key: str, override: str | None) -> Any:
    """The typed value from the saved config, else the override's text: a config group choice
    (``optimizer=adamw8bit``) or a value the saved (unresolved) config interpolates. None when
    the run has neither (a baseline has no ``optimizer.lr``)."""
    value = config.get(key, override)
    value = override if isinstance(value, str) and "${" in value else value
    return value if _scalar(value) else json.dumps(value, default=str)


def _hparam_values(run_dirs: list[Path], summaries: list[dict[str, Any]]) -> pd.DataFrame:
    """One column per override key (of any run) whose value differs between runs, plus
    ``experiment`` when it tells runs apart that the others do not."""
    overrides = [_overrides(p) for p in run_dirs]
    keys = [k for k in dict.fromkeys(k for o in overrides for k in o) if _is_hparam(k)]
    rows = []
    for run_dir, summary, own in zip(run_dirs, summaries, overrides, strict=True):
        config = _flatten(_read_yaml(run_dir / ".hydra" / "config.yaml", dict))
        row = {k: _value(config, k, own.get(k)) for k in keys}
        row["experiment"] = summary.get("experiment", config.get("experiment_name"))
        rows.append(row)
    table = pd.DataFrame(rows, index=range(len(rows)))
    varying = [c for c in table.columns if table[c].astype(str).nunique(dropna=False) > 1]
    others = [c for c in varying if c != "experiment"]
    if "experiment" in varying and others:
        # drop it when the other hyper-parameters already tell the runs apart (baseline=tfidf)
        keys = [table[c].map(str) for c in others]  # plain str: missing values form a group too
        if table.groupby(keys, dropna=False)["experiment"].nunique().max() == 1:
            varying.remove("experiment")
    return table[varying]


def _config_name(row: dict[str, Any]) -> str:
    """``"k=v, ..."`` over the hyper-parameters a run has (a baseline has no optimizer.lr)."""
    parts = [f"{k}={v}" for k, v in row.items() if v is not None and not pd.isna(v)]
    return ", ".join(parts) or "default"


def _names(run_dirs: list[Path]) -> list[str]:
    """Shortest unique trailing paths: ``0_fold0`` for a sweep, ``multirun_x/0_fold0`` across."""
    for depth in range(1, max(len(p.parts) for p in run_dirs) + 1):
        names = ["/".join(p.parts[-depth:]) for p in run_dirs]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in run_dirs]


def load_runs(paths: Sequence[str | Path]) -> RunTable:
    """Every run under ``paths`` (see :func:`find_runs`) with its summary and hyper-parameters."""
    run_dirs = find_runs(paths)
    summaries = [read_summary(p) for p in run_dirs]
    hparams = _hparam_values(run_dirs, summaries)
    names = _names(run_dirs)
    base = pd.DataFrame({"run": names, "path": [str(p) for p in run_dirs]})
    base["config"] = [_config_name(row) for row in hparams.to_dict("records")] or "default"
    scalars = pd.DataFrame([{k: v for k, v in s.items() if _scalar(v)} for s in summaries])
    scalars = scalars.drop(columns=[c for c in hparams.columns if c in scalars.columns])
    runs = pd.concat([base, hparams, scalars], axis=1)
    if "fold" not in runs.columns:
        runs["fold"] = None
    if "collapsed" not in runs.columns:
        runs["collapsed"] = False
    runs["collapsed"] = runs["collapsed"].fillna(False).astype(bool)
    languages = [
        {"run": name, "config": config, "fold": s.get("fold"), "language": lang, "acc": acc}
        for name, config, s in zip(names, base["config"], summaries, strict=True)
        for lang, acc in (s.get("acc_by_language") or {}).items()
    ]
    columns = ["run", "config", "fold", "language", "acc"]
    return RunTable(runs, list(hparams.columns), pd.DataFrame(languages, columns=columns))
