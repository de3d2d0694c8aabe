"""Loss values against numbers worked out by hand with ``math`` on tiny inputs.

Student logits ``[0, ln 3]`` give ``q = [1/4, 3/4]`` at T = 1; ``[0, 0, ln 2]`` give
``[1/4, 1/4, 1/2]``. Every expected value below is written from those.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from arena.losses import DistillLoss, LossParts, PreferenceLoss, temper_probs

LN3 = math.log(3.0)


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def _close(actual: torch.Tensor, expected: float) -> None:
    assert float(actual) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def _same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # torch.allclose, not torch.testing.assert_close: the latter costs seconds of lazy imports
    assert actual.shape == expected.shape and torch.allclose(actual, expected, atol=1e-6)


# --- hand-computed reference terms for logits [0, ln 3] (q = [.25, .75]) at T = 1 ----------
CE_B = -math.log(0.75)  # label 1
KL_HALF = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # teacher [.5, .5]
COS_HALF = 1 - (0.25 * 0.5 + 0.75 * 0.5) / (math.sqrt(0.25**2 + 0.75**2) * math.sqrt(0.5))
KL_ONEHOT = math.log(1 / 0.75)  # teacher [0, 1]
COS_ONEHOT = 1 - 0.75 / math.sqrt(0.25**2 + 0.75**2)


def test_preference_hard_labels() -> None:
    logits = _t([[0.0, LN3], [LN3, 0.0]])
    parts = PreferenceLoss()(logits, torch.tensor([1, 1]))
    assert isinstance(parts, LossParts)
    _close(parts.total, (-math.log(0.75) - math.log(0.25)) / 2)
    assert parts["ce"] is parts.total and set(parts.parts) == {"total", "ce"}


def test_preference_soft_targets() -> None:
    logits = _t([[0.0, LN3]])
    parts = PreferenceLoss()(logits, _t([[0.5, 0.5]]))
    _close(parts.total, -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)))
    hard = PreferenceLoss()(logits, torch.tensor([1])).total
    _close(PreferenceLoss()(logits, _t([[0.0, 1.0]])).total, float(hard))


def test_label_smoothing_two_and_three_classes() -> None:
    two = PreferenceLoss(label_smoothing=0.1)(_t([[0.0, LN3]]), torch.tensor([1]))
    _close(two.total, -(0.05 * math.log(0.25) + 0.95 * math.log(0.75)))
    three = PreferenceLoss(label_smoothing=0.3)(_t([[0.0, 0.0, math.log(2)]]), torch.tensor([2]))
    _close(three.total, -(0.1 * math.log(0.25) * 2 + 0.8 * math.log(0.5)))
    soft = PreferenceLoss(label_smoothing=0.2)(_t([[0.0, LN3]]), _t([[0.5, 0.5]]))
    _close(soft.total, -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)))  # uniform stays uniform


def test_unlabeled_rows_are_ignored_like_torch() -> None:
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, -1, 2, 1, -1, 2])
    ours = PreferenceLoss(label_smoothing=0.1)(logits, labels).total
    ref = F.cross_entropy(logits, labels, ignore_index=-1, label_smoothing=0.1)
    _close(ours, float(ref))
    _close(PreferenceLoss()(_t([[0.0, LN3], [5.0, 0.0]]), torch.tensor([1, -1])).total, CE_B)
    _close(PreferenceLoss()(logits[:2], torch.tensor([-1, -1])).total, 0.0)


def test_bad_target_shape() -> None:
    with pytest.raises(ValueError, match="target must be"):
        PreferenceLoss()(_t([[0.0, 1.0]]), _t([[0.2, 0.3, 0.5]]))


def test_temper_probs_matches_softmax_of_logits() -> None:
    p = _t([[0.2, 0.8]])
    _close(temper_probs(p, 2.0)[0, 0], 1 / 3)  # sqrt(.2) : sqrt(.8) = 1 : 2
    z = torch.randn(4, 3)
    _same(temper_probs(z.softmax(-1), 0.5), (z / 0.5).softmax(-1))


def test_single_teacher_t1_by_hand() -> None:
    parts = DistillLoss(n_teachers=1)(_t([[0.0, LN3]]), torch.tensor([1]), _t([[[0.5, 0.5]]]))
    _close(parts["kl/0"], KL_HALF)
    _close(parts["cos/0"], COS_HALF)
    _close(parts.total, (CE_B + KL_HALF + COS_HALF) / 3)


def test_two_teachers_is_lmsys_identity() -> None:
    teachers = _t([[[0.5, 0.5]], [[0.0, 1.0]]])
    parts = DistillLoss(n_teachers=2)(_t([[0.0, LN3]]), torch.tensor([1]), teachers)
    _close(parts.total, (CE_B + KL_HALF + COS_HALF + KL_ONEHOT + COS_ONEHOT) / 5)
    _close(parts["ce"], CE_B)
    _close(parts["kl/1"], KL_ONEHOT)
    _close(parts["cos/1"], COS_ONEHOT)
    _close(parts["kl"], (KL_HALF + KL_ONEHOT) / 2)
    _close(parts["cos"], (COS_HALF + COS_ONEHOT) / 2)
    expected_keys = {"total", "ce", "kl", "cos", "kl/0", "kl/1", "cos/0", "cos/1"}
    assert set(parts.parts) == expected_keys


def test_three_teachers_divide_by_seven() -> None:
    teachers = _t([[[0.5, 0.5]], [[0.0, 1.0]], [[0.25, 0.75]]])  # third equals the student
    parts = DistillLoss(n_teachers=3)(_t([[0.0, LN3]]), torch.tensor([1]), teachers)
    _close(parts["kl/2"], 0.0)
    _close(parts["cos/2"], 0.0)
    _close(parts.total, (CE_B + KL_HALF + COS_HALF + KL_ONEHOT + COS_ONEHOT) / 7)


def test_weights_and_no_normalisation() -> None:
    logits, labels = _t([[0.0, LN3]]), torch.tensor([1])
    teachers = _t([[[0.5, 0.5]], [[0.0, 1.0]]])
    weighted = DistillLoss(2, teacher_weights=[2.0, 1.0], ce_weight=0.5)(logits, labels, teachers)
    num = 0.5 * CE_B + 2 * (KL_HALF + COS_HALF) + (KL_ONEHOT + COS_ONEHOT)
    _close(weighted.total, num / (0.5 + 2 * 2 + 2))
    raw = DistillLoss(2, normalize=False, cos_weight=0.0)(logits, labels, teachers)
    _close(raw.total, CE_B + KL_HALF + KL_ONEHOT)


def test_temperature_two_by_hand() -> None:
    # student at T=2: q ∝ [1, sqrt 3]; teacher [.2, .8] at T=2 -> [1/3, 2/3]
    q0 = 1 / (1 + math.sqrt(3))
    q1 = 1 - q0
    kl = 4 * (1 / 3 * math.log((1 / 3) / q0) + 2 / 3 * math.log((2 / 3) / q1))  # T**2 = 4
    cos = 1 - (q0 / 3 + 2 * q1 / 3) / (math.hypot(q0, q1) * math.hypot(1 / 3, 2 / 3))
    loss = DistillLoss(n_teachers=1, temperature=2.0)
    parts = loss(_t([[0.0, LN3]]), torch.tensor([1]), _t([[[0.2, 0.8]]]))
    _close(parts["kl/0"], kl)
    _close(parts["cos/0"], cos)
    _close(parts["ce"], CE_B)  # CE is never tempered
    _close(parts.total, (CE_B + kl + cos) / 3)


def test_three_classes_zero_teacher_entry() -> None:
    logits = _t([[0.0, 0.0, math.log(2)]])  # q = [.25, .25, .5]
    parts = DistillLoss(n_teachers=1)(logits, torch.tensor([2]), _t([[[0.5, 0.0, 0.5]]]))
    _close(parts["kl/0"], 0.5 * math.log(2))
    _close(parts["cos/0"], 1 - 0.375 / (math.sqrt(0.375) * math.sqrt(0.5)))
    _close(parts["ce"], math.log(2))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_gradients_finite_with_zero_probs(temperature: float) -> None:
    logits = _t([[50.0, -50.0, 0.0], [0.0, 0.0, 0.0]]).requires_grad_()
    teachers = _t([[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0], [0.3, 0.7, 0.0]]])
    loss = DistillLoss(n_teachers=2, temperature=temperature, label_smoothing=0.1)
    parts = loss(logits, _t([[0.0, 1.0, 0.0], [0.2, 0.2, 0.6]]), teachers)
    parts.total.backward()
    assert all(torch.isfinite(v) for v in parts.parts.values())
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def _swap(x: torch.Tensor) -> torch.Tensor:
    return x[..., [1, 0, *range(2, x.shape[-1])]]


@pytest.mark.parametrize(("n_classes", "seed"), [(2, 0), (3, 1), (3, 2)])
def test_swap_gives_same_loss(n_classes: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, n_classes, generator=gen)
    labels = torch.randint(-1, n_classes, (8,), generator=gen)
    teachers = torch.randn(3, 8, n_classes, generator=gen).softmax(-1)
    swapped_labels = torch.where(labels == 0, 1, torch.where(labels == 1, 0, labels))
    loss = DistillLoss(3, teacher_weights=[1.0, 0.5, 2.0], temperature=2.0, label_smoothing=0.1)
    before = loss(logits, labels, teachers)
    after = loss(_swap(logits), swapped_labels, _swap(teachers))
    for name, value in before.parts.items():
        _same(after[name], value)
    soft = teachers[0]
    _same(PreferenceLoss()(logits, soft).total, PreferenceLoss()(_swap(logits), _swap(soft)).total)


def test_no_teachers_is_plain_ce_and_bad_shapes_raise() -> None:
    logits, labels = _t([[0.0, LN3]]), torch.tensor([1])
    _close(DistillLoss(n_teachers=0)(logits, labels, None).total, CE_B)
    with pytest.raises(ValueError, match=r"\(2, 1, 2\)"):
        DistillLoss(n_teachers=2)(logits, labels, _t([[[0.5, 0.5]]]))
    with pytest.raises(ValueError, match="teacher_weights"):
        DistillLoss(n_teachers=2, teacher_weights=[1.0])
    with pytest.raises(ValueError, match="temperature"):
        DistillLoss(n_teachers=1, temperature=0.0)
