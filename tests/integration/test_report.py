"""The run-comparison report and the EDA statistics, on fake-but-realistic run dirs: a 2-config x
2-fold sweep laid out as ``python -m arena.train -m`` writes it (``.hydra/``, ``summary.json``,
``oof.parquet``), an offline W&B run, and ``python -m arena.report`` as a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from arena.data.schema import LABEL_A, LABEL_B, LABEL_TIE
from arena.data.synthetic import make_synthetic
from arena.lit.metrics import collapse_check, per_group_accuracy
from arena.report import (
    aggregate,
    build_report,
    language_accuracy,
    load_history,
    load_oof,
    load_runs,
    pick_best,
)
from arena.report.eda import label_balance, longer_wins, model_win_rates, position_bias
from arena.report.runs import find_runs, read_summary
from arena.utils.io import write_json, write_parquet
from tests.conftest import ROOT, compose_cfg

N_ROWS = 120
# learning rate -> how strongly the fake model's logit follows the label (1e-4 learns best)
CONFIGS = {"0.0001": 2.5, "0.01": 0.8}
GOOD, BAD = "optimizer.lr=0.0001", "optimizer.lr=0.01"


def _run(cfg, run_dir: Path, overrides: list[str], pairs: pd.DataFrame, signal: float) -> None:
    """One fold run's artifacts, computed the way the runner and the OOF writer compute them."""
    fold = int(cfg.data.fold)
    val = pairs[pairs["fold"] == fold]
    rng = np.random.default_rng(fold * 7 + int(signal * 10))
    logit = signal * np.where(val["label"] == LABEL_A, 1.0, -1.0) + rng.normal(0, 1.0, len(val))
    prob_a = 1 / (1 + np.exp(-logit))
    probs = np.stack([prob_a, 1 - prob_a], axis=1)
    labels = val["label"].to_numpy()
    log_loss = float(-np.log(probs[np.arange(len(val)), labels]).mean())
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    oof = pd.DataFrame({"id": val["id"], "fold": fold, "prob_model_a": prob_a})
    oof["prob_model_b"], oof["label"], oof["language"] = 1 - prob_a, labels, val["language"]
    write_parquet(run_dir / "oof.parquet", oof)
    summary = {
        "val/acc": float((probs.argmax(1) == labels).mean()),
        "val/log_loss": log_loss,
        "val/swap_consistency": 0.9 if signal > 1 else 0.6,
        "acc_by_language": per_group_accuracy(probs.argmax(1), labels, val["language"].to_numpy()),
        **collapse_check(probs, labels, log_loss),
        "experiment": "quickstart",
        "seed": 42,
        "fold": fold,
        "n_train": len(pairs) - len(val),
        "n_val": len(val),
        "train_seconds": 1.5,
    }
    write_json(run_dir / "summary.json", summary)


def make_sweep(root: Path) -> Path:
    """A multirun sweep dir: ``optimizer.lr`` in CONFIGS x ``data.fold`` 0,1 (numbered subdirs)."""
    cfg = compose_cfg([], root / "compose")
    cfg.data.synthetic.n = N_ROWS
    pairs = make_synthetic(**OmegaConf.to_container(cfg.data.synthetic))
    pairs["fold"] = np.arange(len(pairs)) % 2
    sweep = root / "multirun_2026-11-22_10-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    job = 0
    for lr, signal in CONFIGS.items():
        for fold in (0, 1):
            cfg.optimizer.lr, cfg.data.fold = float(lr), fold
            overrides = [f"optimizer.lr={lr}", f"data.fold={fold}", f"data.synthetic.n={N_ROWS}"]
            _run(cfg, sweep / f"{job}_fold{fold}", overrides, pairs, signal)
            job += 1
    return sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("report"))


