"""Batching: dynamic padding or padding-free packing, token-budget training batches,
length-sorted inference batches.

Packed batches (``pack=True``, :func:`pack`) stand sequences side by side in rows of a token
budget, each sequence's position ids restarting at 0, so a decoder attends within each sequence
only (transformers builds the block-diagonal causal mask from the position ids when no attention
mask is given) and each sequence is pooled at its last token (``seq_ends``). A packed batch costs
the sum of its lengths, a padded one its row count times its longest row.

Batch samplers here shard themselves under DDP (every rank gets the same number of batches, and
the ``w`` batches of one step cost about the same tokens), so the trainer runs with
``use_distributed_sampler=False``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch

SwapMode = Literal["none", "random", "both"]


def plan_batches(
    lengths: np.ndarray,
    order: np.ndarray,
    max_tokens: int | None,
    batch_size: int,
    packed: bool = False,
) -> list[np.ndarray]:
    """Cut ``order`` into consecutive batches.

    With ``max_tokens`` a batch grows while its cost stays within ``max_tokens`` and
    ``len(batch) <= batch_size``: the padded size ``len(batch) * max(length in batch)``, or with
    ``packed`` the tokens it holds, ``sum(length in batch)``. Without it batches hold
    ``batch_size`` rows.
    """
    if max_tokens is None:
        return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    batches, start, longest, total = [], 0, 0, 0
    for k, idx in enumerate(order):
        longest_next, total_next = max(longest, int(lengths[idx])), total + int(lengths[idx])
        size = k - start + 1
        cost = total_next if packed else size * longest_next
        if k > start and (cost > max_tokens or size > batch_size):
            batches.append(order[start:k])
            start, longest_next, total_next = k, int(lengths[idx]), int(lengths[idx])
        longest, total = longest_next, total_next
    if start < len(order):
        batches.append(order[start:])
    return batches


def dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _EpochHook:
    """Lightning calls ``set_epoch`` on ``batch_sampler.sampler``, never on a batch sampler itself:
    this forwards it, so each epoch reshuffles."""

    def __init__(self, owner: LengthBatchSampler):
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class LengthBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Training batches of similar length, in random order, sharded over DDP ranks.

    Rows are shuffled, cut into chunks of ``bucket_batches * batch_size`` rows, each chunk sorted
    by length and cut into batches (by ``max_tokens`` when given); batch order is shuffled again.
    ``max_tokens=None`` with ``bucket_batches=0`` gives plain random fixed-size batches.

    A/B swap augmentation is drawn here, over a dataset in the ``both`` view (index ``n + i`` is
    row ``i`` swapped): ``random`` draws one order per row by a coin of probability ``swap_prob``,
    ``both`` draws both orders, ``none`` only the original. All randomness is seeded by
    ``(seed, epoch)``, so a resumed run replays the same epoch.

    Args:
        lengths: (n,) sequence lengths of the rows (equal in both orders).
        batch_size: most rows per batch.
        max_tokens: padded-token cap per batch (token-budget batching) or None.
        bucket_batches: chunk size in batches for length grouping; 0 disables grouping.
        shuffle: random order (training) or sorted once (evaluation).
        seed: base seed; the epoch (``set_epoch``) is mixed in.
        swap: augmentation mode (see above); swap_prob: its coin.
        packed: ``max_tokens`` counts the tokens of packed batches, not the padded size.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        max_tokens: int | None = None,
        bucket_batches: int = 64,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        swap: SwapMode = "none",
        swap_prob: float = 0.5,
        packed: bool = False,
    ):
        self.row_lengths = np.asarray(lengths, dtype=np.int64)
        self.lengths = np.concatenate([self.row_lengths, self.row_lengths])
        self.swap, self.swap_prob = swap, swap_prob
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.bucket_batches, self.shuffle, self.seed = bucket_batches, shuffle, seed
        self.drop_last, self.packed = drop_last, packed
        self.epoch = 0
        self.rank, self.world = dist_info()
        self.sampler = _EpochHook(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch))
        n = len(self.row_lengths)
        items = np.arange(n)
        if self.swap == "random":
            items = items + n * (rng.random(n) < self.swap_prob)
        elif self.swap == "both":
            items = np.arange(2 * n)
        order = items[rng.permutation(len(items))] if self.shuffle else items
        n = len(order)
        if self.bucket_batches:
            chunk = self.bucket_batches * self.batch_size
            pieces = [order[s : s + chunk] for s in range(0, n, chunk)]
            order = np.concatenate(
                [p[np.argsort(-self.lengths[p], kind="stable")] for p in pieces] or [order]
            )
        batches = plan_batches(self.lengths, order, self.max_tokens, self.batch_size, self.packed)
        if (
            self.drop_last
            and batches
            and len(batches[-1]) < self.batch_size
            and not self.max_tokens
        ):
            batches = batches[:-1]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _shard(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """This rank's batches. The ``world`` batches of one step are batches of about the same
        cost (sorted by cost, dealt a step at a time, the steps in random order), so no rank
        waits long for another at the gradient all-reduce."""
        if self.world == 1:
            return batches
        per_rank = -(-len(batches) // self.world)
        padded = batches + batches[: per_rank * self.world - len(batches)]
        lengths = self.lengths
        cost = [lengths[b].sum() if self.packed else len(b) * lengths[b].max() for b in padded]
        ranked = np.argsort(cost, kind="stable")
        steps = ranked.reshape(per_rank, self.world)
        if self.shuffle:
            steps = steps[np.random.default_rng((self.seed, self.epoch, 1)).permutation(per_rank)]
        return [padded[i] for i in steps[:, self.rank]]

    def resume(self, epoch: int, batches_done: int) -> None:
        """Skip the first ``batches_done`` batches whenever ``epoch`` is iterated (Lightning may
        iterate a resumed epoch more than once before training on it); a later epoch ends this."""
        self._resume = (epoch, batches_done)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, skip = getattr(self, "_resume", (-1, 0))
        if self.epoch > epoch:
            self._resume = (-1, 0)
        start = skip if epoch == self.epoch else 0
        for b in self._shard(self._all_batches())[start:]:
            yield b.tolist()

    def __len__(self) -> int:
        return len(self._shard(self._all_batches()))


def sorted_batches(
    lengths: Sequence[int] | np.ndarray,
    max_tokens: int | None,
    batch_size: int,
    rank: int = 0,
    world: int = 1,
    packed: bool = False,
) -> list[np.ndarray]:
    """Inference batches over rows sorted by length (longest first, so memory peaks early).

    Each batch holds row indices into the original order; outputs are put back with them. With
    ``world > 1`` rank ``r`` takes every ``world``-th row of the sorted order, so every rank gets
    a share of rows (and of tokens) as equal as the rows allow.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")[rank::world]
    return plan_batches(lengths, order, max_tokens, batch_size, packed)


