"""The Siamese preference model: shapes and an exact swap (with features seen from each side for
a fusion reward), a checkpoint round trip through predict, training steps that reduce the
loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from arena.data.batching import Collator
from arena.data.dataset import PairArrays, PairDataset
from arena.data.feature_sets import FeatureNormalizer, Featurizer
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


FEATURIZER = Featurizer("arena")


def _normalizer() -> FeatureNormalizer:
    return FeatureNormalizer.fit(FEATURIZER.compute(make_synthetic(64, seed=11)), FEATURIZER)


def _dataset(kit: dict, df: pd.DataFrame, view: str, features: bool = False) -> PairDataset:
    labels = df["label"].to_numpy()
    feats = _normalizer().transform(FEATURIZER.compute(df)) if features else None
    arrays = PairArrays(labels=labels, targets=one_hot(labels, 2), features=feats)
    tokens = cached_tokenize(df, kit["tokenizer"], None)
    swap = FEATURIZER.swap if features else None
    return PairDataset(tokens, arrays, kit["formatter"], view, swap, layout="siamese")  # type: ignore[arg-type]


def _batch(
    kit: dict, df: pd.DataFrame, view: str = "pair", features: bool = False
) -> dict[str, torch.Tensor]:
    data = _dataset(kit, df, view, features)
    collate = Collator(kit["tokenizer"].pad_token_id, kit["tokenizer"].padding_side)
    return collate([data[i] for i in range(len(data))])


def _model(kit: dict, head: str, n_classes: int = 2, **kw: object) -> SiamesePreferenceModel:
    kw = {"n_features": len(FEATURIZER.names) if head == "fusion" else 0, **kw}
    model = build_preference_model(
        _spec(),
        n_classes=n_classes,
        architecture="siamese",
        head=head,  # type: ignore[arg-type]
        cache_dir=kit["cache"],
        **kw,  # type: ignore[arg-type]
    )
    assert isinstance(model, SiamesePreferenceModel)
    return model


@pytest.mark.parametrize("head", ["linear", "mlp", "fusion"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_siamese_shapes_and_exact_swap(kit: dict, n_classes: int, head: str) -> None:
    torch.manual_seed(0)
    model = _model(kit, head, n_classes).eval()
    kinds = {"linear": RewardHead, "fusion": RewardHead, "mlp": PairComparisonHead}
    assert isinstance(model.head, kinds[head])
    # pair view: 6 pairs in both orders
    batch = _batch(kit, make_synthetic(6, seed=4), features=head == "fusion")
    assert batch["input_ids"].shape[0] == 4 * 6
    if head == "fusion":  # one feature row per sequence: the pair seen from that side
        assert batch["features"].shape == (4 * 6, len(FEATURIZER.names))
        first_sides, second_sides = batch["features"].numpy().reshape(2, 12, -1)
        np.testing.assert_array_equal(second_sides, FEATURIZER.swap(first_sides))
    with torch.no_grad():
        logits = model(batch["input_ids"], batch["attention_mask"], batch.get("features"))
    assert logits.shape == (12, n_classes) and logits.dtype == torch.float32
    plain, swapped = logits[:6].softmax(-1), logits[6:].softmax(-1)
    torch.testing.assert_close(swapped, plain[:, [1, 0, 2][:n_classes]])
    assert plain.std(0).max() > 0  # the sides are really read: pairs differ
    with pytest.raises(ValueError, match="two sequences per pair"):
        model(batch["input_ids"][:5], batch["attention_mask"][:5])


def test_siamese_fusion_reward_reads_each_sides_features(kit: dict) -> None:
    """The same text on both sides gets equal rewards; telling both sides' views that A
    overlaps the prompt more moves the logits, still exactly antisymmetric."""
    torch.manual_seed(3)
    model = _model(kit, "fusion", head_dropout=0.0).eval()
    df = make_synthetic(4, seed=8)
    df["response_b"] = df["response_a"]
    batch = _batch(kit, df, "plain", features=True)
    feats = batch["features"].clone()
    torch.testing.assert_close(feats[:4], feats[4:], rtol=0, atol=0)  # one pair seen from A or B
    with torch.no_grad():
        same = model(batch["input_ids"], batch["attention_mask"], feats)
        torch.testing.assert_close(same, torch.zeros_like(same))  # equal sides, equal rewards
        j = FEATURIZER.names.index("a_prompt_jaccard")
        feats[:4, j] += 2.0  # the first side's view: A overlaps the prompt more
        feats[4:, FEATURIZER.names.index("b_prompt_jaccard")] += 2.0  # the same, seen from B
        moved = model(batch["input_ids"], batch["attention_mask"], feats)
    assert moved[:, 0].ne(0).all()
    torch.testing.assert_close(moved[:, 1], -moved[:, 0])


def test_siamese_heads_refuse_features_they_cannot_read(kit: dict) -> None:
    with pytest.raises(ValueError, match="reads no features"):
        build_preference_model(
            _spec(),
            n_classes=2,
            architecture="siamese",
            head="mlp",
            n_features=3,
            cache_dir=kit["cache"],
        )
    with pytest.raises(ValueError, match="cannot use n_features"):
        _model(kit, "linear", n_features=3)
    model = _model(kit, "fusion").eval()
    batch = _batch(kit, make_synthetic(3, seed=4), "plain", features=True)
    with pytest.raises(ValueError, match="fusion head expects features"):
        model(batch["input_ids"], batch["attention_mask"], batch["features"][:3])


@pytest.mark.parametrize("head", ["linear", "fusion"])
def test_siamese_checkpoint_round_trip_and_predict(kit: dict, tmp_path: Path, head: str) -> None:
    torch.manual_seed(1)
    model = _model(kit, head).eval()
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_()  # a head far from its init: a reload that re-initialises it would show
    df = make_synthetic(8, seed=5)
    fusion = head == "fusion"
    batch = _batch(kit, df, "plain", features=fusion)
    config = {
        "backbone": _spec().to_dict(),
        "model": {
            "n_classes": 2,
            "architecture": "siamese",
            "head": head,
            "n_features": len(FEATURIZER.names) if fusion else 0,
        },
        "template": {k: getattr(TEMPLATE, k) for k in vars(TEMPLATE)},
        "data": {"budget": {"max_length": 96, "split": [0.3, 0.7, 0.7]}, "n_classes": 2},
        "feature_normalizer": _normalizer().to_dict() if fusion else None,
    }
    path = save_checkpoint(model, kit["tokenizer"], config, tmp_path / "ckpt")
    loaded, _, _ = load_checkpoint(path, cache_dir=kit["cache"])
    assert isinstance(loaded, SiamesePreferenceModel)
    with torch.no_grad():
        before = model(batch["input_ids"], batch["attention_mask"], batch.get("features"))
        after = loaded(batch["input_ids"], batch["attention_mask"], batch.get("features"))
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
