"""Inference library: sorted token-budget batches vs one-by-one, swap TTA, ensembles, rank shares,
submission layouts and metrics. The command line is tested in
tests/integration/test_predict_cli.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from arena.data.batching import sorted_batches
from arena.data.chunks import file_layout
from arena.data.swap import swap_pairs, swap_probs
from arena.data.synthetic import make_synthetic
from arena.inference import TTA, Ensemble, Predictor, assemble, combine, select_rows
from arena.inference.submission import evaluate, submission_frame, submission_layout
from tests.helpers import (
    CHECKPOINTS,
    TEMPLATE,
    write_lmsys_test,
    write_wsdm,
)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_synthetic(37, seed=5, n_turns_max=3)


def one_by_one(p: Predictor, df: pd.DataFrame) -> np.ndarray:
    """Probabilities of each row scored alone, without the batching and re-ordering code."""
    enc = p.encode(df)
    feats = enc.dataset.arrays.features
    out = []
    with torch.inference_mode():
        for i in range(len(df)):
            ids = torch.as_tensor(p.formatter(*enc.dataset.tokens.fields(i)), dtype=torch.long)
            f = None if feats is None else torch.from_numpy(feats[i : i + 1])
            logits = p.model(ids[None], torch.ones_like(ids)[None], f)
            out.append(torch.softmax(logits.double(), -1)[0].numpy())
    return np.stack(out)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_sorted_token_batches_match_one_by_one(predictors, table, name: str) -> None:
    p = predictors[name]
    lengths = p.encode(table).lengths
    batches = sorted_batches(lengths, p.max_tokens, p.batch_size)
    assert len(batches) > 2 and len({len(b) for b in batches}) > 1  # really token-budget batches
    assert len(set(lengths.tolist())) > 5  # and really different lengths, so padding happens
    got = p.predict(table)
    assert got.shape == (len(table), p.n_classes)
    assert np.abs(got - one_by_one(p, table)).max() <= 1e-4
    assert got.std(axis=0).max() > 0.02  # the test model does not predict a constant


def test_max_length_replaces_the_training_budget(ckpts, table) -> None:
    cache = ckpts["linear2"].parent / "cache"
    trained = Predictor.from_checkpoint(ckpts["linear2"], cache_dir=cache)
    short = Predictor.from_checkpoint(ckpts["linear2"], cache_dir=cache, max_length=96)
    assert trained.formatter.budget.max_length == 160 and short.formatter.budget.max_length == 96
    lengths, cut = trained.encode(table).lengths, short.encode(table).lengths
    assert lengths.max() > 96 >= cut.max()
    long_rows = lengths > 96
    diff = np.abs(short.predict(table) - trained.predict(table)).max(axis=1)
    assert (diff[long_rows] > 1e-4).all() and (diff[~long_rows] < 1e-5).all()


@pytest.mark.parametrize("name", ["fusion2", "left3"])
def test_full_tta_is_mean_with_swapped_back_prediction(predictors, table, name: str) -> None:
    p = predictors[name]
    plain = p.predict(table)
    swapped_table = p.predict(swap_pairs(table))  # features recomputed from the swapped text
    expected = (plain + swap_probs(swapped_table)) / 2
    full = Ensemble([p]).predict(table, TTA("full"))
    assert np.abs(full.probs - expected).max() <= 1e-6
    assert np.array_equal(full.rescored, np.arange(len(table)))
    assert np.abs(full.plain - plain).max() == 0.0
    assert np.abs(full.probs.sum(1) - 1).max() < 1e-9


@pytest.mark.parametrize("uncertainty", ["margin", "max_prob"])
def test_uncertain_tta_rescores_exactly_the_least_confident_rows(
    predictors, table, uncertainty: str
) -> None:
    p = predictors["left3"]
    plain = p.predict(table)
    full = Ensemble([p]).predict(table, TTA("full")).probs
    out = Ensemble([p]).predict(table, TTA("uncertain", 0.3, uncertainty=uncertainty))
    conf = np.abs(plain[:, 0] - plain[:, 1]) if uncertainty == "margin" else plain.max(1)
    k = math.ceil(0.3 * len(table))
    expected = np.sort(np.argsort(conf, kind="stable")[:k])
    assert np.array_equal(out.rescored, expected)
    others = np.setdiff1d(np.arange(len(table)), expected)
    # re-scored rows batch differently from the full pass: fp32 noise, not a different result
    assert np.abs(out.probs[expected] - full[expected]).max() <= 1e-5
    assert np.abs(out.probs[expected] - plain[expected]).max() > 1e-3
    assert np.abs(out.probs[others] - plain[others]).max() == 0.0
    assert conf[expected].max() <= conf[others].min()


def test_time_budget_takes_least_confident_rows_while_they_fit(predictors, table) -> None:
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.45, 0.55], [0.3, 0.7], [0.6, 0.4]])
    cost = np.array([1.0, 1.0, 2.0, 1.0, 5.0])  # order by margin: rows 0, 2, 4, 3, 1
    tta = TTA("uncertain", time_budget_s=100.0)
    assert select_rows(probs, tta, cost, 2.9).tolist() == [0]
    assert select_rows(probs, tta, cost, 3.0).tolist() == [0, 2]
    assert select_rows(probs, tta, cost, 8.5).tolist() == [0, 2, 4]
    assert select_rows(probs, tta, cost, -1.0).tolist() == []
    assert select_rows(probs, TTA("uncertain", 0.4)).tolist() == [0, 2]
    p = predictors["fusion2"]
    everything = Ensemble([p]).predict(table, TTA("uncertain", time_budget_s=1e6))
    nothing = Ensemble([p]).predict(table, TTA("uncertain", time_budget_s=0.0))
    assert len(everything.rescored) == len(table) and len(nothing.rescored) == 0
    with pytest.raises(ValueError, match="uncertain_fraction"):
        TTA("uncertain", 1.5)


def test_ensemble_weights_probabilities_or_log_probabilities(predictors, table) -> None:
    a, b = predictors["fusion2"], predictors["linear2"]
    pa, pb = a.predict(table), b.predict(table)
    assert np.abs(pa - pb).max() > 0.05  # two different models
    mixed = Ensemble([a, b], weights=[3.0, 1.0]).predict(table).probs
    assert np.abs(mixed - (0.75 * pa + 0.25 * pb)).max() <= 1e-12
    geo = Ensemble([a, b], weights=[3.0, 1.0], combine="logit").predict(table).probs
    log_mix = 0.75 * np.log(pa) + 0.25 * np.log(pb)
    expected = np.exp(log_mix) / np.exp(log_mix).sum(1, keepdims=True)
    assert np.abs(geo - expected).max() <= 1e-12
    lp = np.log([[[0.2, 0.8]], [[0.6, 0.4]]])  # (K=2, n=1, C=2), hand-computed
    assert np.allclose(combine(lp, [0.25, 0.75], "prob"), [[0.5, 0.5]])
    geometric = np.sqrt([0.2 * 0.6, 0.8 * 0.4])
    assert np.allclose(combine(lp, [0.5, 0.5], "logit"), [geometric / geometric.sum()])
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0]):
        with pytest.raises(ValueError, match="non-negative weights"):
            Ensemble([a, b], weights=bad)
    with pytest.raises(ValueError, match="different classes"):
        Ensemble([a, predictors["left3"]])


@pytest.mark.parametrize("world", [2, 3])
def test_rank_shares_cover_rows_once_with_balanced_tokens(predictors, table, world: int) -> None:
    ref = predictors["fusion2"]
    enc = ref.encode(table)
    rows = np.arange(len(table))
    shares = []
    for rank in range(world):
        p = Predictor(
            ref.model,
            ref.tokenizer,
            TEMPLATE,
            ref.formatter.budget,
            n_classes=2,
            normalizer=ref.normalizer,
            max_tokens=1200,
            batch_size=16,
            rank=rank,
            world=world,
        )
        shares.append(p.local_logits(enc, rows))
    positions = np.concatenate([s[0] for s in shares])
    assert sorted(positions.tolist()) == rows.tolist()  # every row once
    tokens = [int(enc.lengths[s[0]].sum()) for s in shares]
    assert max(tokens) - min(tokens) <= enc.lengths.max()  # balanced up to one row
    whole = assemble(shares, len(table), 2)
    single = assemble([ref.local_logits(enc, rows)], len(table), 2)
    assert np.abs(whole - single).max() <= 1e-5
    with pytest.raises(ValueError, match="some twice or never"):
        assemble([shares[0], shares[0]], len(table), 2)


def test_submission_layouts_and_metrics(tmp_path: Path) -> None:
    df = make_synthetic(6, seed=1, n_turns_max=2)
    layout = lambda path: submission_layout(file_layout(path))  # noqa: E731
    assert layout(write_wsdm(df, tmp_path / "w.parquet")) == "wsdm"
    assert layout(write_lmsys_test(df, tmp_path / "l.csv")) == "lmsys"
    labeled = df.assign(winner_model_a=1, winner_model_b=0, winner_tie=0)
    labeled.drop(columns=["prompt"]).to_parquet(tmp_path / "l.parquet")
    assert layout(tmp_path / "l.parquet") == "lmsys"
    probs = np.array([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8]])
    ids = np.array(["x", "y", "z"])
    assert submission_frame(ids, probs, "wsdm")["winner"].tolist() == ["model_a"] * 2 + ["model_b"]
    lmsys = submission_frame(ids, probs, "lmsys")
    assert list(lmsys.columns) == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    assert lmsys["winner_tie"].tolist() == [0.0] * 3  # a 2-class model never predicts a tie
    metrics = evaluate(probs, np.array([0, 2, -1]))  # a tie the model cannot score, one unlabeled
    assert metrics["n_labeled"] == 1 and metrics["n_unscorable"] == 1
    assert metrics["acc"] == 1.0 and metrics["log_loss"] == pytest.approx(-np.log(0.7))
    assert metrics["pred_counts"] == {"model_a": 2, "model_b": 1}
    assert evaluate(np.array([[0.0, 1.0]]), np.array([0]))["log_loss"] == pytest.approx(
        -np.log(1e-15)
    )


@pytest.mark.parametrize("name", ["linear2", "left3"])
def test_packed_scoring_equals_padded_with_swap_tta(ckpts, table, name: str) -> None:
    cache = ckpts[name].parent / "cache"
    kw = {"cache_dir": cache, "max_tokens": 600, "batch_size": 16}
    padded = Predictor.from_checkpoint(ckpts[name], **kw)
    packed = Predictor.from_checkpoint(ckpts[name], packing=True, **kw)
    for tta in (TTA("none"), TTA("full")):
        want = Ensemble([padded]).predict(table, tta).probs
        got = Ensemble([packed]).predict(table, tta).probs
        assert np.abs(got - want).max() <= 1e-4


def test_packed_scoring_of_a_mean_pooled_fusion_model_equals_padded(ckpts, table) -> None:
    kw = {"cache_dir": ckpts["fusion2"].parent / "cache", "max_tokens": 600}
    padded = Predictor.from_checkpoint(ckpts["fusion2"], **kw)
    packed = Predictor.from_checkpoint(ckpts["fusion2"], packing=True, **kw)
    assert np.abs(packed.predict(table) - padded.predict(table)).max() <= 1e-4
