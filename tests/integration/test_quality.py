"""Expected quality (tier 3, ``slow``): the main job as a fresh clone runs it, ``python -m
arena.train`` with its embedded quickstart, learns what it learned when measured
(docs/results/2026-12-05-quickstart.md: val/acc 0.854, log loss 0.436 against the prior's 0.693,
swap consistency 1.0; 0.857-0.861 with other seeds).
A change that makes the first thing every user runs learn less fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_quickstart_learns_what_it_learned_when_measured(tmp_path: Path) -> None:
    run = tmp_path / "quickstart"
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run(
        [sys.executable, "-m", "arena.train", f"hydra.run.dir={run}"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and not summary["collapsed"]
    assert summary["val/acc"] >= 0.82, summary["val/acc"]
    assert summary["val/log_loss"] <= 0.47, summary["val/log_loss"]
    assert summary["val/swap_consistency"] >= 0.99, summary["val/swap_consistency"]
