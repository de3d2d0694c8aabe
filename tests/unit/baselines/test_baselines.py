"""The non-neural baselines (``arena.baselines.models``): TF-IDF is swap-symmetric and learns, the
length baseline calibrates the length difference, bad input is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from arena.baselines import LengthBaseline, TfidfBaseline, longer_wins_accuracy
from arena.baselines.fit import load_split
from arena.data.swap import swap_pairs, swap_probs
from arena.data.synthetic import make_synthetic
from arena.lit.metrics import prior_entropy
from tests.conftest import ROOT


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
