"""Formatting and truncation: budget never exceeded and filled, every field represented, newest
turns whole, ``length`` equal to the formatted length, swap exact.

The property tests draw from seeded generators (not hypothesis): every case is reproducible from
its index, printed on failure."""

from __future__ import annotations

import random

import numpy as np
import pytest

from arena.data.format import Budget, Formatter, Template, allocate, head_tail


def char_tokenize(text: str) -> list[int]:
    return [ord(c) for c in text]


TEMPLATE = Template(prefix="^", prompt_tag="P", a_tag="A", b_tag="B", suffix="$", turn_sep="|")
TAGS = [ord(c) for c in "PAB"]
TEXT = 100_000  # text ids: TEXT + field * 10_000 + turn * 1_000 + position; template ids are chars


def ids(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


def field_turns(field: int, lengths: list[int]) -> list[np.ndarray]:
    """Turns whose every id says which field, turn and position it is."""
    return [
        ids([TEXT + field * 10_000 + t * 1_000 + j for j in range(n)])
        for t, n in enumerate(lengths)
    ]


def field_length(turns: list[np.ndarray], sep: int) -> int:
    return sum(len(t) for t in turns) + sep * max(0, len(turns) - 1)


def regions(out: np.ndarray, template: Template) -> list[np.ndarray]:
    """The (prompt, A, B) slots of a formatted sequence, checking the template around them."""
    prefix, suffix = char_tokenize(template.prefix), char_tokenize(template.suffix)
    assert out[: len(prefix)].tolist() == prefix
    assert out[len(out) - len(suffix) :].tolist() == suffix
    body = out[len(prefix) : len(out) - len(suffix)]
    at = [int(np.flatnonzero(body == tag)[0]) for tag in TAGS]  # tags are single ids, once each
    assert at[0] == 0 and at[0] < at[1] < at[2]
    assert all(int((body == tag).sum()) == 1 for tag in TAGS)
    return [body[at[0] + 1 : at[1]], body[at[1] + 1 : at[2]], body[at[2] + 1 :]]


def random_case(rng: random.Random) -> tuple[Template, Budget, list[list[np.ndarray]]]:
    """A template, a budget and (prompt, A, B) turns: lengths from empty to far over the budget."""
    sep = rng.choice(["", "|", "|", "||"])
    template = Template(prefix="^", prompt_tag="P", a_tag="A", b_tag="B", suffix="$", turn_sep=sep)
    floor = rng.randint(1, 8)
    max_length = rng.randint(5 + 3 * floor, 400)
    split = tuple(rng.uniform(0.05, 1.0) for _ in range(3))
    budget = Budget(max_length, split, rng.random(), floor)  # type: ignore[arg-type]
    n_turns = rng.randint(1, 5)

    def length() -> int:
        kind = rng.random()
        return 0 if kind < 0.1 else rng.randint(1, 12) if kind < 0.6 else rng.randint(1, 600)

    fields = [field_turns(f, [length() for _ in range(n_turns)]) for f in range(3)]
    if rng.random() < 0.1:  # the Siamese layout formats prompt + one response, B left empty
        fields[2] = []
    return template, budget, fields


def join(turns: list[np.ndarray], sep: list[int]) -> list[int]:
    return [x for k, t in enumerate(turns) for x in (*(sep if k else ()), *t.tolist())]


def check_field(
    region: np.ndarray, turns: list[np.ndarray], share: int, sep: list[int], ratio: float
) -> None:
    """One slot against its turns and its share (what ``allocate`` gives it)."""
    total = field_length(turns, len(sep))
    # filled: exactly min(length, share) tokens, so never fewer
    assert len(region) == min(total, share)
    text = region[region >= TEXT]
    if any(len(t) for t in turns):  # represented
        assert len(region) >= 1
        trailing_empty = next((k for k, t in enumerate(reversed(turns)) if len(t)), len(turns))
        if share >= trailing_empty * len(sep):  # unless empty last turns fill the share
            assert len(text) >= 1
    if turns and len(turns[-1]) <= share:  # the newest turn is whole, at the end
        assert region[len(region) - len(turns[-1]) :].tolist() == turns[-1].tolist()
    if total <= share:
        assert region.tolist() == join(turns, sep)
        return
    # the newest turns are kept whole while they fit, the turn before them is cut head+tail
    start = next(k for k in range(len(turns) + 1) if field_length(turns[k:], len(sep)) <= share)
    if start == len(turns):
        assert region.tolist() == head_tail(turns[-1], share, ratio).tolist()
        return
    whole = join(turns[start:], sep)
    assert region[len(region) - len(whole) :].tolist() == whole
    piece = region[: len(region) - len(whole)]
    cut, n_text = turns[start - 1], int((piece >= TEXT).sum())
    assert n_text >= len(piece) - len(sep)  # the rest is no more than a separator
    assert piece[:n_text].tolist() == head_tail(cut, n_text, ratio).tolist()
    assert piece[n_text:].tolist() == sep[len(sep) - (len(piece) - n_text) :]


@pytest.mark.parametrize("seed", range(4))
def test_truncation_properties(seed: int) -> None:
    rng = random.Random(seed)
    for case in range(500):
        template, budget, (prompt, a, b) = random_case(rng)
        fmt = Formatter(template, budget, char_tokenize)
        sep = char_tokenize(template.turn_sep)
        for swap in (False, True):
            out = fmt(prompt, a, b, swap=swap)
            fields = (prompt, b, a) if swap else (prompt, a, b)
            lengths = [field_length(f, len(sep)) for f in fields]
            shares = allocate(lengths, fmt.field_budget, budget.split, budget.min_field_tokens)
            where = f"seed {seed} case {case} swap {swap}: {budget}, sep {sep}, lengths {lengths}"
            assert out.dtype == np.int32, where
            assert len(out) <= budget.max_length, where
            assert len(out) == fmt.length(prompt, a, b) == fmt.length(prompt, b, a), where
            assert len(out) == fmt.fixed + min(sum(lengths), fmt.field_budget), where
            for region, turns, share in zip(regions(out, template), fields, shares, strict=True):
                try:
                    check_field(region, turns, share, sep, budget.head_ratio)
                except AssertionError as e:
                    raise AssertionError(f"{where}, region {region.tolist()}") from e
        assert np.array_equal(fmt(prompt, a, b, swap=True), fmt(prompt, b, a))


def test_long_old_turns_short_last_turn_fill_the_budget() -> None:
    """The probe of issue 22: dropping whole old turns kept 6 of 54 field tokens."""
    fmt = Formatter(TEMPLATE, Budget(max_length=59, min_field_tokens=2), char_tokenize)
    assert fmt.field_budget == 54
    fields = [field_turns(f, [100, 2]) for f in range(3)]
    out = fmt(*fields)
    assert len(out) == fmt.length(*fields) == 59  # was 5 + 6
    for region, turns in zip(regions(out, TEMPLATE), fields, strict=True):
        assert region[-3:].tolist() == [ord("|"), *turns[1].tolist()]  # the last turn, whole
        kept = region[:-3].tolist()
        assert len(kept) >= 2 and kept == head_tail(turns[0], len(kept), 0.5).tolist()


def test_swap_exchanges_fields_exactly() -> None:
    fmt = Formatter(TEMPLATE, Budget(max_length=64, min_field_tokens=2), char_tokenize)
    p, a, b = [ids([1001, 1002])], [ids([1100] * 5)], [ids([1200] * 7)]
    assert np.array_equal(fmt(p, a, b, swap=True), fmt(p, b, a))


def test_newest_turns_whole_oldest_kept_cut_head_tail() -> None:
    budget = Budget(max_length=5 + 45, split=(1, 1, 1), head_ratio=0.5, min_field_tokens=2)
    fmt = Formatter(TEMPLATE, budget, char_tokenize)
    old, mid, new = ids(list(range(1000, 1030))), ids([1600] * 3), ids([1700] * 4)
    fields = ([old, mid, new], [old, mid, new], [old, mid, new])
    out = fmt(*fields)
    assert len(out) == 50 == fmt.length(*fields)  # 15 tokens each
    for region in regions(out, TEMPLATE):
        assert region[-9:].tolist() == [ord("|"), *mid.tolist(), ord("|"), *new.tolist()]
        assert region[:-9].tolist() == [1000, 1001, 1002, 1027, 1028, 1029]  # head and tail


def test_room_for_no_more_than_a_separator() -> None:
    """Room of one separator after the whole turns holds that separator (earlier turns were cut),
    not a token of text glued to them; if the whole turns hold no text, it holds text instead."""
    fmt = Formatter(
        TEMPLATE, Budget(max_length=5 + 9, split=(1, 1, 1), min_field_tokens=3), char_tokenize
    )
    old, new = ids([1500] * 9), ids([1600] * 2)
    out = fmt([old, new], [old, new], [old, new])  # 3 tokens each: | 1600 1600
    assert [r.tolist() for r in regions(out, TEMPLATE)] == [[ord("|"), 1600, 1600]] * 3
    out = fmt([old, ids([])], [old, ids([])], [old, ids([])])  # empty last turns: 1500 1500 |
    assert [r.tolist() for r in regions(out, TEMPLATE)] == [[1500, 1500, ord("|")]] * 3
    one = Formatter(
        TEMPLATE, Budget(max_length=5 + 3, split=(1, 1, 1), min_field_tokens=1), char_tokenize
    )
    out = one([old, ids([])], [old, ids([])], [old, ids([])])  # 1 each: text, no separator
    assert [r.tolist() for r in regions(out, TEMPLATE)] == [[1500]] * 3


def test_head_tail() -> None:
    x = ids(list(range(10)))
    assert head_tail(x, 4, 0.5).tolist() == [0, 1, 8, 9]
    assert head_tail(x, 4, 1.0).tolist() == [0, 1, 2, 3]
    assert head_tail(x, 4, 0.0).tolist() == [6, 7, 8, 9]
    assert head_tail(x, 20, 0.5).tolist() == list(range(10))


def test_allocate_passes_unused_share_on() -> None:
    assert allocate([5, 100, 100], 105, (0.2, 0.4, 0.4), 4) == [5, 50, 50]
    assert sum(allocate([500, 100, 3], 90, (1, 1, 1), 4)) == 90


def test_too_small_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_length"):
        Formatter(TEMPLATE, Budget(max_length=10, min_field_tokens=8), char_tokenize)