def test_runs_table_has_the_swept_hparam_and_one_row_per_run(sweep: Path) -> None:
    table = load_runs([sweep])
    assert table.hparams == ["optimizer.lr"]  # data.fold and the fixed override are no hparams
    assert sorted(table.runs["run"]) == ["0_fold0", "1_fold1", "2_fold0", "3_fold1"]
    assert set(table.runs["config"]) == {GOOD, BAD}
    assert sorted(table.runs["fold"]) == [0, 0, 1, 1]
    configs = aggregate(table)
    assert list(configs["n_runs"]) == [2, 2] and list(configs["folds"]) == ["0,1", "0,1"]
    good = table.runs[table.runs["config"] == GOOD]["val/acc"]
    row = configs.set_index("config").loc[GOOD]
    assert row["val/acc_mean"] == pytest.approx(good.mean())
    assert row["val/acc_std"] == pytest.approx(good.std(ddof=0))


def test_a_baseline_run_joins_the_comparison_under_its_own_config(
    sweep: Path, tmp_path: Path
) -> None:
    """``python -m arena.baselines baseline=length`` writes the same files but no optimizer."""
    run = tmp_path / "baselines" / "0_length_fold0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- baseline=length\n- data.fold=0\n")
    config = {"baseline": {"_target_": "x.Length"}, "data": {"fold": 0, "synthetic": {"n": N_ROWS}}}
    OmegaConf.save(OmegaConf.create(config), run / ".hydra" / "config.yaml")
    summary = {"val/acc": 0.55, "val/log_loss": 0.69, "fold": 0, "experiment": "length"}
    write_json(run / "summary.json", summary | {"collapsed": False})
    table = load_runs([sweep, tmp_path / "baselines"])
    assert table.hparams == ["optimizer.lr", "baseline"]  # experiment adds nothing here
    assert set(table.runs["config"]) == {GOOD, BAD, "baseline=length"}
    assert pick_best(aggregate(table), "val/log_loss")["config"] == GOOD


def test_report_picks_the_best_config_and_its_page_shows_existing_pngs(
    sweep: Path, tmp_path: Path
) -> None:
    best = build_report([sweep], tmp_path)
    assert best["config"] == GOOD and best["mode"] == "min" and best["n_runs"] == 2
    assert best["hparams"] == {"optimizer.lr": 0.0001}
    assert json.loads((tmp_path / "best.json").read_text())["config"] == GOOD
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 4
    page = (tmp_path / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert {"val_log_loss_by_fold.png", "calibration.png", "language_accuracy.png"} <= set(images)
    assert "val_log_loss_by_optimizer_lr.png" in images and "swap_consistency.png" in images
    for image in images:
        assert (tmp_path / image).read_bytes().startswith(b"\x89PNG")
    assert re.search(r'<tr class="best"><td>optimizer\.lr=0\.0001</td>', page)
    # the metric and its direction decide: the worst log loss is the other config
    configs = aggregate(load_runs([sweep]))
    assert pick_best(configs, "val/log_loss", mode="max")["config"] == BAD
    assert pick_best(configs, "val/acc")["mode"] == "max"


def test_per_language_accuracy_is_the_mean_over_folds(sweep: Path) -> None:
    table = load_runs([sweep])
    oof = load_oof(table)
    hit = (oof["prob_model_a"] < 0.5).astype(int) == oof["label"]
    per_fold = oof.assign(hit=hit).groupby(["config", "run", "language"])["hit"].mean()
    expected = per_fold.groupby(["config", "language"]).mean()
    got = language_accuracy(table).set_index(["config", "language"])["acc"]
    assert len(got) == 2 * oof["language"].nunique()
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    # without the summaries' acc_by_language the same numbers come from the OOF rows
    bare = table.__class__(table.runs, table.hparams, table.languages.iloc[:0])
    again = language_accuracy(bare, oof).set_index(["config", "language"])["acc"]
    pd.testing.assert_series_equal(again.sort_index(), got.sort_index())


def test_oof_without_labels_gets_them_from_the_training_data(sweep: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(sweep / "0_fold0"), str(run)], check=True)
    full = pd.read_parquet(run / "oof.parquet")
    write_parquet(run / "oof.parquet", full.drop(columns=["label", "language"]))
    oof = load_oof(load_runs([run]))
    assert (oof["label"].to_numpy() == full["label"].to_numpy()).all()
    assert (oof["language"].to_numpy() == full["language"].to_numpy()).all()


