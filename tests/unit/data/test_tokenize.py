"""Tokenization: the cache skips the tokenizer on a hit, turns round-trip, a swapped view equals
the swapped table's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arena.data import Template
from arena.data.swap import swap_pairs
from arena.data.synthetic import make_synthetic
from arena.data.tokenize import cached_tokenize, tokenize_pairs
from tests.helpers import datamodule

TEMPLATE = Template(prefix="<|im_start|>user\n", suffix="<|im_end|>")


def test_cache_hit_skips_the_tokenizer(tokenizer, tmp_path: Path) -> None:
    df = make_synthetic(50, seed=2)
    first = cached_tokenize(df, tokenizer, tmp_path)

    class Refuses:
        backend_tokenizer = tokenizer.backend_tokenizer

        def __call__(self, *a, **k):
            raise AssertionError("re-tokenized on a cache hit")

    second = cached_tokenize(df, Refuses(), tmp_path)
    assert np.array_equal(first.ids, second.ids) and np.array_equal(first.offsets, second.offsets)
    changed = df.copy()
    changed.loc[0, "response_a"] = ["something else"]
    with pytest.raises(AssertionError, match="re-tokenized"):
        cached_tokenize(changed, Refuses(), tmp_path)


def test_turns_round_trip(tokenizer) -> None:
    df = make_synthetic(20, seed=3, n_turns_max=3)
    tokens = tokenize_pairs(df, tokenizer)
    for i in range(len(df)):
        p, a, b = tokens.fields(i)
        assert len(p) == len(a) == len(b) == len(df["prompt"][i])
        assert tokenizer.decode(np.concatenate(a)).replace(" ", "") == "".join(
            df["response_a"][i]
        ).replace(" ", "")


def test_swapped_view_equals_swapped_table(tokenizer, tmp_path: Path) -> None:
    dm = datamodule(tokenizer, tmp_path)
    df = make_synthetic(30, seed=4)
    ds = dm.dataset(df, "both")
    ds_sw = dm.dataset(swap_pairs(df), "plain")
    for i in range(30):
        got, want = ds[30 + i], ds_sw[i]
        assert np.array_equal(got["input_ids"], want["input_ids"])
        assert got["label"] == want["label"] and np.allclose(got["target"], want["target"])
    pair = dm.dataset(df, "pair")[0]
    assert np.array_equal(pair["input_ids_swapped"], ds[30]["input_ids"])
