"""``data.label_correction`` in the DataModule: training targets are the blend, validation keeps
the official labels, swap flips the blend, soft-labelled extra rows keep theirs, and missing ids
are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena.data.correction import blend
from arena.data.schema import DataError, one_hot
from arena.data.swap import swap_probs
from arena.data.synthetic import make_synthetic
from arena.data.writers import write_pairs
from tests.helpers import datamodule


def write_teacher(ids: list[str], path: Path, seed: int = 0) -> pd.DataFrame:
    """An OOF file with Dirichlet probabilities for ``ids``; returns it indexed by id."""
    probs = np.random.default_rng(seed).dirichlet([1.0, 1.0], size=len(ids))
    frame = pd.DataFrame({"id": ids, "prob_model_a": probs[:, 0], "prob_model_b": probs[:, 1]})
    frame.to_parquet(path)
    return frame.set_index("id")


def option(path: Path, weight: float = 0.5) -> dict:
    return {"teacher": {"name": "oof", "files": [str(path)]}, "weight": weight}


def test_training_targets_blend_and_validation_stays_official(tokenizer, tmp_path: Path) -> None:
    ids = make_synthetic(300, seed=1)["id"].tolist()  # the rows datamodule() synthesizes
    teacher = write_teacher(ids, tmp_path / "oof.parquet")
    dm = datamodule(tokenizer, tmp_path, label_correction=option(tmp_path / "oof.parquet", 0.3))
    dm.setup("fit")
    train = dm.train_set.arrays
    probs = teacher.loc[dm.train_df["id"], ["prob_model_a", "prob_model_b"]].to_numpy()
    np.testing.assert_allclose(train.targets, blend(train.labels, probs, 0.3), atol=1e-6)
    assert (train.labels == dm.train_df["label"].to_numpy()).all()  # labels stay official
    val = dm.val_set.arrays
    np.testing.assert_array_equal(val.targets, one_hot(dm.val_df["label"].to_numpy(), 2))
    n = dm.train_set.n_rows
    for i in (0, 7):  # index n + i is row i swapped: its target is the blend, flipped
        swapped = dm.train_set[n + i]
        np.testing.assert_allclose(swapped["target"], swap_probs(train.targets[i]))
        assert swapped["label"] == 1 - train.labels[i]
    report = dm.report["label_correction"]
    assert report["rows_corrected"] == len(dm.train_df) and report["rows_kept"] == 0
    picked = probs[np.arange(len(probs)), train.labels]
    assert report["mean_target_change"] == pytest.approx(0.3 * (1 - picked).mean(), rel=1e-5)


def test_soft_extra_rows_keep_their_targets(tokenizer, tmp_path: Path) -> None:
    official_df = make_synthetic(80, seed=8)
    official = write_pairs(official_df, tmp_path / "official.csv")
    pseudo = make_synthetic(20, seed=9).assign(id=[f"pseudo-{i}" for i in range(20)])
    soft = np.random.default_rng(1).dirichlet([1.0, 1.0], size=20)
    frame = pd.DataFrame(
        {
            "id": pseudo["id"],
            "prompt": pseudo["prompt"].map("\n".join),
            "response_a": pseudo["response_a"].map("\n".join),
            "response_b": pseudo["response_b"].map("\n".join),
            "prob_model_a": soft[:, 0],
            "prob_model_b": soft[:, 1],
        }
    )
    frame.to_parquet(tmp_path / "pseudo.parquet")
    write_teacher(official_df["id"].tolist(), tmp_path / "oof.parquet")  # no pseudo ids needed
    dm = datamodule(
        tokenizer,
        tmp_path,
        synthetic=None,
        train_files=[str(official)],
        extra_train_files=[str(tmp_path / "pseudo.parquet")],
        label_correction=option(tmp_path / "oof.parquet"),
    )
    dm.setup("fit")
    extra = dm.train_df["fold"].to_numpy() == -1
    assert extra.sum() == 20 and dm.report["label_correction"]["rows_kept"] == 20
    np.testing.assert_allclose(dm.train_set.arrays.targets[extra], soft, atol=1e-6)
    official_targets = dm.train_set.arrays.targets[~extra]
    assert not np.isin(official_targets, (0.0, 1.0)).all()  # blended, not one-hot


def test_missing_ids_are_an_error_naming_the_file(tokenizer, tmp_path: Path) -> None:
    ids = make_synthetic(300, seed=1)["id"].tolist()
    write_teacher(ids[:250], tmp_path / "short.parquet")
    dm = datamodule(tokenizer, tmp_path, label_correction=option(tmp_path / "short.parquet"))
    with pytest.raises(DataError, match=r"short.parquet.* missing for teacher 'oof'"):
        dm.setup("fit")
