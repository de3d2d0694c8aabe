"""``data.label_correction`` through ``python -m arena.train``: the override syntax the recipes
write, the teacher sweep pinned in the run dir, the counts in ``summary.json``, and validation
still scored against the official labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena.data.synthetic import make_synthetic
from tests.integration.test_train_cli import SMALL, train


def test_train_cli_blends_a_teacher_sweep_into_the_labels(tmp_path: Path) -> None:
    rows = make_synthetic(240, seed=0, n_classes=2, noise=0.1)  # the quickstart's rows
    sweep = tmp_path / "teacher" / "multirun_1"
    probs = np.random.default_rng(0).dirichlet([1.0, 1.0], size=240)
    for k, part in enumerate(np.array_split(np.arange(240), 2)):  # two "fold runs"
        (sweep / f"f{k}").mkdir(parents=True)
        oof = pd.DataFrame(
            {
                "id": rows["id"].iloc[part],
                "prob_model_a": probs[part, 0],
                "prob_model_b": probs[part, 1],
            }
        )
        oof.to_parquet(sweep / f"f{k}" / "oof.parquet")
    run = tmp_path / "run"
    glob = tmp_path / "teacher" / "multirun_*"
    option = f"data.label_correction={{teacher: {{name: oof, runs: '{glob}'}}, weight: 0.4}}"
    train([f"hydra.run.dir={run}", *SMALL, "trainer.max_steps=2", option], tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    report = summary["label_correction"]
    assert report["rows_corrected"] == summary["n_train"] and report["rows_kept"] == 0
    assert report["weight"] == 0.4 and len(report["files"]) == 2
    in_train = ~rows["id"].isin(pd.read_parquet(run / "oof.parquet")["id"]).to_numpy()
    p_label = probs[np.flatnonzero(in_train), rows["label"].to_numpy()[in_train]]
    assert report["mean_target_change"] == pytest.approx(0.4 * (1 - p_label).mean(), rel=1e-5)
    pinned = json.loads((run / "label_correction.json").read_text())
    assert pinned["teachers"][0]["files"] == report["files"]
    assert all(str(sweep) in f for f in report["files"])
    oof = pd.read_parquet(run / "oof.parquet").set_index("id")
    official = rows.set_index("id").loc[oof.index, "label"]
    assert (oof["label"] == official).all()  # validation is scored against official labels
