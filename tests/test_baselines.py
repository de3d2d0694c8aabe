"""Non-neural baselines (``python -m arena.baselines``) and the Siamese model option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from arena.baselines import LengthBaseline, TfidfBaseline, longer_wins_accuracy
from arena.baselines.run import load_split
from arena.data.batching import Collator
from arena.data.dataset import PairArrays, PairDataset
from arena.data.format import Budget, Formatter
from arena.data.schema import one_hot
from arena.data.swap import swap_pairs, swap_probs
from arena.data.synthetic import make_synthetic
from arena.data.tokenize import cached_tokenize
from arena.inference import Predictor
from arena.lit.metrics import prior_entropy
from arena.losses import PreferenceLoss
from arena.models import TINY_ARCH, BackboneSpec, build_preference_model, load_tokenizer
from arena.models.checkpoint import load_checkpoint, save_checkpoint
from arena.models.heads import PairComparisonHead, RewardHead
from arena.models.preference import SiamesePreferenceModel
from arena.runner import train_run
from tests.conftest import ROOT
from tests.predict_helpers import TEMPLATE

SUMMARY_KEYS = {
    "val/acc",
    "val/log_loss",
    "val/auroc",
    "val/ece",
    "val/acc_tta",
    "val/swap_consistency",
    "fold",
    "n_train",
    "n_val",
    "train_seconds",
    "train_samples_per_second",
    "collapsed",
    "beats_prior",
    "prior_log_loss",
    "acc_by_language",
    "experiment",
    "seed",
}


# -- baselines --------------------------------------------------------------------------------


def test_cli_multirun_writes_a_training_runs_artifacts(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "arena.baselines",
        "-m",
        "data.synthetic={n: 400, seed: 3}",
        "data.fold=1",
        "baseline=length,tfidf",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    truth = make_synthetic(400, seed=3).set_index("id")["label"]
    accuracy = {}
    runs = sorted(sweep.glob("[0-9]_*_fold1"))
    assert [r.name for r in runs] == ["0_length_fold1", "1_tfidf_fold1"]
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert set(summary) >= SUMMARY_KEYS, SUMMARY_KEYS - set(summary)
        assert summary["fold"] == 1 and summary["n_train"] + summary["n_val"] == 400
        assert (run / ".hydra" / "config.yaml").is_file()
        oof = pd.read_parquet(run / "oof.parquet")
        assert list(oof.columns[:4]) == ["id", "fold", "prob_model_a", "prob_model_b"]
        assert len(oof) == summary["n_val"] and (oof["fold"] == 1).all()
        probs = oof[["prob_model_a", "prob_model_b"]].to_numpy()
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
        pred = probs.argmax(1)
        assert np.isclose((pred == truth.loc[oof["id"]].to_numpy()).mean(), summary["val/acc"])
        accuracy[summary["baseline"]] = summary
    # synthetic lengths carry no signal: the length baseline sits at the prior and says so
    assert accuracy["length"]["collapsed"] and abs(accuracy["length"]["val/acc"] - 0.5) < 0.12
    assert not accuracy["tfidf"]["collapsed"] and accuracy["tfidf"]["val/acc"] > 0.65


@pytest.mark.parametrize("n_classes", [2, 3])
def test_tfidf_is_swap_symmetric_and_learns(n_classes: int) -> None:
    train = make_synthetic(1000, seed=1, n_classes=n_classes)
    val = make_synthetic(300, seed=2, n_classes=n_classes)
    model = TfidfBaseline(C=1.0, char_ngrams=None).fit(train, n_classes)
    probs = model.predict_proba(val)
    assert probs.shape == (300, n_classes)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(model.predict_proba(swap_pairs(val)), swap_probs(probs), atol=1e-9)
    labels = val["label"].to_numpy()
    log_loss = -np.log(probs[np.arange(len(labels)), labels]).mean()
    assert log_loss < prior_entropy(labels, n_classes) - 0.03
    if n_classes == 2:
        assert (probs.argmax(1) == labels).mean() > 0.65


def _longer_wins(n: int, seed: int) -> pd.DataFrame:
    """Synthetic pairs relabelled so that the longer response wins 90% of the time."""
    df = make_synthetic(n, seed=seed)
    longer_b = np.array(
        [
            len(" ".join(b)) > len(" ".join(a))
            for a, b in zip(df["response_a"], df["response_b"], strict=True)
        ]
    )
    flip = np.random.default_rng(seed).random(n) < 0.1
    return df.assign(label=(longer_b ^ flip).astype(np.int64))


def test_length_baseline_calibrates_the_length_difference() -> None:
    train, val = _longer_wins(400, 0), _longer_wins(300, 1)
    model = LengthBaseline().fit(train, 2)
    probs = model.predict_proba(val)
    labels = val["label"].to_numpy()
    assert (probs.argmax(1) == labels).mean() > 0.8
    assert longer_wins_accuracy(val, labels) > 0.8
    np.testing.assert_allclose(model.predict_proba(swap_pairs(val)), swap_probs(probs), atol=1e-12)


def test_longer_wins_accuracy_by_hand() -> None:
    df = pd.DataFrame(
        {"response_a": [["aaa"], ["a"], ["ab"]], "response_b": [["a"], ["aaa"], ["cd"]]}
    )
    # row 0: A longer, A wins (hit); row 1: B longer, A wins (miss); row 2: equal (half)
    assert longer_wins_accuracy(df, np.array([0, 0, 1])) == pytest.approx(0.5)


def test_bad_input_is_refused(tmp_path: Path) -> None:
    data = OmegaConf.load(ROOT / "conf" / "data" / "default.yaml")
    with open_dict(data):
        data.cache_dir, data.layout, data.seed = str(tmp_path), "joint", 0
    with pytest.raises(ValueError, match="no data"):
        load_split(data)
    data.synthetic, data.fold = {"n": 50}, None
    with pytest.raises(ValueError, match="validation fold"):
        load_split(data)
    with pytest.raises(ValueError, match="ties"):
        TfidfBaseline().fit(make_synthetic(60, n_classes=3), 2)
    with pytest.raises(ValueError, match="C must be"):
        LengthBaseline(C=0)


# -- Siamese model ----------------------------------------------------------------------------


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


@pytest.mark.parametrize("max_steps", [3, 1], ids=["epoch_end", "mid_epoch"])
def test_siamese_trains_end_to_end_and_predicts_its_oof(
    max_steps: int, compose_in, tmp_path: Path
) -> None:
    """2 steps an epoch: max_steps=1 stops fit before any validation, and the run still scores
    (and writes the OOF of) the weights it saves."""
    cfg = compose_in(
        [
            "experiment=quickstart",
            "model.model_factory.architecture=siamese",
            "data.synthetic.n=80",
            "data.budget.max_length=96",
            f"trainer.max_steps={max_steps}",
            "trainer.max_epochs=1",
            "logger=none",
        ]
    )
    assert cfg.data.layout == "siamese"
    train_run(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["global_step"] == min(max_steps, 2) and "val/acc" in summary
    assert summary["val/swap_consistency"] == 1.0
    assert summary["val/log_loss_tta"] == pytest.approx(summary["val/log_loss"], abs=1e-6)
    oof = pd.read_parquet(tmp_path / "oof.parquet")
    predictor = Predictor.from_checkpoint(tmp_path, cache_dir=Path(cfg.paths.cache_dir))
    rows = make_synthetic(80, seed=0).set_index("id").loc[oof["id"]].reset_index()
    np.testing.assert_allclose(
        predictor.predict(rows), oof[["prob_model_a", "prob_model_b"]].to_numpy(), atol=1e-5
    )


def test_experiment_and_default_layouts(compose_in) -> None:
    cfg = compose_in(["experiment=siamese_minilm_cpu"])
    assert cfg.model.model_factory.architecture == "siamese" and cfg.data.layout == "siamese"
    assert cfg.backbone.spec.name == "minilm"
    default = compose_in([])
    assert default.model.model_factory.architecture == "joint" and default.data.layout == "joint"
