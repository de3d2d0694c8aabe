"""Tests of arena.data.synthetic: deterministic, balanced, learnable by rule, noisy as stated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena.data.schema import COLUMNS, n_classes_of
from arena.data.synthetic import (
    ALL_MARKERS,
    LANGUAGES,
    MODELS,
    TIE_RATE,
    make_synthetic,
    rule_labels,
    side_counts,
)

N = 4000  # rows for the statistical tests: the standard error of a rate is <= 0.008


@pytest.fixture(scope="module")
def binary() -> pd.DataFrame:
    return make_synthetic(N, seed=0)


@pytest.fixture(scope="module")
def ternary() -> pd.DataFrame:
    return make_synthetic(N, seed=1, n_classes=3, noise=0.2)


def word_lengths(sides: pd.Series) -> np.ndarray:
    """(n,) total number of words over all turns of each response."""
    return np.array([sum(len(t.split()) for t in turns) for turns in sides])


def char_lengths(sides: pd.Series) -> np.ndarray:
    """(n,) total number of characters over all turns of each response."""
    return np.array([sum(len(t) for t in turns) for turns in sides])


@given(st.integers(0, 2**31), st.sampled_from([2, 3]), st.integers(1, 3))
@settings(max_examples=15, deadline=None)
def test_same_seed_same_table(seed: int, n_classes: int, n_turns_max: int) -> None:
    a = make_synthetic(20, seed=seed, n_classes=n_classes, n_turns_max=n_turns_max)
    b = make_synthetic(20, seed=seed, n_classes=n_classes, n_turns_max=n_turns_max)
    pd.testing.assert_frame_equal(a, b)
    c = make_synthetic(20, seed=seed + 1, n_classes=n_classes, n_turns_max=n_turns_max)
    assert list(a["response_a"]) != list(c["response_a"])


@given(st.integers(0, 1000), st.sampled_from([2, 3]), st.integers(1, 3))
@settings(max_examples=15, deadline=None)
def test_rows_follow_the_schema(seed: int, n_classes: int, n_turns_max: int) -> None:
    df = make_synthetic(30, seed=seed, n_classes=n_classes, n_turns_max=n_turns_max)
    assert list(df.columns) == list(COLUMNS)
    assert df["id"].tolist() == [f"syn-{seed}-{i}" for i in range(30)]
    assert set(df["label"]) <= set(range(n_classes)) and df["label"].dtype == np.int64
    assert df["soft_label"].isna().all() and (df["fold"] == -1).all()
    assert (df["source"] == "synthetic").all()
    assert set(df["language"]) <= {lang.tag for lang in LANGUAGES}
    assert set(df["model_a"]) | set(df["model_b"]) <= set(MODELS)
    assert (df["model_a"] != df["model_b"]).all()
    for prompt, a, b in zip(df["prompt"], df["response_a"], df["response_b"], strict=True):
        assert 1 <= len(prompt) == len(a) == len(b) <= n_turns_max
        assert not ALL_MARKERS & {w for turn in prompt for w in turn.split()}
        assert all(8 <= len(turn.split()) <= 16 for turn in a + b)


@given(st.integers(0, 1000), st.sampled_from([2, 3]))
@settings(max_examples=15, deadline=None)
def test_without_noise_the_count_rule_recovers_every_label(seed: int, n_classes: int) -> None:
    df = make_synthetic(60, seed=seed, n_classes=n_classes, noise=0.0)
    assert np.array_equal(rule_labels(df), df["label"].to_numpy())


def test_count_rule_on_hand_made_pairs() -> None:
    df = pd.DataFrame(
        {
            "prompt": [["red sky"], ["red sky"], ["red sky", "blue sea"], ["a"]],
            "response_a": [["indeed x"], ["red red x"], ["x", "blue clearly"], ["because b"]],
            "response_b": [["y z"], ["red y"], ["sky ясно", "y"], ["потому c"]],
        }
    )
    markers, echoes = side_counts(df)
    assert markers.tolist() == [[1, 0], [0, 0], [1, 1], [1, 1]]
    assert echoes.tolist() == [[0, 0], [2, 1], [1, 1], [0, 0]]
    # markers decide; equal markers -> echoes decide; both equal -> tie
    assert rule_labels(df).tolist() == [0, 0, 2, 2]
    swapped = df.rename(columns={"response_a": "response_b", "response_b": "response_a"})
    assert rule_labels(swapped).tolist() == [1, 1, 2, 2]


def test_noise_rate_is_as_stated(binary: pd.DataFrame) -> None:
    assert abs((rule_labels(binary) != binary["label"].to_numpy()).mean() - 0.1) < 0.025
    noisier = make_synthetic(N // 2, seed=2, noise=0.3)
    assert abs((rule_labels(noisier) != noisier["label"].to_numpy()).mean() - 0.3) < 0.04


def test_ternary_noise_ties_and_classes(ternary: pd.DataFrame) -> None:
    rule, label = rule_labels(ternary), ternary["label"].to_numpy()
    assert abs((rule != label).mean() - 0.2) < 0.03
    assert abs((rule == 2).mean() - TIE_RATE) < 0.03
    assert abs((rule == 0).mean() - (rule == 1).mean()) < 0.04
    assert n_classes_of(ternary) == 3


def test_sides_are_balanced(binary: pd.DataFrame) -> None:
    assert abs((binary["label"] == 0).mean() - 0.5) < 0.03
    assert abs((rule_labels(binary) == 0).mean() - 0.5) < 0.03


@pytest.mark.parametrize("measure", [word_lengths, char_lengths])
def test_longer_wins_is_at_chance(binary: pd.DataFrame, measure) -> None:
    len_a, len_b = measure(binary["response_a"]), measure(binary["response_b"])
    decided = len_a != len_b
    longer = np.where(len_a > len_b, 0, 1)[decided]
    for labels in (binary["label"].to_numpy(), rule_labels(binary)):
        assert abs((longer == labels[decided]).mean() - 0.5) < 0.04


def test_model_names_and_language_carry_no_signal(binary: pd.DataFrame) -> None:
    labels = binary["label"].to_numpy()
    for col in ("model_a", "language"):
        for value in binary[col].unique():
            rows = (binary[col] == value).to_numpy()
            assert abs((labels[rows] == 0).mean() - 0.5) < 0.1


def test_markers_alone_beat_chance_by_far(binary: pd.DataFrame) -> None:
    markers, _ = side_counts(binary)
    decided = markers[:, 0] != markers[:, 1]
    guess = np.where(markers[:, 0] > markers[:, 1], 0, 1)
    acc = (guess[decided] == binary["label"].to_numpy()[decided]).mean()
    assert acc > 0.85 and decided.mean() > 0.6


@pytest.mark.parametrize(
    "kwargs", [{"n_classes": 4}, {"noise": 1.0}, {"noise": -0.1}, {"n_turns_max": 0}]
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="bad arguments"):
        make_synthetic(5, **kwargs)


def test_empty_table() -> None:
    df = make_synthetic(0)
    assert len(df) == 0 and list(df.columns) == list(COLUMNS)
    assert rule_labels(df).shape == (0,)
