"""Engineered text features: hand-checked values, exact swap consistency, the normaliser."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena.data.features import (
    _REGEX_COUNTS,
    A_NAMES,
    A_SLICE,
    ANTI_SLICE,
    B_NAMES,
    B_SLICE,
    FEATURE_NAMES,
    SHARED_SLICE,
    FeatureNormalizer,
    compute_features,
    swap_features,
)
from tests.helpers import feature_pairs

MARKDOWN = "# Title\n- one\n- two\n**bold** and `code`\n```py\nx = (1\n```"


def _swap_df(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["response_a"], out["response_b"] = df["response_b"], df["response_a"]
    return out


def _row(x: np.ndarray, i: int = 0) -> dict[str, float]:
    return {name: float(v) for name, v in zip(FEATURE_NAMES, x[i], strict=True)}


def test_layout() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert [n[2:] for n in A_NAMES] == [n[2:] for n in B_NAMES]
    assert FEATURE_NAMES[A_SLICE] == A_NAMES and FEATURE_NAMES[B_SLICE] == B_NAMES
    assert all(n.startswith(("diff_", "rel_")) for n in FEATURE_NAMES[ANTI_SLICE])
    x = compute_features(feature_pairs([["hi"]], [["a"]], [["b"]]))
    assert x.shape == (1, len(FEATURE_NAMES)) and x.dtype == np.float32


def test_markdown_counts_by_hand() -> None:
    f = _row(compute_features(feature_pairs([["Why? (x"]], [[MARKDOWN]], [["plain"]])))
    assert f["a_log_headers"] == pytest.approx(math.log(2))
    assert f["a_log_bullets"] == pytest.approx(math.log(3))
    assert f["a_log_bold"] == pytest.approx(math.log(2))
    assert f["a_log_code_fences"] == pytest.approx(math.log(3))
    assert f["a_log_backticks"] == pytest.approx(math.log(1 + 8))
    assert f["a_log_newlines"] == pytest.approx(math.log(1 + 6))
    assert f["a_log_bracket_imbalance"] == pytest.approx(math.log(2))
    assert f["prompt_log_questions"] == pytest.approx(math.log(2))
    assert f["prompt_log_punct"] == pytest.approx(math.log(3))  # "?" and "("
    assert f["b_log_headers"] == f["b_log_bullets"] == f["b_log_code_fences"] == 0.0


def test_lengths_ratios_and_unicode_by_hand() -> None:
    prompt, a, b = ["The cat sat"], ["the CAT ran, héllo"], ["dogs", "x\ny"]
    f = _row(compute_features(feature_pairs([prompt], [a], [b])))
    la, lb = len(a[0]), len("dogs") + len("x\ny") + 1  # turns joined by one newline
    assert f["a_log_chars"] == pytest.approx(math.log1p(la))
    assert f["b_log_chars"] == pytest.approx(math.log1p(lb))
    assert f["diff_log_chars"] == pytest.approx(math.log1p(la) - math.log1p(lb))
    assert f["rel_chars"] == pytest.approx((la - lb) / (la + lb + 1))
    assert f["a_log_words"] == pytest.approx(math.log1p(4))
    assert f["rel_words"] == pytest.approx((4 - 3) / (4 + 3 + 1))
    assert f["b_n_turns"] == 2 and f["a_n_turns"] == 1
    assert f["b_log_newlines"] == pytest.approx(math.log(2))  # the separator is not counted
    assert f["a_upper_ratio"] == pytest.approx(3 / 13)  # ASCII letters only: é is skipped
    assert f["a_prompt_jaccard"] == pytest.approx(2 / 5)  # {the, cat} / {the, cat, sat, ran, héllo}
    assert f["b_prompt_jaccard"] == 0.0 and f["ab_jaccard"] == 0.0
    assert f["diff_prompt_jaccard"] == pytest.approx(2 / 5)


def test_wide_punctuation_and_empty() -> None:
    x = compute_features(feature_pairs([["你好，世界。对吗？"]], [[""]], [[]]))
    f = _row(x)
    assert f["prompt_log_chars"] == pytest.approx(math.log1p(9))
    assert f["prompt_log_punct"] == pytest.approx(math.log1p(3))
    assert f["prompt_log_questions"] == pytest.approx(math.log1p(1))
    assert f["a_log_chars"] == f["b_log_chars"] == f["rel_chars"] == 0.0
    assert f["a_n_turns"] == 1 and f["b_n_turns"] == 0
    assert np.isfinite(x).all()
    assert compute_features(feature_pairs([], [], [])).shape == (0, len(FEATURE_NAMES))


@pytest.mark.parametrize("name", sorted(_REGEX_COUNTS))
def test_regexes_mean_the_same_in_python_and_re2(name: str) -> None:
    texts = [MARKDOWN, "  * a\n1. b\n2) c\n• d\n  #not\n### h", "**x** __y__ ** z**", "？？，", ""]
    pattern = _REGEX_COUNTS[name][0]
    py = pd.Series(texts, dtype="string[python]").str.count(pattern).tolist()
    re2 = pd.Series(texts, dtype="string[pyarrow]").str.count(pattern).tolist()
    assert py == re2


turns = st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=40), max_size=3)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(turns, turns, turns), min_size=1, max_size=5))
def test_swap_is_exact_permutation(rows: list[tuple[list[str], list[str], list[str]]]) -> None:
    df = feature_pairs(*(list(col) for col in zip(*rows, strict=True)))
    x = compute_features(df)
    np.testing.assert_array_equal(compute_features(_swap_df(df)), swap_features(x))
    np.testing.assert_array_equal(swap_features(swap_features(x)), x)
    assert np.isfinite(x).all()


def test_swap_on_markdown_pairs() -> None:
    df = feature_pairs(
        [["Why? (x"], ["q1", "q2"], ["你好"]],
        [[MARKDOWN], ["short", "more **text**"], ["，。"]],
        [["plain ANSWER 12"], ["a", "b\n- c"], [""]],
    )
    x = compute_features(df)
    swapped = swap_features(x)
    np.testing.assert_array_equal(compute_features(_swap_df(df)), swapped)
    np.testing.assert_array_equal(swapped[:, SHARED_SLICE], x[:, SHARED_SLICE])
    np.testing.assert_array_equal(swapped[:, A_SLICE], x[:, B_SLICE])
    np.testing.assert_array_equal(swapped[:, ANTI_SLICE], -x[:, ANTI_SLICE])
    assert np.abs(x[:, ANTI_SLICE]).sum() > 0


def _random_features(n: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=(n, len(FEATURE_NAMES))).astype(np.float32)
    x[:, 0] = 5.0  # a constant column
    return x


def test_normalizer_keeps_swap_consistency() -> None:
    x = _random_features()
    norm = FeatureNormalizer.fit(x)
    np.testing.assert_array_equal(norm.mean[A_SLICE], norm.mean[B_SLICE])
    np.testing.assert_array_equal(norm.std[A_SLICE], norm.std[B_SLICE])
    assert (norm.mean[ANTI_SLICE] == 0).all()
    z = norm.transform(x)
    np.testing.assert_array_equal(norm.transform(swap_features(x)), swap_features(z))
    both = np.concatenate([z[:, A_SLICE], z[:, B_SLICE]])
    np.testing.assert_allclose(both.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(both.std(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(z[:, 1 : SHARED_SLICE.stop].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose((z[:, ANTI_SLICE] ** 2).mean(0), 1.0, atol=1e-4)
    assert norm.std[0] == 1.0 and (z[:, 0] == 0).all()


def test_normalizer_json_round_trip_and_errors() -> None:
    x = _random_features(seed=1)
    norm = FeatureNormalizer.fit(x)
    state = json.loads(json.dumps(norm.to_dict()))
    back = FeatureNormalizer.from_dict(state)
    np.testing.assert_array_equal(back.transform(x), norm.transform(x))
    with pytest.raises(ValueError, match="recompute the features"):
        FeatureNormalizer.from_dict({**state, "names": state["names"][:-1]})
    with pytest.raises(ValueError, match="entries"):
        FeatureNormalizer.from_dict({**state, "mean": state["mean"][:-1]})
    with pytest.raises(ValueError, match="features"):
        FeatureNormalizer.fit(x[:, :-1])
