"""Formatting and truncation: budget never exceeded, every field represented, swap exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arena.data.format import Budget, Formatter, Template, allocate, head_tail


def char_tokenize(text: str) -> list[int]:
    return [ord(c) for c in text]


TEMPLATE = Template(prefix="^", prompt_tag="P", a_tag="A", b_tag="B", suffix="$", turn_sep="|")


def ids(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


field = st.lists(st.integers(1000, 2000), min_size=0, max_size=300).map(ids)
turns = st.integers(1, 4)


@settings(max_examples=200, deadline=None)
@given(
    n=turns,
    data=st.data(),
    max_length=st.integers(40, 300),
    head=st.floats(0, 1),
)
def test_budget_and_fields(n: int, data: st.DataObject, max_length: int, head: float) -> None:
    prompt = [data.draw(field) for _ in range(n)]
    a = [data.draw(field) for _ in range(n)]
    b = [data.draw(field) for _ in range(n)]
    budget = Budget(max_length=max_length, head_ratio=head, min_field_tokens=4)
    fmt = Formatter(TEMPLATE, budget, char_tokenize)
    out = fmt(prompt, a, b)
    assert len(out) <= max_length
    assert len(out) == fmt.length(prompt, a, b)
    text = "".join(chr(i) if i < 1000 else "x" for i in out)
    # the template pieces are always there, in order
    assert text.startswith("^P") and text.endswith("$")
    p_part, rest = text[2:].split("A", 1)
    a_part, b_part = rest.split("B", 1)
    # a field with content keeps at least min(len, 4) tokens: never dropped entirely
    for part, turns_ in ((p_part, prompt), (a_part, a), (b_part, b)):
        if sum(len(t) for t in turns_[-1:]) > 0:
            assert part.count("x") >= min(4, len(turns_[-1]))


def test_swap_exchanges_fields_exactly() -> None:
    fmt = Formatter(TEMPLATE, Budget(max_length=64, min_field_tokens=2), char_tokenize)
    p, a, b = [ids([1001, 1002])], [ids([1100] * 5)], [ids([1200] * 7)]
    assert np.array_equal(fmt(p, a, b, swap=True), fmt(p, b, a))


def test_keep_last_turns_first() -> None:
    fmt = Formatter(TEMPLATE, Budget(max_length=40, min_field_tokens=2), char_tokenize)
    old, new = ids([1500] * 30), ids([1600] * 4)
    out = fmt([old, new], [old, new], [old, new])
    assert 1600 in out and 1500 not in out  # the old turn went first, the last one stayed


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
