"""``data.packing=true`` trains what padded batches train: the quickstart run on the same
batches (no token budget: ``batch_size`` rows each), packed and padded, ends at the same
out-of-fold probabilities; a backbone that cannot read packed rows is refused before training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena.train import train_run
from tests.conftest import compose_cfg

SMALL = [
    "data.synthetic.n=240",
    "data.budget.max_length=96",
    "data.batch_size=16",
    "trainer.max_steps=4",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def oof(tmp_path: Path, name: str, packing: bool) -> pd.DataFrame:
    cfg = compose_cfg([*SMALL, f"data.packing={str(packing).lower()}"], tmp_path / name)
    train_run(cfg)
    return pd.read_parquet(tmp_path / name / "oof.parquet").set_index("id").sort_index()


def test_packed_training_ends_where_padded_training_does(tmp_path: Path, one_thread: None) -> None:
    padded, packed = oof(tmp_path, "padded", False), oof(tmp_path, "packed", True)
    assert padded.index.equals(packed.index)
    probs = ["prob_model_a", "prob_model_b"]
    diff = np.abs(padded[probs].to_numpy() - packed[probs].to_numpy()).max()
    assert diff <= 1e-4, diff
    assert padded[probs].to_numpy().std(axis=0).max() > 1e-3  # the runs did move the model


def test_packing_an_encoder_is_refused_before_training(tmp_path: Path) -> None:
    overrides = ["experiment=minilm_cpu", "data.train_files=[]", "+data.synthetic={n: 64}",
                 "trainer.max_steps=1", "logger=none", "data.packing=true"]  # fmt: skip
    cfg = compose_cfg(overrides, tmp_path)
    with pytest.raises(ValueError, match="data.packing=true needs a decoder"):
        train_run(cfg)
