"""Engineered text features, both sets (arena's, the seed's): hand-checked values, exact swap
consistency, the normaliser, choosing a set."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena.data.feature_sets import (
    FeatureNormalizer,
    Featurizer,
    feature_set_name,
    make_featurizer,
    n_features,
)
from arena.data.features import (
    _REGEX_COUNTS,
    A_NAMES,
    A_SLICE,
    ANTI_SLICE,
    B_NAMES,
    B_SLICE,
    FEATURE_NAMES,
    SHARED_SLICE,
    compute_features,
    swap_features,
    swap_permutation,
)
from arena.data.seed_features import _SEED_REGEX, SEED_FEATURE_NAMES, compute_seed_features
from tests.helpers import feature_pairs

MARKDOWN = "# Title\n- one\n- two\n**bold** and `code`\n```py\nx = (1\n```"


def _swap_df(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["response_a"], out["response_b"] = df["response_b"], df["response_a"]
    return out


def _row(x: np.ndarray, i: int = 0, names: tuple[str, ...] = FEATURE_NAMES) -> dict[str, float]:
    return {name: float(v) for name, v in zip(names, x[i], strict=True)}


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


@pytest.mark.parametrize("name", sorted(_SEED_REGEX))
def test_regexes_mean_the_same_in_python_and_re2(name: str) -> None:
    texts = [MARKDOWN, "  * a\n1. b\n2) c\n• d\n  #not\n### h", "**x** __y__ ** z**", "？？，", ""]
    texts += ["see https://a.b and http://c, not ftp://d！"]
    assert _REGEX_COUNTS.items() <= _SEED_REGEX.items()  # the seed set's regexes cover arena's
    pattern = _SEED_REGEX[name][0]
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


def test_swap_permutation_reads_the_arena_layout_from_its_names() -> None:
    perm, sign = swap_permutation(FEATURE_NAMES)
    idx = np.arange(len(FEATURE_NAMES))
    np.testing.assert_array_equal(perm[A_SLICE], idx[B_SLICE])
    np.testing.assert_array_equal(perm[B_SLICE], idx[A_SLICE])
    np.testing.assert_array_equal(perm[SHARED_SLICE], idx[SHARED_SLICE])
    assert (sign[ANTI_SLICE] == -1).all() and sign[: ANTI_SLICE.start].min() == 1
    with pytest.raises(ValueError, match="swap partner"):
        swap_permutation(("a_x", "b_y"))


# -- the seed set -----------------------------------------------------------------------------

SEED_PAIR = (
    ["Why? Is it OK"],
    ["# Title\n- one\n- two\n**Bold** see https://x.io!"],
    ["plain ANSWER 12"],
)


def test_seed_set_layout() -> None:
    assert len(SEED_FEATURE_NAMES) == 57 and len(set(SEED_FEATURE_NAMES)) == 57
    x = compute_seed_features(feature_pairs(*([t] for t in SEED_PAIR)))
    assert x.shape == (1, 57) and x.dtype == np.float32 and np.isfinite(x).all()
    perm, sign = swap_permutation(SEED_FEATURE_NAMES)
    assert (perm != np.arange(57)).sum() == 36 and (sign < 0).sum() == 14  # 18 a/b stats, 14 A-B
    assert compute_seed_features(feature_pairs([], [], [])).shape == (0, 57)


def test_seed_statistics_by_hand() -> None:
    prompt, a, b = SEED_PAIR
    f = _row(compute_seed_features(feature_pairs([prompt], [a], [b])), names=SEED_FEATURE_NAMES)
    na = len(a[0])  # 46 characters, 3 newlines
    # words: Title one two Bold see https x io | plain ANSWER 12 | Why Is it OK
    assert f["a_log_chars"] == pytest.approx(math.log1p(na))
    assert f["a_log_words"] == pytest.approx(math.log1p(8))
    assert f["a_log_lines"] == pytest.approx(math.log1p(4))
    assert f["a_log_headers"] == f["a_log_bold"] == f["a_log_links"] == pytest.approx(math.log(2))
    assert f["a_log_list_items"] == pytest.approx(math.log1p(2))
    assert f["a_log_code_blocks"] == 0.0 and f["a_log_questions"] == 0.0
    assert f["a_log_exclamations"] == pytest.approx(math.log(2))
    assert f["a_log_punct"] == pytest.approx(math.log1p(12))  # # - - **** : / / . !
    assert f["a_upper_ratio"] == pytest.approx(2 / 26)
    assert f["a_punct_ratio"] == pytest.approx(12 / na)
    assert f["a_newline_ratio"] == pytest.approx(3 / na)
    assert f["a_unique_word_ratio"] == 1.0
    assert f["a_log_chars_per_word"] == pytest.approx(math.log1p(na / 8))
    assert f["b_log_digits"] == pytest.approx(math.log1p(2))
    assert f["b_digit_ratio"] == pytest.approx(2 / 15)
    assert f["b_upper_ratio"] == pytest.approx(6 / 11)
    assert f["b_log_lines"] == pytest.approx(math.log(2)) and f["b_log_punct"] == 0.0
    assert f["prompt_log_words"] == pytest.approx(math.log1p(4))
    assert f["prompt_log_questions"] == pytest.approx(math.log(2))
    assert f["prompt_upper_ratio"] == pytest.approx(4 / 9) and f["prompt_n_turns"] == 1
    assert f["diff_log_chars"] == pytest.approx(math.log1p(na) - math.log1p(15))
    assert f["diff_upper_ratio"] == pytest.approx(2 / 26 - 6 / 11)
    assert f["rel_chars"] == pytest.approx((na - 15) / (na + 15 + 1))
    assert f["rel_words"] == pytest.approx((8 - 3) / (8 + 3 + 1))


def test_seed_code_blocks_turns_and_repeats_by_hand() -> None:
    a = ["```py\nx = 1\n```\n```\ny\n```", "again again AGAIN！？"]
    f = _row(
        compute_seed_features(feature_pairs([["q", "r"]], [a], [["", ""]])), 0, SEED_FEATURE_NAMES
    )
    assert f["a_log_code_blocks"] == pytest.approx(math.log1p(2))  # four fences
    assert f["a_log_lines"] == pytest.approx(math.log1p(7))  # 6 lines, then the second turn
    assert f["a_log_exclamations"] == f["a_log_questions"] == pytest.approx(math.log(2))
    # py x 1 y again again again！？: lower-cased, and full-width marks do not split words
    assert f["a_unique_word_ratio"] == pytest.approx(6 / 7)
    assert f["prompt_n_turns"] == 2
    assert f["b_log_chars"] == pytest.approx(math.log(2)) and f["b_log_words"] == 0.0  # "\n"
    assert f["b_log_chars_per_word"] == pytest.approx(math.log(2))  # 1 char / max(0, 1) words


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(turns, turns, turns), min_size=1, max_size=5))
def test_seed_swap_is_exact_permutation(rows: list[tuple[list[str], list[str], list[str]]]) -> None:
    df = feature_pairs(*(list(col) for col in zip(*rows, strict=True)))
    featurizer = Featurizer("seed")
    x = featurizer.compute(df)
    assert x.shape == (len(df), 57) and np.isfinite(x).all()
    np.testing.assert_array_equal(featurizer.compute(_swap_df(df)), featurizer.swap(x))
    np.testing.assert_array_equal(featurizer.swap(featurizer.swap(x)), x)


def test_seed_normalizer_commutes_with_swap_and_round_trips() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 1.5, size=(48, 57)).astype(np.float32)
    featurizer = Featurizer("seed")
    norm = FeatureNormalizer.fit(x, featurizer)
    np.testing.assert_array_equal(
        norm.transform(featurizer.swap(x)), featurizer.swap(norm.transform(x))
    )
    state = json.loads(json.dumps(norm.to_dict()))
    assert state["set"] == "seed" and state["names"] == list(SEED_FEATURE_NAMES)
    back = FeatureNormalizer.from_dict(state)
    assert back.featurizer == featurizer
    np.testing.assert_array_equal(back.transform(x), norm.transform(x))
    with pytest.raises(ValueError, match="recompute the features"):
        FeatureNormalizer.from_dict({**state, "set": "arena"})
    with pytest.raises(ValueError, match="57"):
        FeatureNormalizer.fit(x, Featurizer("arena"))


def test_normalizer_saved_before_feature_sets_is_arena() -> None:
    state = FeatureNormalizer.fit(_random_features()).to_dict()
    old = {k: state[k] for k in ("names", "mean", "std")}
    assert FeatureNormalizer.from_dict(old).featurizer == Featurizer("arena", None)


@pytest.mark.parametrize(
    ("value", "encoder", "width"),
    [
        (False, None, 0),
        ("none", None, 0),
        (None, None, 0),
        (True, None, 56),
        ("arena", None, 56),
        ("seed", None, 57),
        ("seed", "some_encoder", 59),
        ("none", "some_encoder", 2),
    ],
)
def test_feature_set_choice(value: str | bool | None, encoder: str | None, width: int) -> None:
    assert n_features(value, encoder) == width
    featurizer = make_featurizer(value, encoder)
    assert (featurizer is None) == (width == 0)
    if featurizer is not None:
        assert len(featurizer.names) == width
        assert featurizer.names[-2:] == ("a_prompt_cos", "b_prompt_cos") or not encoder


def test_unknown_feature_set_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        feature_set_name("seeds")
    with pytest.raises(ValueError, match="expected one of"):
        Featurizer("bogus")
