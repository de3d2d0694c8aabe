"""Property tests of arena.data.swap: exact A/B exchange of labels, vectors and pair tables."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from arena.data.schema import COLUMNS, TEACHER_PREFIX, teacher_columns
from arena.data.swap import swap_label, swap_labels, swap_pairs, swap_probs


@st.composite
def prob_vectors(draw: st.DrawFn, n_classes: int) -> np.ndarray:
    """A probability vector of shape (n_classes,) in float32 or float64."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    raw = [draw(st.floats(0.01, 1.0)) for _ in range(n_classes)]
    return (np.array(raw) / sum(raw)).astype(dtype)


@st.composite
def pair_tables(draw: st.DrawFn) -> pd.DataFrame:
    """Pair tables of 0-10 rows, 2 or 3 classes, soft labels and 0-2 teacher columns."""
    n_classes = draw(st.sampled_from([2, 3]))
    n = draw(st.integers(0, 10))
    labels = list(range(-1, n_classes))
    text = st.lists(st.sampled_from(["", "hi", "x y", "\u00e9t\u00e9"]), min_size=1, max_size=2)
    rows = {
        "id": [f"r{i}" for i in range(n)],
        "prompt": [draw(text) for _ in range(n)],
        "response_a": [draw(text) for _ in range(n)],
        "response_b": [draw(text) for _ in range(n)],
        "label": np.array([draw(st.sampled_from(labels)) for _ in range(n)], dtype=np.int64),
        "soft_label": [draw(st.none() | prob_vectors(n_classes)) for _ in range(n)],
        "model_a": [draw(st.sampled_from(["m1", "m2", "unknown"])) for _ in range(n)],
        "model_b": [draw(st.sampled_from(["m3", "m4", "unknown"])) for _ in range(n)],
        "language": ["en"] * n,
        "source": ["test"] * n,
        "fold": np.full(n, -1, dtype=np.int64),
    }
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for t in range(draw(st.integers(0, 2))):
        df[f"{TEACHER_PREFIX}t{t}"] = pd.Series(
            [draw(prob_vectors(n_classes)) for _ in range(n)], index=df.index, dtype=object
        )
    index = draw(st.sampled_from(["range", "shifted"]))
    if index == "shifted":
        df.index = df.index + 100
    return df


def assert_tables_equal(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Exact equality of pair tables, including ndarray cells and their dtypes."""
    assert list(left.columns) == list(right.columns)
    assert left.index.equals(right.index)
    for col in left.columns:
        assert left[col].dtype == right[col].dtype, col
        for a, b in zip(left[col], right[col], strict=True):
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), col
                assert a.dtype == b.dtype and np.array_equal(a, b), col
            else:
                assert a == b or (a is None and b is None), col


@given(pair_tables())
@settings(max_examples=40, deadline=None)
def test_swap_pairs_is_an_involution(df: pd.DataFrame) -> None:
    assert_tables_equal(swap_pairs(swap_pairs(df)), df)


@given(pair_tables())
@settings(max_examples=40, deadline=None)
def test_swap_pairs_exchanges_every_side_column(df: pd.DataFrame) -> None:
    out = swap_pairs(df)
    assert list(out["response_a"]) == list(df["response_b"])
    assert list(out["response_b"]) == list(df["response_a"])
    assert list(out["model_a"]) == list(df["model_b"])
    assert list(out["model_b"]) == list(df["model_a"])
    assert list(out["id"]) == list(df["id"]) and list(out["prompt"]) == list(df["prompt"])
    expected = df["label"].map({-1: -1, 0: 1, 1: 0, 2: 2})
    assert (out["label"].to_numpy() == expected.to_numpy()).all()
    for col in ["soft_label", *teacher_columns(df)]:
        for before, after in zip(df[col], out[col], strict=True):
            if before is None:
                assert after is None
                continue
            assert after[0] == before[1] and after[1] == before[0]
            assert after[2:].tolist() == before[2:].tolist()  # tie stays


@given(pair_tables())
@settings(max_examples=20, deadline=None)
def test_swap_pairs_never_mutates_its_input(df: pd.DataFrame) -> None:
    snapshot = copy.deepcopy(df)
    out = swap_pairs(df)
    assert_tables_equal(df, snapshot)
    for col in teacher_columns(out):  # new arrays: writing to the output leaves the input alone
        for arr in out[col]:
            arr[...] = -1.0
    assert_tables_equal(df, snapshot)


@pytest.mark.parametrize(("label", "swapped"), [(0, 1), (1, 0), (2, 2), (-1, -1)])
def test_swap_label(label: int, swapped: int) -> None:
    assert swap_label(label) == swapped
    assert swap_labels(np.array([label]))[0] == swapped


@given(arrays(np.int64, st.integers(0, 20), elements=st.integers(-1, 2)))
def test_swap_labels_matches_scalar_version_and_is_an_involution(labels: np.ndarray) -> None:
    out = swap_labels(labels)
    assert out.tolist() == [swap_label(int(x)) for x in labels]
    assert np.array_equal(swap_labels(out), labels)
    assert (out[labels == 2] == 2).all()


@given(
    st.sampled_from([2, 3]).flatmap(
        lambda c: arrays(
            np.float64,
            st.tuples(st.integers(0, 4), st.integers(0, 3)).map(lambda s: (*s, c)),
            elements=st.floats(-10, 10),
        )
    )
)
def test_swap_probs_exchanges_a_and_b_and_keeps_tie(p: np.ndarray) -> None:
    out = swap_probs(p)
    assert out.shape == p.shape and out.dtype == p.dtype
    assert np.array_equal(out[..., 0], p[..., 1]) and np.array_equal(out[..., 1], p[..., 0])
    assert np.array_equal(out[..., 2:], p[..., 2:])
    assert np.array_equal(swap_probs(out), p)


@pytest.mark.parametrize("shape", [(), (4,), (2, 1), (3, 5)])
def test_swap_probs_rejects_other_class_counts(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="swap_probs"):
        swap_probs(np.zeros(shape))


def test_swap_pairs_handles_mixed_vector_lengths_and_nan() -> None:
    df = pd.DataFrame(
        {"label": [0, 2, -1], "soft_label": [np.array([0.9, 0.1]), np.array([0.2, 0.3, 0.5]), None]}
    )
    out = swap_pairs(df)
    assert out["soft_label"].iloc[0].tolist() == [0.1, 0.9]
    assert out["soft_label"].iloc[1].tolist() == [0.3, 0.2, 0.5]
    assert out["soft_label"].iloc[2] is None
    assert out["label"].tolist() == [1, 2, -1]


def test_swap_pairs_needs_both_sides() -> None:
    with pytest.raises(ValueError, match="model_b"):
        swap_pairs(pd.DataFrame({"model_a": ["x"]}))
