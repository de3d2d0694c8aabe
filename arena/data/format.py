"""Prompt formatting and truncation on token ids.

Every field is tokenized once, turn by turn (see :mod:`arena.data.tokenize`); formatting then only
concatenates id lists, so swapping A and B, changing the budget or the template never re-tokenizes.

Layout of one sequence::

    prefix | prompt_tag | prompt turns | a_tag | A turns | b_tag | B turns | suffix

Truncation (``Budget``) guarantees ``len(ids) <= max_length`` and that no field is dropped. The
field budget (``max_length`` less the template) is shared by :func:`allocate` over the full field
lengths: every non-empty field first gets ``min_field_tokens``, the rest goes by ``split``, and a
share a short field does not use passes on to the fields that need it, so the budget is filled
whenever the fields are longer. Each field is then cut to its share on its own: its newest turns
are kept whole, the oldest turn kept is cut to its head and tail (``head_ratio`` of what it keeps
from its start) to fill the share exactly, and older turns are dropped. A field whose newest turn
alone is over its share keeps that turn's head and tail. A formatted length is therefore
``len(template) + min(sum of field lengths, field budget)`` (:meth:`Formatter.length`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Ids = np.ndarray  # (n,) int32 token ids
Tokenize = Callable[[str], list[int]]


@dataclass(frozen=True)
class Template:
    """Text pieces around the three fields; a backbone's YAML sets them (chat markers for decoders).

    Attributes:
        prefix: text before everything (e.g. ``"<bos><start_of_turn>user\\n"``).
        prompt_tag: text before the prompt turns.
        a_tag: text before response A.
        b_tag: text before response B.
        suffix: text after everything (e.g. the assistant-turn opener a decoder pools on).
        turn_sep: text between consecutive turns of one field.
    """

    prefix: str = ""
    prompt_tag: str = "<prompt>: "
    a_tag: str = "\n\n<response_a>: "
    b_tag: str = "\n\n<response_b>: "
    suffix: str = ""
    turn_sep: str = "\n"


@dataclass(frozen=True)
class Budget:
    """How ``max_length`` tokens are shared between the fields.

    Attributes:
        max_length: hard cap on the formatted sequence, template included.
        split: shares of the field budget for (prompt, A, B); normalised, need not sum to 1.
        head_ratio: fraction of a truncated field's share kept from its start; the rest is its tail.
        min_field_tokens: every non-empty field keeps at least this many tokens.
    """

    max_length: int = 512
    split: tuple[float, float, float] = (0.2, 0.4, 0.4)
    head_ratio: float = 0.5
    min_field_tokens: int = 8

    def __post_init__(self) -> None:
        if len(self.split) != 3 or min(self.split) <= 0:
            raise ValueError(f"Budget.split must be three positive shares, got {self.split}")
        if not 0.0 <= self.head_ratio <= 1.0:
            raise ValueError(f"Budget.head_ratio must lie in [0, 1], got {self.head_ratio}")


def allocate(lengths: Sequence[int], budget: int, split: Sequence[float], floor: int) -> list[int]:
    """Water-fill ``budget`` tokens over fields of the given lengths.

    Each field first gets ``min(length, floor)``; the rest is shared by ``split`` and any share a
    short field does not use is passed on to the fields that still need tokens.

    Returns:
        tokens kept per field; ``sum <= budget`` and ``kept[i] <= lengths[i]``.
    """
    need = [int(n) for n in lengths]
    kept = [min(n, floor) for n in need]
    if sum(kept) > budget:
        raise ValueError(f"budget of {budget} tokens cannot keep {floor} tokens of each field")
    left = budget - sum(kept)
    while left > 0:
        open_ = [i for i in range(len(need)) if kept[i] < need[i]]
        if not open_:
            break
        total = sum(split[i] for i in open_)
        grant = {i: max(1, int(left * split[i] / total)) for i in open_}
        for i in open_:
            take = min(grant[i], need[i] - kept[i], left)
            kept[i] += take
            left -= take
    return kept


def head_tail(ids: Ids, keep: int, head_ratio: float) -> Ids:
    """Keep ``keep`` tokens of ``ids``: the first ``head_ratio`` share and the tail."""
    if len(ids) <= keep:
        return ids
    head = int(round(keep * head_ratio))
    tail = keep - head
    return np.concatenate([ids[:head], ids[len(ids) - tail :]]) if tail else ids[:head]


class Formatter:
    """Assembles token ids of one pair under a template and a budget.

    Args:
        template: the text pieces.
        budget: the truncation rule.
        tokenize: text -> ids without special tokens (the template is tokenized once here).
    """

    def __init__(self, template: Template, budget: Budget, tokenize: Tokenize):
        self.template, self.budget = template, budget
        piece = {k: np.asarray(tokenize(v), dtype=np.int32) for k, v in vars(template).items()}
        self.prefix, self.suffix = piece["prefix"], piece["suffix"]
        self.tags = (piece["prompt_tag"], piece["a_tag"], piece["b_tag"])
        self.turn_sep = piece["turn_sep"]
        self.fixed = sum(len(p) for p in (self.prefix, self.suffix, *self.tags))
        self.field_budget = budget.max_length - self.fixed
        if self.field_budget < 3 * budget.min_field_tokens:
            raise ValueError(
                f"max_length={budget.max_length} leaves {self.field_budget} tokens after the "
                f"template ({self.fixed} tokens); need at least {3 * budget.min_field_tokens}"
            )

    def _join(self, turns: Sequence[Ids]) -> Ids:
        parts: list[Ids] = []
        for i, t in enumerate(turns):
            if i:
                parts.append(self.turn_sep)
            parts.append(t)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

    def _field_length(self, turns: Sequence[Ids]) -> int:
        """Tokens of a field's turns joined by the separator."""
        return sum(len(t) for t in turns) + len(self.turn_sep) * max(0, len(turns) - 1)

    def _fit(self, turns: Sequence[Ids], keep: int) -> Ids:
        """Exactly ``min(keep, field length)`` tokens of one field, newest turns first.

        The newest turns that fit are kept whole; the turn before them is cut head+tail to the
        room left less a separator, and older turns are dropped. Where the room left is no more
        than a separator, it holds the end of that separator (a mark that earlier turns were cut)
        or, if the whole turns kept hold no text, the cut turn's text. A field with text thus keeps
        some unless its share is under ``len(turn_sep)`` times its trailing empty turns.
        """
        if keep <= 0 or not turns:
            return np.zeros(0, dtype=np.int32)
        if keep >= self._field_length(turns):
            return self._join(turns)
        sep = len(self.turn_sep)
        first, used = len(turns), 0  # turns[first:] are kept whole, in ``used`` tokens
        while first > 0:
            add = len(turns[first - 1]) + (sep if first < len(turns) else 0)
            if used + add > keep:
                break
            first, used = first - 1, used + add
        if first == len(turns):  # the newest turn alone is over the share
            return head_tail(turns[-1], keep, self.budget.head_ratio)
        whole = self._join(turns[first:])
        room = keep - used  # < len(turns[first - 1]) + sep, as that turn did not fit whole
        if room == 0:
            return whole
        cut = turns[first - 1]
        text = room - sep if room > sep else (0 if any(len(t) for t in turns[first:]) else 1)
        text = min(text, len(cut))
        piece = head_tail(cut, text, self.budget.head_ratio)
        return np.concatenate([piece, self.turn_sep[sep - (room - text) :], whole])

    def __call__(
        self, prompt: Sequence[Ids], a: Sequence[Ids], b: Sequence[Ids], swap: bool = False
    ) -> Ids:
        """Format one pair.

        Args:
            prompt, a, b: per-turn token ids of each field.
            swap: exchange A and B before formatting.

        Returns:
            (T,) int32 ids with ``T <= budget.max_length``.
        """
        fields = (prompt, b, a) if swap else (prompt, a, b)
        kept = allocate(
            [self._field_length(f) for f in fields],
            self.field_budget,
            self.budget.split,
            self.budget.min_field_tokens,
        )
        parts = [self.prefix]
        for tag, turns, k in zip(self.tags, fields, kept, strict=True):
            parts += [tag, self._fit(turns, k)]
        parts.append(self.suffix)
        return np.concatenate(parts).astype(np.int32, copy=False)

    def length(self, prompt: Sequence[Ids], a: Sequence[Ids], b: Sequence[Ids]) -> int:
        """Formatted length without building the sequence (same for both orders).

        :func:`allocate` fills the field budget when the fields overflow it and :meth:`_fit`
        keeps exactly each field's share, so no field needs to be cut to know the length.
        """
        total = sum(self._field_length(f) for f in (prompt, a, b))
        return self.fixed + min(total, self.field_budget)
