"""The DataModule on synthetic pairs with a twin tokenizer: folds and batches, training on every
row, what training rows need, extra training files."""

from __future__ import annotations

from pathlib import Path

import pytest

from arena.data import Template
from arena.data.synthetic import make_synthetic
from tests.helpers import datamodule

TEMPLATE = Template(prefix="<|im_start|>user\n", suffix="<|im_end|>")


def test_datamodule_folds_and_batches(tokenizer, tmp_path: Path) -> None:
    dm = datamodule(tokenizer, tmp_path)
    dm.setup("fit")
    train_ids, val_ids = set(dm.train_df["id"]), set(dm.val_df["id"])
    assert not train_ids & val_ids and len(train_ids | val_ids) == 300
    assert (dm.val_df["fold"] == 0).all()
    batch = next(iter(dm.train_dataloader()))
    assert (
        batch["input_ids"].shape[1] <= 96
        and batch["attention_mask"].dtype.is_floating_point is False
    )
    val = next(iter(dm.val_dataloader()))
    assert val["input_ids"].shape[0] == 2 * val["label"].shape[0]  # both orders for swap TTA
    assert dm.report["n_train"] + dm.report["n_val"] == 300


def test_fold_none_trains_on_everything(tokenizer, tmp_path: Path) -> None:
    dm = datamodule(tokenizer, tmp_path, fold=None)
    dm.setup("fit")
    assert len(dm.train_df) == 300 and dm.val_set is None and dm.val_dataloader() == []


def test_training_rows_need_targets_and_enough_classes(tokenizer, tmp_path: Path) -> None:
    from arena.data.schema import DataError
    from arena.lit.datamodule import check_trainable

    df = make_synthetic(20, seed=5, n_classes=3)
    with pytest.raises(DataError, match="data.n_classes=3"):
        check_trainable(df, 2)
    check_trainable(df, 3)
    df.loc[3, "label"] = -1
    with pytest.raises(DataError, match="1 rows have neither"):
        check_trainable(df, 3)


def test_extra_train_files_always_train_and_keep_the_folds(tokenizer, tmp_path: Path) -> None:
    from arena.data.writers import write_pairs

    official = write_pairs(make_synthetic(200, seed=8), tmp_path / "official.csv")
    pseudo = make_synthetic(60, seed=9).assign(id=[f"pseudo-{i}" for i in range(60)])
    extra = write_pairs(pseudo, tmp_path / "pseudo.csv")
    plain = datamodule(tokenizer, tmp_path, synthetic=None, train_files=[str(official)])
    mixed = datamodule(
        tokenizer, tmp_path, synthetic=None, train_files=[str(official)], extra_train_files=[extra]
    )
    plain.setup("fit"), mixed.setup("fit")
    assert set(mixed.val_df["id"]) == set(plain.val_df["id"])  # same folds, no pseudo row
    assert set(mixed.train_df["id"]) == set(plain.train_df["id"]) | set(pseudo["id"])
    assert [r["role"] for r in mixed.report["read"]] == ["train", "extra_train"]