def pad(
    seqs: Sequence[np.ndarray], pad_id: int, side: Literal["left", "right"], multiple: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id sequences to a common length.

    Returns:
        input_ids (B, T) long and attention_mask (B, T) long, T a multiple of ``multiple``.
    """
    longest = max(len(s) for s in seqs)
    longest = -(-longest // multiple) * multiple
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s)
        sl = slice(longest - n, longest) if side == "left" else slice(0, n)
        ids[i, sl] = torch.from_numpy(np.asarray(s, dtype=np.int64))
        mask[i, sl] = 1
    return ids, mask


def pack(seqs: Sequence[np.ndarray], row_tokens: int | None = None) -> dict[str, torch.Tensor]:
    """Place id sequences side by side in rows of at most ``row_tokens`` tokens (longest first,
    each into the emptiest row it fits, so the rows fill evenly; a longer sequence gets a row of
    its own), without padding between them.

    A row shorter than the longest is filled up with token 0 at positions restarting at 0: a
    segment of its own, attended by nothing else and pooled by no one.

    Returns:
        ``input_ids`` (R, T) long, ``position_ids`` (R, T) long restarting at 0 for every
        sequence, and ``seq_ends`` (N,) long: the index in the flattened (R * T) rows of each
        sequence's last token, in the order of ``seqs``.
    """
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    if not len(lengths) or lengths.min() < 1:
        raise ValueError("packing needs at least one sequence and no empty ones")
    limit = max(int(lengths.max()), row_tokens or int(lengths.sum()))
    order = np.argsort(-lengths, kind="stable")
    # as many rows as first fit needs; the sequences then go, longest first, into the emptiest
    # row they fit, so the rows end up about equally full (one no row holds opens another)
    room = [limit] * len(_first_fit(lengths[order], limit))
    rows: list[list[int]] = [[] for _ in room]
    for i in order:
        n = int(lengths[i])
        fits = [r for r, left in enumerate(room) if left >= n]
        if not fits:
            rows.append([])
            room.append(limit)
            fits = [len(room) - 1]
        fit = max(fits, key=room.__getitem__)
        rows[fit].append(int(i))
        room[fit] -= n
    width = max(limit - left for left in room)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    ends = torch.zeros(len(seqs), dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            n = int(lengths[i])
            ids[r, at : at + n] = torch.from_numpy(np.asarray(seqs[i], dtype=np.int64))
            positions[r, at : at + n] = torch.arange(n)
            ends[i] = r * width + at + n - 1
            at += n
        positions[r, at:] = torch.arange(width - at)
    return {"input_ids": ids, "position_ids": positions, "seq_ends": ends}


def _first_fit(lengths: np.ndarray, limit: int) -> list[int]:
    """Room left in each row when ``lengths`` go, in order, into the first row they fit."""
    room: list[int] = []
    for n in lengths.tolist():
        fit = next((r for r, left in enumerate(room) if left >= n), None)
        if fit is None:
            room.append(limit)
            fit = len(room) - 1
        room[fit] -= n
    return room


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keyword arguments of a preference model's ``forward`` in a collated batch: token ids
    with an attention mask (padded) or position ids and sequence ends (packed), and features."""
    keys = ("input_ids", "attention_mask", "position_ids", "seq_ends", "features")
    return {k: batch[k] for k in keys if k in batch}


def token_counts(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(real tokens, tokens computed) of a collated batch, padded or packed."""
    if "seq_ends" in batch:
        real = batch["position_ids"].reshape(-1)[batch["seq_ends"]] + 1
        return int(real.sum()), batch["input_ids"].numel()
    return int(batch["attention_mask"].sum()), batch["attention_mask"].numel()


class Collator:
    """Pads (or with ``pack`` packs, see :func:`pack`) a list of dataset items into a batch.

    Items carry ``input_ids`` and optionally ``input_ids_swapped`` (evaluation with both orders:
    the batch then holds ``2B`` sequences, originals first). Siamese items
    (``input_ids_second``, see :class:`arena.data.dataset.PairDataset`) give twice the
    sequences: every first side (originals, then swapped ones), then every second side in the
    same order. ``features`` get one row per sequence, in that order, from the items' matching
    ``features[_second][_swapped]``. Everything else is stacked, one entry per item.
    """

    def __init__(
        self,
        pad_id: int,
        padding_side: Literal["left", "right"],
        multiple: int = 8,
        pack: bool = False,
        row_tokens: int | None = None,
    ):
        self.pad_id, self.side, self.multiple = pad_id, padding_side, multiple
        self.pack, self.row_tokens = pack, row_tokens

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        first = items[0]
        sides = ["", "_second"] if "input_ids_second" in first else [""]
        orders = ["", "_swapped"] if "input_ids_swapped" in first else [""]
        keys = [f"{side}{order}" for side in sides for order in orders]
        seqs = [it[f"input_ids{key}"] for key in keys for it in items]
        if self.pack:
            batch = pack(seqs, self.row_tokens)
        else:
            ids, mask = pad(seqs, self.pad_id, self.side, self.multiple)
            batch = {"input_ids": ids, "attention_mask": mask}
        for key in first:
            if not key.startswith(("input_ids", "features")):
                batch[key] = torch.as_tensor(np.stack([np.asarray(it[key]) for it in items]))
        if "features" in first:
            feats = [it[f"features{key}"] for key in keys for it in items]
            batch["features"] = torch.as_tensor(np.stack(feats))
        return batch
