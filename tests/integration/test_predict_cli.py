"""``python -m arena.predict`` as a subprocess: the three output files for a WSDM parquet and an
LMSYS csv, an ensemble against the library, and reproducing a training run's ``oof.parquet``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from arena.data.synthetic import make_synthetic
from arena.inference import TTA, Ensemble
from tests.conftest import ROOT
from tests.helpers import (
    write_lmsys_test,
    write_wsdm,
)


def predict_cli(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "arena.predict", *args, f"paths.cache_dir={cache}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def read_outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    names = {p.name for p in out.iterdir()}
    assert {"submission.csv", "probs.parquet", "summary.json", ".hydra"} <= names
    assert not [n for n in names if n.endswith(".tmp")]  # atomic writes left no temp file
    summary = json.loads((out / "summary.json").read_text())
    sub = pd.read_csv(out / "submission.csv", dtype={"id": str})
    return sub, pd.read_parquet(out / "probs.parquet"), summary


def test_cli_wsdm_parquet_with_labels(ckpts, predictors, tmp_path: Path) -> None:
    df = make_synthetic(30, seed=8, n_turns_max=1)
    test = write_wsdm(df, tmp_path / "test.parquet")
    out = tmp_path / "out"
    predict_cli(
        [
            f"ckpt={ckpts['fusion2']}",
            f"data.test_file={test}",
            f"output_dir={out}",
            "max_tokens=300",
        ],
        tmp_path / "cache",
    )
    sub, probs, summary = read_outputs(out)
    assert list(sub.columns) == ["id", "winner"] and sub["id"].tolist() == df["id"].tolist()
    assert list(probs.columns) == ["id", "prob_model_a", "prob_model_b"]
    p = probs[["prob_model_a", "prob_model_b"]].to_numpy()
    assert sub["winner"].tolist() == np.where(p[:, 0] >= p[:, 1], "model_a", "model_b").tolist()
    assert summary["n_rows"] == 30 and summary["rows_per_second"] > 0
    assert summary["tta"]["mode"] == "none" and summary["tta_rescored"] == 0
    assert summary["acc"] == pytest.approx(float((p.argmax(1) == df["label"]).mean()))
    truth = p[np.arange(30), df["label"].to_numpy()]
    assert summary["log_loss"] == pytest.approx(float(-np.log(truth).mean()))
    assert summary["label_counts"] == {
        "model_a": int((df["label"] == 0).sum()),
        "model_b": int((df["label"] == 1).sum()),
    }
    library = predictors["fusion2"].predict(df)  # single-turn rows: the file holds the same text
    assert np.abs(p - library).max() <= 1e-4


def test_cli_lmsys_csv_three_classes_with_uncertain_tta(ckpts, tmp_path: Path) -> None:
    df = make_synthetic(21, seed=9, n_classes=3, n_turns_max=2)
    test = write_lmsys_test(df, tmp_path / "test.csv")
    out = tmp_path / "out"
    predict_cli(
        [
            f"ckpt={ckpts['left3']}",
            f"data.test_file={test}",
            f"output_dir={out}",
            "tta=uncertain",
            "uncertain_fraction=0.5",
        ],
        tmp_path / "cache",
    )
    sub, probs, summary = read_outputs(out)
    assert list(sub.columns) == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    assert list(probs.columns) == ["id", "prob_model_a", "prob_model_b", "prob_tie"]
    assert sub["id"].tolist() == df["id"].tolist()
    assert np.abs(sub.iloc[:, 1:].to_numpy().sum(1) - 1).max() < 1e-6
    assert np.allclose(sub.iloc[:, 1:].to_numpy(), probs.iloc[:, 1:].to_numpy())
    assert summary["layout"] == "lmsys" and summary["tta_rescored"] == 11
    assert "acc" not in summary and summary["read"]["empty_responses"] == 1


def test_cli_ensemble_matches_the_library(ckpts, predictors, tmp_path: Path) -> None:
    df = make_synthetic(16, seed=10, n_turns_max=1)
    test = write_wsdm(df, tmp_path / "test.parquet")
    out = tmp_path / "out"
    pair = f"ckpt=[{ckpts['fusion2']},{ckpts['linear2']}]"
    predict_cli(
        [
            pair,
            "weights=[1,3]",
            "combine=logit",
            f"data.test_file={test}",
            f"output_dir={out}",
            "tta=full",
        ],
        tmp_path / "cache",
    )
    _, probs, summary = read_outputs(out)
    assert summary["weights"] == [0.25, 0.75] and summary["tta_rescored"] == 16
    members = [predictors["fusion2"], predictors["linear2"]]
    expected = Ensemble(members, [1, 3], "logit").predict(df, TTA("full")).probs
    assert np.abs(probs.iloc[:, 1:].to_numpy() - expected).max() <= 1e-4


def test_predict_reproduces_the_training_runs_oof(tmp_path: Path) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    env = {**os.environ, "WANDB_MODE": "offline"}
    train = [
        sys.executable,
        "-m",
        "arena.train",
        f"hydra.run.dir={run}",
        f"paths.cache_dir={cache}",
        "data.synthetic.n=400",
        "data.budget.max_length=96",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    ]
    proc = subprocess.run(train, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    oof = pd.read_parquet(run / "oof.parquet")
    synthetic = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["data"]["synthetic"]
    rows = make_synthetic(**synthetic).set_index("id").loc[oof["id"]].reset_index()
    test = write_wsdm(rows, tmp_path / "val.parquet", join_turns=False)
    predict_cli(
        [f"ckpt={run}", f"data.test_file={test}", f"output_dir={tmp_path / 'out'}", "tta=none"],
        cache,
    )
    probs = pd.read_parquet(tmp_path / "out" / "probs.parquet")
    merged = oof.merge(probs, on="id", suffixes=("_oof", ""))
    assert len(merged) == len(oof) == len(probs)
    diff = max(
        (merged[f"{c}_oof"] - merged[c]).abs().max() for c in ("prob_model_a", "prob_model_b")
    )
    assert diff <= 1e-4
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    trained = json.loads((run / "summary.json").read_text())
    assert summary["log_loss"] == pytest.approx(trained["val/log_loss"], abs=1e-4)
