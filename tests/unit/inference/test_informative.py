"""The guard of ``arena.pseudo_label`` against soft labels that say nothing
(:func:`arena.pseudo_label.check_informative`): near-uniform rows, one class everywhere, the
numbers in the reason, its thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from arena.pseudo_label import check_informative


def probs_around(centre: list[float], n: int, spread: float, seed: int = 0) -> np.ndarray:
    """(n, C) probabilities scattered around ``centre`` (logit noise of scale ``spread``)."""
    rng = np.random.default_rng(seed)
    logits = np.log(np.asarray(centre)) + spread * rng.normal(size=(n, len(centre)))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_a_confident_balanced_labeller_passes() -> None:
    probs = probs_around([0.5, 0.5], 200, spread=1.5)
    assert check_informative(probs, 0.02, 0.98) == (True, None)
    three = probs_around([0.4, 0.4, 0.2], 200, spread=1.5, seed=1)
    assert check_informative(three, 0.02, 0.98) == (True, None)


def test_collapsed_to_one_half_is_refused_though_its_argmax_splits() -> None:
    probs = probs_around([0.5, 0.5], 200, spread=0.01)  # 0.50/0.50 +- noise
    shares = np.bincount(probs.argmax(axis=1), minlength=2) / 200
    assert shares.max() < 0.98  # the old one_class check would pass it
    ok, reason = check_informative(probs, 0.02, 0.98)
    top = probs.max(axis=1).mean()
    assert not ok and reason is not None
    assert reason.startswith(f"near-uniform: mean top probability {top:.4f}")
    assert "1/C = 0.5000" in reason and "(200 rows, 2 classes)" in reason


def test_one_third_each_is_refused_for_three_classes() -> None:
    ok, reason = check_informative(np.full((30, 3), 1 / 3), 0.02, 0.98)
    assert not ok and "1/C = 0.3333" in str(reason)


def test_one_class_everywhere_is_refused_by_share() -> None:
    probs = np.tile([0.9, 0.1], (100, 1))
    probs[:3] = [0.2, 0.8]  # 97% model_a: allowed at 0.98, refused at 0.95
    assert check_informative(probs, 0.02, 0.98) == (True, None)
    ok, reason = check_informative(probs, 0.02, 0.95)
    assert not ok
    assert reason == (
        "one class: model_a is the top class of 97.0% of rows, above max_class_share=95.0% "
        "(100 rows, 2 classes)"
    )


def test_both_reasons_are_given_and_thresholds_are_checked() -> None:
    ok, reason = check_informative(np.tile([0.505, 0.495], (10, 1)), 0.02, 0.98)
    assert not ok and "near-uniform" in str(reason) and "one class: model_a" in str(reason)
    assert check_informative(np.zeros((0, 2)), 0.02, 0.98) == (False, "no rows to label")
    for margin, share in ((1.0, 0.98), (-0.1, 0.98), (0.02, 0.0), (0.02, 1.5)):
        with pytest.raises(ValueError, match="uniform_margin"):
            check_informative(np.full((4, 2), 0.5), margin, share)
