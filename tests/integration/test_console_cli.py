"""A short training run prints its run dir, no known noise and a one-line result, and its
train.log holds the whole log: Lightning's lines, captured warnings, the so-far collapse warning
and the final verdict."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import arena  # noqa: F401 - installs the filters under test
from tests.conftest import ROOT


@pytest.mark.integration
def test_short_training_run_console_and_train_log(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.synthetic.n=240",
        "data.budget.max_length=96",
        "data.batch_size=16",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",  # a validation during fit, at its last step
        # more than the 12 batches of an epoch: Lightning warns, and the warning must be logged
        "trainer.log_every_n_steps=50",
        "trainer.enable_progress_bar=false",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "arena.train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-5000:]
    for noise in ("gemm_4bit_forward", "💡", "litlogger", "LeafSpec", "FLOPs", "summary: {"):
        assert noise not in console, noise
    log = (run / "train.log").read_text()
    assert f"run dir: {run.resolve()}" in log.splitlines()[0]
    for line in ("Seed set to 42", "GPU available", "`Trainer.fit` stopped", "trainable of"):
        assert line in log, line  # Lightning's loggers and the parameter summary
    assert re.search(r"\[py\.warnings\]\[WARNING\] - .*smaller than the logging interval", log)
    assert "\n\n" not in log  # a captured warning is one line
    result = r"val/acc \d\.\d{3}  val/log_loss \d\.\d{3}  .*\(collapsed: (no|YES)\)"
    last = re.search(f"{result} -> {re.escape(str(run.resolve()))}", log)
    assert last is not None, log[-2000:]
    # the judgement during fit says "so far"; only the entry point's final verdict is definitive
    for record in re.findall(r"\[arena\.callbacks\.oof\]\[WARNING\] - (.*)", log):
        assert record.startswith("after ") and "nothing was learned" not in record
    if last.group(1) == "YES":
        assert re.search(r"\[__main__\]\[WARNING\] - .*nothing was learned", log)
