"""Engineered features (the arena and seed sets) on the real LMSYS arena sample (skipped when
``../shared/data`` is absent): an A/B swap permutes them exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from arena.data.feature_sets import Featurizer
from arena.data.features import (
    A_NAMES,
    A_SLICE,
    compute_features,
    swap_features,
)
from tests.conftest import SHARED_DATA
from tests.helpers import feature_pairs

ARENA_SAMPLE = SHARED_DATA / "lmsys" / "arena_sample100.csv"


def _swap_df(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["response_a"], out["response_b"] = df["response_b"], df["response_a"]
    return out


@pytest.fixture(scope="module")
def arena_sample() -> pd.DataFrame:
    if not ARENA_SAMPLE.exists():
        pytest.skip("../shared/data is not present")
    raw = pd.read_csv(ARENA_SAMPLE)
    cols = [
        raw[c].map(lambda s: [t or "" for t in json.loads(s)]).tolist()
        for c in ("prompt", "response_a", "response_b")
    ]
    return feature_pairs(*cols)


def test_swap_on_real_arena_sample(arena_sample: pd.DataFrame) -> None:
    x = compute_features(arena_sample)
    assert np.isfinite(x).all() and (x[:, A_NAMES.index("a_log_headers") + A_SLICE.start] > 0).any()
    np.testing.assert_array_equal(compute_features(_swap_df(arena_sample)), swap_features(x))


def test_seed_set_on_real_arena_sample(arena_sample: pd.DataFrame) -> None:
    featurizer = Featurizer("seed")
    x = featurizer.compute(arena_sample)
    assert x.shape == (len(arena_sample), 57) and np.isfinite(x).all()
    f = dict(zip(featurizer.names, x.T, strict=True))
    assert (f["a_log_list_items"] > 0).any() and (f["b_log_code_blocks"] > 0).any()
    np.testing.assert_array_equal(featurizer.compute(_swap_df(arena_sample)), featurizer.swap(x))
