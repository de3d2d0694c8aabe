"""Batch samplers: token budgets, length grouping, swap draws, DDP shards, sorted inference."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arena.data.batching import (
    Collator,
    LengthBatchSampler,
    pack,
    pad,
    plan_batches,
    sorted_batches,
)


def lengths(n: int = 500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(4, 1, n).astype(int).clip(4, 1024)


def test_token_budget_respected_and_covers_every_row() -> None:
    lens = lengths()
    s = LengthBatchSampler(lens, batch_size=64, max_tokens=4096, seed=1)
    batches = list(s)
    seen = sorted(i for b in batches for i in b)
    assert seen == list(range(len(lens)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lens[b]) <= 4096
        assert len(b) <= 64


def test_epochs_differ_and_replay() -> None:
    s = LengthBatchSampler(lengths(), batch_size=16, seed=3)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(0)
    assert list(s) == e0 and e0 != e1


def test_swap_modes_draw_the_right_indices() -> None:
    n = 400
    rnd = [i for b in LengthBatchSampler(lengths(n), 16, swap="random", seed=0) for i in b]
    assert sorted(i % n for i in rnd) == list(range(n))  # every row once, in one of two orders
    share = np.mean([i >= n for i in rnd])
    assert 0.4 < share < 0.6
    both = [i for b in LengthBatchSampler(lengths(n), 16, swap="both") for i in b]
    assert sorted(both) == list(range(2 * n))
    none = [i for b in LengthBatchSampler(lengths(n), 16, swap="none") for i in b]
    assert sorted(none) == list(range(n))


def test_ddp_shards_are_equal_sized_and_cover() -> None:
    lens = lengths(301)
    shards = []
    for rank in range(2):
        s = LengthBatchSampler(lens, batch_size=8, max_tokens=2048, seed=5)
        s.rank, s.world = rank, 2
        shards.append(list(s))
    assert len(shards[0]) == len(shards[1])
    covered = {i for sh in shards for b in sh for i in b}
    assert covered == set(range(len(lens)))
    # the two batches of a step cost about the same: ranks wait little for each other
    cost = [[len(b) * lens[b].max() for b in sh] for sh in shards]
    gaps = [abs(a - b) / max(a, b) for a, b in zip(*cost, strict=True)]
    assert np.median(gaps) < 0.1


def test_length_grouping_reduces_padding() -> None:
    lens = lengths(2000)

    def pad_eff(sampler: LengthBatchSampler) -> float:
        real = padded = 0
        for b in sampler:
            real += lens[b].sum()
            padded += len(b) * lens[b].max()
        return real / padded

    grouped = pad_eff(LengthBatchSampler(lens, 16, bucket_batches=64))
    plain = pad_eff(LengthBatchSampler(lens, 16, bucket_batches=0))
    assert grouped > plain + 0.2


def test_sorted_batches_restore_order() -> None:
    lens = lengths(100)
    batches = sorted_batches(lens, max_tokens=2000, batch_size=32)
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(100))
    values = np.empty(100)
    values[order] = lens[order]  # outputs written back by index
    assert np.array_equal(values, lens)
    assert all(lens[b[0]] >= lens[b[-1]] for b in batches)


def test_plan_batches_fixed_size() -> None:
    batches = plan_batches(np.ones(10, int), np.arange(10), None, 4)
    assert [len(b) for b in batches] == [4, 4, 2]


def test_pad_left_and_right() -> None:
    seqs = [np.array([5, 6, 7]), np.array([8])]
    ids, mask = pad(seqs, 0, "right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad(seqs, 0, "left", multiple=4)
    assert ids.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]] and mask[1].tolist() == [0, 0, 0, 1]


def test_collator_stacks_both_orders() -> None:
    item = {
        "input_ids": np.array([1, 2]),
        "input_ids_swapped": np.array([2, 1, 3]),
        "label": 0,
        "features": np.ones(3, np.float32),
        "features_swapped": np.zeros(3, np.float32),
    }
    batch = Collator(0, "right", multiple=1)([item, item])
    assert batch["input_ids"].shape == (4, 3)
    assert batch["label"].shape == (2,)
    assert torch.equal(batch["features"][2:], torch.zeros(2, 3))


def test_lightning_reaches_set_epoch() -> None:
    from lightning.fabric.utilities.data import _set_sampler_epoch

    s = LengthBatchSampler(lengths(), batch_size=16, seed=3)
    loader = torch.utils.data.DataLoader(range(500), batch_sampler=s)
    first = list(s)
    _set_sampler_epoch(loader, 1)
    assert s.epoch == 1 and list(s) != first


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    row_tokens=st.integers(1, 64),
)
def test_pack_keeps_every_sequence_whole_in_rows_of_the_budget(
    lengths: list[int], row_tokens: int
) -> None:
    seqs = [np.arange(100 * i, 100 * i + n) for i, n in enumerate(lengths)]
    out = pack(seqs, row_tokens)
    ids, positions, ends = out["input_ids"], out["position_ids"], out["seq_ends"]
    rows, width = ids.shape
    assert width <= max(row_tokens, max(lengths))  # a longer sequence gets a row of its own
    flat_ids, flat_pos = ids.reshape(-1), positions.reshape(-1)
    for seq, end in zip(seqs, ends.tolist(), strict=True):
        start = end - len(seq) + 1
        assert start // width == end // width  # never split over two rows
        assert flat_ids[start : end + 1].tolist() == seq.tolist()
        assert flat_pos[start : end + 1].tolist() == list(range(len(seq)))
        if end + 1 < rows * width and (end + 1) % width:
            assert flat_pos[end + 1] == 0  # the next segment restarts: no attention across
    assert sum(lengths) <= rows * width


def test_ddp_ranks_get_about_equal_tokens_per_step_when_packed() -> None:
    lens = lengths(301)
    steps = []
    for rank in range(2):
        s = LengthBatchSampler(lens, 64, max_tokens=2048, seed=5, packed=True)
        s.rank, s.world = rank, 2
        steps.append([int(lens[b].sum()) for b in s])
    gaps = [abs(a - b) / max(a, b) for a, b in zip(*steps, strict=True)]
    assert sum(g > 0.1 for g in gaps) <= 1  # every step but the one holding the remainder


def test_packed_batches_count_real_tokens() -> None:
    lengths = np.array([5, 30, 60, 5, 30])
    order = np.argsort(-lengths, kind="stable")
    padded = plan_batches(lengths, order, 100, 64)
    packed = plan_batches(lengths, order, 100, 64, packed=True)
    assert all(lengths[b].sum() <= 100 for b in packed)
    assert all(len(b) * lengths[b].max() <= 100 for b in padded)
    assert len(packed) < len(padded)
    sampler = LengthBatchSampler(lengths, 64, 100, shuffle=False, packed=True)
    assert all(sum(sampler.lengths[i] for i in b) <= 100 for b in sampler)


def test_collator_packs_both_orders_in_the_padded_order() -> None:
    items = [
        {"input_ids": np.array([5, 6, 7]), "input_ids_swapped": np.array([8, 9, 7]), "label": 0},
        {"input_ids": np.array([4]), "input_ids_swapped": np.array([3]), "label": 1},
    ]
    packed = Collator(0, "right", pack=True, row_tokens=4)(items)
    flat = packed["input_ids"].reshape(-1)
    last_tokens = flat[packed["seq_ends"]].tolist()
    assert last_tokens == [7, 4, 7, 3]  # originals, then swapped: as the padded batch orders them
    assert "attention_mask" not in packed and packed["label"].tolist() == [0, 1]
