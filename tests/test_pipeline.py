"""`python -m arena.pipeline` (= `make pipeline-smoke`): the LMSYS 1st place recipe end to end on
tiny CPU backbones — two teachers x 2 folds, a distilled LoRA student x 2 folds, fold merge,
8-bit predict — then a rerun of the same command that resumes without training again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SMALL = [
    "data.synthetic.n_train=240",
    "data.synthetic.n_test=60",
    "recipe.train_args=['trainer.max_epochs=1','data.budget.max_length=96',"
    "'trainer.enable_progress_bar=false','trainer.log_every_n_steps=1']",
]


def pipeline(out: Path, cache: Path) -> dict:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "arena.pipeline", f"output_dir={out}", *SMALL]
    cmd.append(f"paths.cache_dir={cache}")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads((out / "summary.json").read_text())


def test_lmsys_pipeline_end_to_end_then_resumes(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    summary = pipeline(out, tmp_path / "cache")
    assert set(summary["teachers"]) == {"teacher_tiny_llama", "teacher_tiny_gemma2"}
    for metrics in summary["teachers"].values():
        assert metrics["n_rows"] == 240 and 0 <= metrics["acc"] <= 1 and metrics["log_loss"] > 0
    assert [s["fold"] for s in summary["students"]] == [0, 1]
    merged = summary["merged"]
    for key in ("acc", "log_loss", "ensemble_acc", "ensemble_log_loss"):
        assert np.isfinite(merged[key]), key
    assert summary["quantized"]["bits"] == 8
    assert np.isfinite(summary["quantized"]["acc"]) and summary["quantized"]["log_loss"] > 0

    # the student read both teachers' OOF stores, and its loss had their KL and cosine parts
    student = Path(summary["students"][0]["run_dir"])
    metrics = pd.read_csv(next((student / "csv").rglob("metrics.csv")))
    assert {"train/kl/0", "train/kl/1", "train/cos/0", "train/cos/1"} <= set(metrics.columns)

    sub = pd.read_csv(out / "submission.csv")
    assert list(sub.columns) == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    assert len(sub) == 60 and np.allclose(sub.iloc[:, 1:].sum(1), 1, atol=1e-5)
    assert [c.split()[2] for c in summary["commands"]] == ["arena.train"] * 3 + [
        "arena.merge",
        "arena.predict",
    ]

    again = pipeline(out, tmp_path / "cache")  # every stage complete: nothing runs twice
    assert again["commands"] == [] and again["merged"] == merged
