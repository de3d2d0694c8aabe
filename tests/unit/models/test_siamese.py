"""The Siamese preference model: shapes and an exact swap, a checkpoint round trip through
predict, training steps that reduce the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from arena.data.batching import Collator
from arena.data.dataset import PairArrays, PairDataset
from arena.data.format import Budget, Formatter
from arena.data.schema import one_hot
from arena.data.synthetic import make_synthetic
from arena.data.tokenize import cached_tokenize
from arena.inference import Predictor
from arena.losses import PreferenceLoss
from arena.models import TINY_ARCH, BackboneSpec, build_preference_model, load_tokenizer
from arena.models.checkpoint import load_checkpoint, save_checkpoint
from arena.models.heads import PairComparisonHead, RewardHead
from arena.models.preference import SiamesePreferenceModel
from tests.helpers import TEMPLATE


def _spec() -> BackboneSpec:
    return BackboneSpec(
        name="tiny_qwen2", kind="decoder", arch=TINY_ARCH["qwen2"], random_init=True
    )


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("siamese")
    tokenizer = load_tokenizer(_spec(), cache)
    budget = Budget(max_length=96, split=(0.3, 0.7, 0.7))
    formatter = Formatter(
        TEMPLATE, budget, lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]
    )
    return {"cache": cache, "tokenizer": tokenizer, "formatter": formatter, "budget": budget}


def _dataset(kit: dict, df: pd.DataFrame, view: str) -> PairDataset:
    labels = df["label"].to_numpy()
    arrays = PairArrays(labels=labels, targets=one_hot(labels, 2))
    tokens = cached_tokenize(df, kit["tokenizer"], None)
    return PairDataset(tokens, arrays, kit["formatter"], view, layout="siamese")  # type: ignore[arg-type]


def _batch(kit: dict, df: pd.DataFrame, view: str = "pair") -> dict[str, torch.Tensor]:
    data = _dataset(kit, df, view)
    collate = Collator(kit["tokenizer"].pad_token_id, kit["tokenizer"].padding_side)
    return collate([data[i] for i in range(len(data))])


@pytest.mark.parametrize("head", ["linear", "mlp"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_siamese_shapes_and_exact_swap(kit: dict, n_classes: int, head: str) -> None:
    torch.manual_seed(0)
    model = build_preference_model(
        _spec(), n_classes=n_classes, architecture="siamese", head=head, cache_dir=kit["cache"]
    ).eval()
    assert isinstance(model.head, {"linear": RewardHead, "mlp": PairComparisonHead}[head])
    assert isinstance(model, SiamesePreferenceModel)
    batch = _batch(kit, make_synthetic(6, seed=4))  # pair view: 6 pairs in both orders
    assert batch["input_ids"].shape[0] == 4 * 6
    with torch.no_grad():
        logits = model(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (12, n_classes) and logits.dtype == torch.float32
    plain, swapped = logits[:6].softmax(-1), logits[6:].softmax(-1)
    torch.testing.assert_close(swapped, plain[:, [1, 0, 2][:n_classes]])
    assert plain.std(0).max() > 0  # the sides are really read: pairs differ
    with pytest.raises(ValueError, match="two sequences per pair"):
        model(batch["input_ids"][:5], batch["attention_mask"][:5])
    with pytest.raises(ValueError, match="engineered features"):
        build_preference_model(
            _spec(),
            n_classes=2,
            architecture="siamese",
            head="fusion",
            n_features=3,
            cache_dir=kit["cache"],
        )


def test_siamese_checkpoint_round_trip_and_predict(kit: dict, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_preference_model(
        _spec(), n_classes=2, architecture="siamese", cache_dir=kit["cache"]
    ).eval()
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_()  # a head far from its init: a reload that re-initialises it would show
    df = make_synthetic(8, seed=5)
    batch = _batch(kit, df, "plain")
    config = {
        "backbone": _spec().to_dict(),
        "model": {"n_classes": 2, "architecture": "siamese", "head": "linear"},
        "template": {k: getattr(TEMPLATE, k) for k in vars(TEMPLATE)},
        "data": {"budget": {"max_length": 96, "split": [0.3, 0.7, 0.7]}, "n_classes": 2},
    }
    path = save_checkpoint(model, kit["tokenizer"], config, tmp_path / "ckpt")
    loaded, _, _ = load_checkpoint(path, cache_dir=kit["cache"])
    assert isinstance(loaded, SiamesePreferenceModel)
    with torch.no_grad():
        before = model(batch["input_ids"], batch["attention_mask"])
        after = loaded(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    predicted = Predictor.from_checkpoint(path, cache_dir=kit["cache"]).predict(df)
    np.testing.assert_allclose(predicted, before.softmax(-1).double().numpy(), atol=1e-5)


def test_siamese_training_steps_reduce_the_loss(kit: dict) -> None:
    torch.manual_seed(2)
    model = build_preference_model(
        _spec(), n_classes=2, architecture="siamese", head_dropout=0.0, cache_dir=kit["cache"]
    )
    batch = _batch(kit, make_synthetic(16, seed=6), "both")  # both orders: swap augmentation
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn, losses = PreferenceLoss(), []
    for _ in range(8):
        loss = loss_fn(model(batch["input_ids"], batch["attention_mask"]), batch["target"]).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
