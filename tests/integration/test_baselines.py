"""``python -m arena.baselines`` as a training run's twin (a multirun with its artifacts, the
shipped layouts) and the Siamese experiment trained end to end, predicting its own OOF rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena.data.synthetic import make_synthetic
from arena.inference import Predictor
from arena.train import train_run
from tests.conftest import ROOT

SUMMARY_KEYS = {
    "val/acc",
    "val/log_loss",
    "val/auroc",
    "val/ece",
    "val/acc_tta",
    "val/swap_consistency",
    "fold",
    "n_train",
    "n_val",
    "train_seconds",
    "train_samples_per_second",
    "collapsed",
    "beats_prior",
    "prior_log_loss",
    "acc_by_language",
    "experiment",
    "seed",
}


def test_cli_multirun_writes_a_training_runs_artifacts(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "arena.baselines",
        "-m",
        "data.synthetic={n: 400, seed: 3}",
        "data.fold=1",
        "baseline=length,tfidf",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    truth = make_synthetic(400, seed=3).set_index("id")["label"]
    accuracy = {}
    runs = sorted(sweep.glob("[0-9]_*_fold1"))
    assert [r.name for r in runs] == ["0_length_fold1", "1_tfidf_fold1"]
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert set(summary) >= SUMMARY_KEYS, SUMMARY_KEYS - set(summary)
        assert summary["fold"] == 1 and summary["n_train"] + summary["n_val"] == 400
        assert (run / ".hydra" / "config.yaml").is_file()
        oof = pd.read_parquet(run / "oof.parquet")
        assert list(oof.columns[:4]) == ["id", "fold", "prob_model_a", "prob_model_b"]
        assert len(oof) == summary["n_val"] and (oof["fold"] == 1).all()
        probs = oof[["prob_model_a", "prob_model_b"]].to_numpy()
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
        pred = probs.argmax(1)
        assert np.isclose((pred == truth.loc[oof["id"]].to_numpy()).mean(), summary["val/acc"])
        accuracy[summary["baseline"]] = summary
    # synthetic lengths carry no signal: the length baseline sits at the prior and says so
    assert accuracy["length"]["collapsed"] and abs(accuracy["length"]["val/acc"] - 0.5) < 0.12
    assert not accuracy["tfidf"]["collapsed"] and accuracy["tfidf"]["val/acc"] > 0.65


@pytest.mark.parametrize("max_steps", [3, 1], ids=["epoch_end", "mid_epoch"])
def test_siamese_trains_end_to_end_and_predicts_its_oof(
    max_steps: int, compose_in, tmp_path: Path
) -> None:
    """2 steps an epoch: max_steps=1 stops fit before any validation, and the run still scores
    (and writes the OOF of) the weights it saves."""
    cfg = compose_in(
        [
            "experiment=quickstart",
            "model.model_factory.architecture=siamese",
            "data.synthetic.n=80",
            "data.budget.max_length=96",
            f"trainer.max_steps={max_steps}",
            "trainer.max_epochs=1",
            "logger=none",
        ]
    )
    assert cfg.data.layout == "siamese"
    train_run(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["global_step"] == min(max_steps, 2) and "val/acc" in summary
    assert summary["val/swap_consistency"] == 1.0
    assert summary["val/log_loss_tta"] == pytest.approx(summary["val/log_loss"], abs=1e-6)
    oof = pd.read_parquet(tmp_path / "oof.parquet")
    predictor = Predictor.from_checkpoint(tmp_path, cache_dir=Path(cfg.paths.cache_dir))
    rows = make_synthetic(80, seed=0).set_index("id").loc[oof["id"]].reset_index()
    np.testing.assert_allclose(
        predictor.predict(rows), oof[["prob_model_a", "prob_model_b"]].to_numpy(), atol=1e-5
    )


def test_experiment_and_default_layouts(compose_in) -> None:
    cfg = compose_in(["experiment=siamese_minilm_cpu"])
    assert cfg.model.model_factory.architecture == "siamese" and cfg.data.layout == "siamese"
    assert cfg.backbone.spec.name == "minilm"
    default = compose_in([])  # the quickstart is a Siamese reward model too
    assert default.model.model_factory.architecture == default.data.layout == "siamese"
    joint = compose_in(["experiment=teacher_tiny_llama"])  # model/classifier's default
    assert joint.model.model_factory.architecture == joint.data.layout == "joint"
