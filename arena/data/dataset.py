"""Map-style dataset over a tokenized pair table, with A/B swap augmentation.

Views (``view``):
    ``plain``   index ``i`` is row ``i`` as read (``len == n_rows``).
    ``both``    index ``i < n`` is row ``i``, index ``n + i`` is row ``i`` swapped
                (``len == 2 * n_rows``); the batch sampler decides which indices an epoch draws
                (both, or one of the two by a seeded coin), so the dataset itself holds no
                randomness and works the same in DataLoader workers.
    ``pair``    index ``i`` is row ``i`` carrying both orders (``input_ids`` and
                ``input_ids_swapped``) for swap TTA and swap-consistency metrics.

Swapping flips everything that refers to a side: the label, the soft target, every teacher's
probability vector and the engineered features.

Layouts (``layout``):
    ``joint``    one sequence per pair: prompt, A and B (a cross-encoder).
    ``siamese``  two sequences per pair, ``input_ids`` (prompt + first side) and
                 ``input_ids_second`` (prompt + second side), each formatted with the B slot
                 left empty; swapping exchanges them (``pair`` view: ``input_ids_swapped`` and
                 ``input_ids_second_swapped``). Features come per sequence too: ``features``
                 as the pair is, ``features_second`` as seen from the second side (the
                 swapped pair's), and their ``_swapped`` twins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from arena.data.format import Formatter
from arena.data.swap import swap_label, swap_probs
from arena.data.tokenize import TokenizedPairs

View = Literal["plain", "both", "pair"]
Layout = Literal["joint", "siamese"]


@dataclass(frozen=True)
class PairArrays:
    """Everything a row carries besides its text, as arrays aligned with the tokens.

    Attributes:
        labels: (n,) int, -1 when unlabeled.
        targets: (n, C) float32 soft or one-hot targets (all zero when unlabeled).
        teachers: (n, N, C) float32 teacher probabilities or None.
        features: (n, F) float32 normalised engineered features or None.
    """

    labels: np.ndarray
    targets: np.ndarray
    teachers: np.ndarray | None = None
    features: np.ndarray | None = None


class PairDataset(torch.utils.data.Dataset):
    """Formats rows on access; swapping works on ids, so it never re-tokenizes.

    Args:
        tokens: turn-level ids of the table.
        arrays: labels, targets, teachers and features aligned with ``tokens``.
        formatter: template + budget.
        view: one of the views above.
        swap_features: maps a (F,) feature vector to that of the swapped pair.
        layout: one of the layouts above.
    """

    def __init__(
        self,
        tokens: TokenizedPairs,
        arrays: PairArrays,
        formatter: Formatter,
        view: View = "plain",
        swap_features: Callable[[np.ndarray], np.ndarray] | None = None,
        layout: Layout = "joint",
    ):
        if len(arrays.labels) != len(tokens):
            raise ValueError(f"{len(arrays.labels)} label rows for {len(tokens)} tokenized rows")
        needs_swap = view != "plain" or layout == "siamese"
        if arrays.features is not None and swap_features is None and needs_swap:
            raise ValueError("features with swapped views or siamese sides need swap_features")
        if layout not in ("joint", "siamese"):
            raise ValueError(f"layout {layout!r}; expected 'joint' or 'siamese'")
        self.tokens, self.arrays, self.formatter = tokens, arrays, formatter
        self.view, self.swap_features, self.layout = view, swap_features, layout

    @property
    def n_rows(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return 2 * self.n_rows if self.view == "both" else self.n_rows

    def row_lengths(self) -> np.ndarray:
        """(n_rows,) formatted length of every row (the same in both orders); for ``siamese``
        twice the longer side, the tokens a row takes once padded."""
        if self.layout == "joint":
            fields = (self.tokens.fields(i) for i in range(self.n_rows))
            return np.array([self.formatter.length(*f) for f in fields])
        sides = [self._sides(i) for i in range(self.n_rows)]
        return np.array([2 * max(len(a), len(b)) for a, b in sides])

    def _sides(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(prompt + A, prompt + B) token ids of a row, each with the B slot left empty."""
        prompt, a, b = self.tokens.fields(row)
        return self.formatter(prompt, a, []), self.formatter(prompt, b, [])

    def __getitem__(self, index: int) -> dict[str, Any]:
        row, swapped = index % self.n_rows, index >= self.n_rows
        item = self._side_arrays(row, swapped)
        if self.layout == "siamese":
            side_a, side_b = self._sides(row)
            first, second = (side_b, side_a) if swapped else (side_a, side_b)
            item["input_ids"], item["input_ids_second"] = first, second
            if self.view == "pair":
                item["input_ids_swapped"], item["input_ids_second_swapped"] = side_b, side_a
            if "features" in item:  # the second side sees the pair swapped
                item["features_second"] = self._swap(item["features"])
                if self.view == "pair":
                    item["features_second_swapped"] = self._swap(item["features_swapped"])
            return item
        prompt, a, b = self.tokens.fields(row)
        item["input_ids"] = self.formatter(prompt, a, b, swap=swapped)
        if self.view == "pair":
            item["input_ids_swapped"] = self.formatter(prompt, a, b, swap=True)
        return item

    def _side_arrays(self, row: int, swapped: bool) -> dict[str, Any]:
        arr = self.arrays
        label, target = int(arr.labels[row]), arr.targets[row]
        item: dict[str, Any] = {"index": row, "swapped": swapped}
        item["label"] = swap_label(label) if swapped else label
        item["target"] = swap_probs(target) if swapped else target
        if arr.teachers is not None:
            item["teachers"] = swap_probs(arr.teachers[row]) if swapped else arr.teachers[row]
        if arr.features is not None:
            feats = arr.features[row]
            item["features"] = self._swap(feats) if swapped else feats
            if self.view == "pair":
                item["features_swapped"] = self._swap(feats)
        return item

    def _swap(self, features: np.ndarray) -> np.ndarray:
        assert self.swap_features is not None  # checked in __init__ wherever a swap is needed
        return self.swap_features(features)
