"""``python -m arena.merge`` (a subprocess) reports the merged model's gap to the fold ensemble,
and ``arena.predict quantize=8|4`` reports its ``quantized`` block, streamed and in memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from arena.data.synthetic import make_synthetic
from arena.inference import Predictor
from arena.models.quant import stored_quantization
from arena.predict import predict_run
from tests.conftest import CONF, ROOT
from tests.helpers import write_wsdm


def cli(module: str, args: list[str], cache: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", module, *args, f"paths.cache_dir={cache}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_merge_cli_reports_the_gap_to_the_ensemble(folds, tmp_path: Path) -> None:
    df = make_synthetic(16, seed=8, n_turns_max=1)
    test = write_wsdm(df, tmp_path / "test.parquet")
    out = tmp_path / "merge"
    args = [f"ckpts=[{folds['f0']},{folds['f1']}]", f"output_dir={out}", f"data.test_file={test}"]
    cli("arena.merge", [*args, "export_bits=8", "max_tokens=400"], folds["cache"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "delta" and summary["n_rows"] == 16
    assert summary["ckpts"] == [str(folds["f0"]), str(folds["f1"])]
    for key in ("acc", "ensemble_acc"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["log_loss"] > 0 and summary["ensemble_log_loss"] > 0
    assert 0 < summary["max_abs_prob_diff"] < 0.5  # a merge is close to, not equal to, the ensemble
    export = summary["export"]
    assert export["bits"] == 8 and 0 <= export["max_abs_prob_diff"] < 0.5
    merged = Predictor.from_checkpoint(out / "checkpoints" / "final", cache_dir=folds["cache"])
    probs = merged.predict(df)
    truth = probs[np.arange(16), df["label"].to_numpy()]
    assert summary["log_loss"] == pytest.approx(float(-np.log(truth).mean()), abs=1e-5)
    assert stored_quantization(out / "checkpoints" / "quantized_8bit" / "backbone") == "8bit"


def predict_in_process(overrides: list[str], out: Path, cache: Path) -> dict:
    """``python -m arena.predict`` without the subprocess (the import alone is most of its time)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("predict", overrides=[*overrides, f"output_dir={out}"])
    with open_dict(cfg):
        cfg.paths.cache_dir, cfg.paths.output_dir = str(cache), str(out)
    return predict_run(cfg)


def test_predict_8bit_lora_fold_streamed_reports_the_quantized_block(folds, tmp_path) -> None:
    df = make_synthetic(16, seed=9, n_turns_max=1)
    test = write_wsdm(df, tmp_path / "test.parquet")
    args = [f"ckpt={folds['f0']}", f"data.test_file={test}", "quantize=8", "chunk_rows=5"]
    out = tmp_path / "pred"
    summary = predict_in_process([*args, "quantize_reference=true"], out, folds["cache"])
    assert json.loads((out / "summary.json").read_text())["quantized"] == summary["quantized"]
    block = summary["quantized"]
    assert block["bits"] == 8 and block["acc"] == summary["acc"]
    reference = Predictor.from_checkpoint(folds["f0"], cache_dir=folds["cache"]).predict(df)
    truth = reference[np.arange(16), df["label"].to_numpy()]
    assert block["reference_log_loss"] == pytest.approx(float(-np.log(truth).mean()), abs=1e-5)
    assert block["delta_acc"] == pytest.approx(block["acc"] - block["reference_acc"])
    assert block["delta_log_loss"] == pytest.approx(block["log_loss"] - block["reference_log_loss"])
    assert 0 < block["max_abs_prob_diff"] < 0.5


def test_predict_4bit_merged_in_memory_reports_the_quantized_block(folds, merged, tmp_path) -> None:
    df = make_synthetic(12, seed=10, n_turns_max=1)
    test = write_wsdm(df, tmp_path / "test.parquet")
    args = [f"ckpt={merged}", f"data.test_file={test}", "quantize=4", "quantize_reference=true"]
    out = tmp_path / "out"
    summary = predict_in_process([*args, "chunk_rows=null"], out, folds["cache"])
    block = summary["quantized"]
    assert block["bits"] == 4 and block["log_loss"] == summary["log_loss"]
    full = Predictor.from_checkpoint(merged, cache_dir=folds["cache"]).predict(df)
    assert block["reference_acc"] == pytest.approx(float((full.argmax(1) == df["label"]).mean()))
    probs = pd.read_parquet(out / "probs.parquet").filter(like="prob_").to_numpy()
    assert block["max_abs_prob_diff"] == pytest.approx(float(np.abs(probs - full).max()), abs=1e-6)
    assert block["max_abs_prob_diff"] > 0