def test_collapsed_configs_are_never_best_unless_alone() -> None:
    configs = pd.DataFrame(
        {
            "config": ["a", "b"],
            "n_runs": [2, 2],
            "collapsed": [True, False],
            "val/log_loss_mean": [0.60, 0.65],
            "val/log_loss_std": [0.0, 0.01],
        }
    )
    assert pick_best(configs, "val/log_loss")["config"] == "b"
    assert pick_best(configs.iloc[:1], "val/log_loss")["collapsed"] is True
    with pytest.raises(KeyError, match="val/auroc"):
        pick_best(configs, "val/auroc")


def test_bad_paths_and_files_are_named(sweep: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_runs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="summary.json"):
        find_runs([tmp_path / "empty"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken/summary\.json: broken JSON"):
        read_summary(tmp_path / "broken")
    assert find_runs([sweep, sweep / "0_fold0"]) == find_runs([sweep])  # no duplicates


def test_offline_wandb_run_without_summary_is_read(tmp_path: Path) -> None:
    import wandb

    run_dir = tmp_path / "wandb_only"
    run = wandb.init(
        project="arena",
        dir=run_dir,
        group="quickstart",
        name="quickstart-fold3-seed42",
        config={"data": {"fold": 3}, "experiment_name": "quickstart"},
        mode="offline",
    )
    for step in range(3):
        run.log({"val/acc": 0.6 + 0.1 * step, "val/log_loss": 0.7 - 0.1 * step})
    run.finish()
    wandb.teardown()  # finish() can return before the service has flushed the run file
    (found,) = find_runs([tmp_path])
    summary = read_summary(found)
    assert summary["fold"] == 3 and summary["val/acc"] == pytest.approx(0.8)
    assert summary["val/log_loss"] == pytest.approx(0.5)
    history = load_history(load_runs([tmp_path]))
    assert list(history["val/acc"]) == pytest.approx([0.6, 0.7, 0.8])
    assert set(history["run"]) == {"wandb_only"}


def test_report_cli(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "arena.report", f"runs=[{sweep}]", f"output_dir={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "best.json").read_text())["config"] == GOOD
    assert (out / "index.html").is_file() and (out / ".hydra" / "config.yaml").is_file()


def test_eda_statistics_on_a_hand_made_table() -> None:
    pairs = make_synthetic(6, n_classes=3)
    pairs["label"] = [LABEL_A, LABEL_A, LABEL_B, LABEL_TIE, LABEL_A, -1]
    pairs["model_a"] = ["x", "x", "y", "x", "unknown", "x"]
    pairs["model_b"] = ["y", "y", "x", "y", "y", "y"]
    pairs["response_a"] = [["long answer"], ["s"], ["long answer"], ["a"], ["abcd"], ["a"]]
    pairs["response_b"] = [["s"], ["long answer"], ["s"], ["b"], ["abc"], ["b"]]
    balance = label_balance(pairs).set_index("label")["count"].to_dict()
    assert balance == {"model_a": 3, "model_b": 1, "tie": 1, "unlabeled": 1}
    # decisive rows with different lengths: rows 0,1,2,4; the longer wins in rows 0 and 4
    assert longer_wins(pairs, n_bins=5).iloc[0].to_dict() == {
        "bin": "all",
        "rows": 4,
        "longer_wins": 0.5,
    }
    bias = position_bias(pairs).iloc[0]
    assert bias["a_over_b"] == pytest.approx(0.75) and bias["ties"] == pytest.approx(0.2)
    rates = model_win_rates(pairs).set_index("model")
    # x: won rows 0,1 (as A) and 2 (as B), tied row 3 -> (3 + 0.5) / 4
    assert rates.loc["x", "win_rate"] == pytest.approx(3.5 / 4)
    assert rates.loc["y", "games"] == 5 and "unknown" not in rates.index
