"""Tokenization cache, swapped views and the DataModule on synthetic pairs with a twin tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arena.data import Budget, PreferenceDataModule, Template
from arena.data.swap import swap_pairs
from arena.data.synthetic import make_synthetic
from arena.data.tokenize import cached_tokenize, tokenize_pairs
from arena.models import BackboneSpec, load_tokenizer
from arena.models.tiny import TINY_ARCH

TEMPLATE = Template(prefix="<|im_start|>user\n", suffix="<|im_end|>")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    spec = BackboneSpec(
        name="tiny_qwen2", kind="decoder", arch=TINY_ARCH["qwen2"], random_init=True
    )
    return load_tokenizer(spec, tmp_path_factory.mktemp("tok"))


def datamodule(tokenizer, tmp_path: Path, **kw) -> PreferenceDataModule:
    args = dict(
        synthetic={"n": 300, "seed": 1},
        fold=0,
        n_folds=5,
        batch_size=8,
        budget=Budget(max_length=96, min_field_tokens=4),
        cache_dir=str(tmp_path),
    )
    args.update(kw)
    return PreferenceDataModule(tokenizer, TEMPLATE, **args)


def test_cache_hit_skips_the_tokenizer(tokenizer, tmp_path: Path) -> None:
    df = make_synthetic(50, seed=2)
    first = cached_tokenize(df, tokenizer, tmp_path)

    class Refuses:
        backend_tokenizer = tokenizer.backend_tokenizer

        def __call__(self, *a, **k):
            raise AssertionError("re-tokenized on a cache hit")

    second = cached_tokenize(df, Refuses(), tmp_path)
    assert np.array_equal(first.ids, second.ids) and np.array_equal(first.offsets, second.offsets)
    changed = df.copy()
    changed.loc[0, "response_a"] = ["something else"]
    with pytest.raises(AssertionError, match="re-tokenized"):
        cached_tokenize(changed, Refuses(), tmp_path)


def test_turns_round_trip(tokenizer) -> None:
    df = make_synthetic(20, seed=3, n_turns_max=3)
    tokens = tokenize_pairs(df, tokenizer)
    for i in range(len(df)):
        p, a, b = tokens.fields(i)
        assert len(p) == len(a) == len(b) == len(df["prompt"][i])
        assert tokenizer.decode(np.concatenate(a)).replace(" ", "") == "".join(
            df["response_a"][i]
        ).replace(" ", "")


def test_swapped_view_equals_swapped_table(tokenizer, tmp_path: Path) -> None:
    dm = datamodule(tokenizer, tmp_path)
    df = make_synthetic(30, seed=4)
    ds = dm.dataset(df, "both")
    ds_sw = dm.dataset(swap_pairs(df), "plain")
    for i in range(30):
        got, want = ds[30 + i], ds_sw[i]
        assert np.array_equal(got["input_ids"], want["input_ids"])
        assert got["label"] == want["label"] and np.allclose(got["target"], want["target"])
    pair = dm.dataset(df, "pair")[0]
    assert np.array_equal(pair["input_ids_swapped"], ds[30]["input_ids"])


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
    from arena.data.datamodule import check_trainable
    from arena.data.schema import DataError

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
