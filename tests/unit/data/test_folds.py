"""Property tests of arena.data.folds: grouped, stratified, deterministic, stored folds."""

from __future__ import annotations

import os
from pathlib import Path
from random import Random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import arena.data.folds as folds_module
from arena.data.folds import assign_folds, folds_for, folds_path, normalize_prompt
from arena.data.schema import DataError

BASES = (
    ["what is rust"],
    ["explain", "more please"],
    ["hello world"],
    ["write a poem about the sea"],
    ["summarize this text"],
    ["what is rust", "and go"],
    ["translate to german"],
    ["why"],
)
SPACES = (" ", "  ", "\t", "\n", " \n ")


def make_table(
    prompts: list[list[str]],
    labels: list[int],
    soft: list[np.ndarray | None] | None = None,
    fold: list[int] | None = None,
) -> pd.DataFrame:
    """A minimal pair table: ids, prompts, labels, optional soft labels and preset folds."""
    n = len(prompts)
    return pd.DataFrame(
        {
            "id": [f"id{i}" for i in range(n)],
            "prompt": prompts,
            "label": np.asarray(labels, dtype=np.int64),
            "soft_label": soft if soft is not None else [None] * n,
            "fold": np.asarray(fold if fold is not None else [-1] * n, dtype=np.int64),
        }
    )


@st.composite
def prompt_variant(draw: st.DrawFn, base: list[str]) -> list[str]:
    """The same prompt with random case changes and whitespace."""
    turns = []
    for turn in base:
        case = draw(st.sampled_from([str.lower, str.upper, str.title, str.swapcase]))
        sep, lead, trail = (draw(st.sampled_from(SPACES)) for _ in range(3))
        turns.append(lead + sep.join(case(w) for w in turn.split()) + trail)
    return turns


@st.composite
def grouped_tables(draw: st.DrawFn) -> tuple[pd.DataFrame, np.ndarray]:
    """A table of 0-30 rows whose prompts are variants of BASES, and each row's base index."""
    n = draw(st.integers(0, 30))
    base = np.array([draw(st.integers(0, len(BASES) - 1)) for _ in range(n)], dtype=np.int64)
    prompts = [draw(prompt_variant(BASES[b])) for b in base]
    labels = [draw(st.integers(-1, 2)) for _ in range(n)]
    soft = [
        np.array([0.2, 0.5, 0.3]) if lab < 0 and draw(st.booleans()) else None for lab in labels
    ]
    return make_table(prompts, labels, soft), base


def balanced_case(seed: int, n_groups: int = 1500) -> pd.DataFrame:
    """A larger table: mostly small prompt groups, imbalanced classes, some unlabeled rows."""
    rng = np.random.default_rng(seed)
    sizes = rng.geometric(0.6, size=n_groups)  # 1, sometimes 2-5 rows per prompt
    group = np.repeat(np.arange(n_groups), sizes)
    labels = rng.choice([-1, 0, 1, 2], size=len(group), p=[0.1, 0.4, 0.35, 0.15])
    return make_table([[f"prompt number {g}"] for g in group], labels.tolist())


@given(grouped_tables(), st.integers(2, 5), st.integers(0, 3))
@settings(max_examples=40, deadline=None)
def test_one_prompt_never_sits_in_two_folds(case: tuple, n_folds: int, seed: int) -> None:
    df, base = case
    folds = assign_folds(df, n_folds, seed)
    assert folds.shape == (len(df),) and folds.dtype == np.int64
    assert ((folds >= 0) & (folds < n_folds)).all()
    for b in np.unique(base):
        assert len(np.unique(folds[base == b])) == 1


@given(grouped_tables(), st.integers(2, 5), st.integers(0, 3), st.randoms())
@settings(max_examples=25, deadline=None)
def test_folds_are_deterministic_and_independent_of_row_order(
    case: tuple, n_folds: int, seed: int, rnd: Random
) -> None:
    df, _ = case
    folds = assign_folds(df, n_folds, seed)
    assert np.array_equal(assign_folds(df.copy(), n_folds, seed), folds)
    order = np.array(rnd.sample(range(len(df)), len(df)), dtype=np.int64)
    shuffled = df.iloc[order].reset_index(drop=True)
    assert np.array_equal(assign_folds(shuffled, n_folds, seed), folds[order])


@given(grouped_tables(), st.integers(2, 4), st.data())
@settings(max_examples=25, deadline=None)
def test_preset_folds_are_kept_and_pull_their_group(
    case: tuple, n_folds: int, data: st.DataObject
) -> None:
    df, base = case
    preset_base = {b: data.draw(st.integers(-1, n_folds - 1)) for b in np.unique(base)}
    preset = np.array([preset_base[b] for b in base], dtype=np.int64)
    keep = np.array([data.draw(st.booleans()) for _ in base], dtype=bool)
    df["fold"] = np.where(keep, preset, -1)
    folds = assign_folds(df, n_folds, 0)
    assert np.array_equal(folds[df["fold"] >= 0], df["fold"][df["fold"] >= 0])
    for b in np.unique(base):  # presets agree within a group, so the group still never splits
        assert len(np.unique(folds[base == b])) == 1


@pytest.mark.parametrize(("seed", "n_folds"), [(0, 5), (1, 4), (2, 10)])
def test_folds_are_balanced_in_size_and_classes(seed: int, n_folds: int) -> None:
    df = balanced_case(seed)
    folds = assign_folds(df, n_folds, seed)
    n, labels = len(df), df["label"].to_numpy()
    sizes = np.bincount(folds, minlength=n_folds)
    assert np.abs(sizes - n / n_folds).max() <= max(3, 0.02 * n / n_folds)
    for k in range(n_folds):
        for c in (-1, 0, 1, 2):
            overall = (labels == c).mean()
            assert abs((labels[folds == k] == c).mean() - overall) < 0.02


def test_soft_labels_stratify_by_argmax() -> None:
    n = 400
    soft = [np.array([0.8, 0.2]) if i % 4 == 0 else np.array([0.3, 0.7]) for i in range(n)]
    df = make_table([[f"p{i}"] for i in range(n)], [-1] * n, soft)
    folds = assign_folds(df, 4, 0)
    for k in range(4):  # every fold gets a quarter of the argmax-A rows
        assert ((folds == k) & (np.arange(n) % 4 == 0)).sum() == n // 16


def test_normalize_prompt_collapses_whitespace_and_case() -> None:
    assert normalize_prompt([" Hello\n  WORLD "]) == normalize_prompt(["hello world"])
    assert normalize_prompt("Straße") == normalize_prompt(["STRASSE"])
    assert normalize_prompt(["a", "b"]) != normalize_prompt(["a b"])


def test_assign_folds_errors_and_empty_table() -> None:
    df = make_table([["a"], ["b"]], [0, 1], fold=[0, 3])
    with pytest.raises(ValueError, match="n_folds"):
        assign_folds(df, 1)
    with pytest.raises(ValueError, match="preset"):
        assign_folds(df, 3)
    assert assign_folds(df.iloc[:0], 3).shape == (0,)


def test_folds_for_stores_once_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    df = balanced_case(0, n_groups=50)
    folds = folds_for(df, 5, 42, tmp_path)
    assert np.array_equal(folds, assign_folds(df, 5, 42))
    stored = list(tmp_path.iterdir())
    assert stored == [folds_path(df, 5, 42, tmp_path)]
    assert pd.read_parquet(stored[0]).columns.tolist() == ["id", "fold"]

    def fail(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("folds were recomputed instead of read")

    monkeypatch.setattr(folds_module, "assign_folds", fail)
    order = np.random.default_rng(0).permutation(len(df))
    shuffled = df.iloc[order].reset_index(drop=True)
    assert np.array_equal(folds_for(shuffled, 5, 42, tmp_path), folds[order])
    assert list(tmp_path.iterdir()) == stored


def test_folds_path_depends_on_content_and_settings(tmp_path: Path) -> None:
    df = balanced_case(0, n_groups=30)
    path = folds_path(df, 5, 42, tmp_path)
    assert path.parent == tmp_path and path.suffix == ".parquet"
    changed = df.copy()
    changed.loc[0, "label"] = (changed.loc[0, "label"] + 1) % 3
    others = {folds_path(df, 4, 42, tmp_path), folds_path(df, 5, 1, tmp_path)}
    others |= {folds_path(changed, 5, 42, tmp_path), folds_path(df.iloc[1:], 5, 42, tmp_path)}
    assert path not in others and len(others) == 4


def test_folds_for_rejects_a_stored_file_with_other_ids(tmp_path: Path) -> None:
    df = balanced_case(0, n_groups=20)
    path = folds_path(df, 5, 42, tmp_path)
    pd.DataFrame({"id": ["other", *df["id"][1:]], "fold": 0}).to_parquet(path)
    with pytest.raises(DataError, match=r"1 missing, 1 extra") as err:
        folds_for(df, 5, 42, tmp_path)
    assert str(path) in str(err.value)


def test_folds_for_needs_unique_ids(tmp_path: Path) -> None:
    df = make_table([["a"], ["b"]], [0, 1])
    df["id"] = "same"
    with pytest.raises(ValueError, match="unique"):
        folds_for(df, 2, 0, tmp_path)


def test_folds_for_writes_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    df = balanced_case(0, n_groups=20)
    target = folds_path(df, 5, 42, tmp_path)
    calls: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        calls.append((Path(src), Path(dst)))
        assert Path(src).exists() and not Path(dst).exists()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)  # the atomic write renames into place once
    folds_for(df, 5, 42, tmp_path)
    assert calls == [(calls[0][0], target)] and calls[0][0].parent == tmp_path
    assert sorted(tmp_path.iterdir()) == [target]


def test_a_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = balanced_case(0, n_groups=20)

    def broken(self: pd.DataFrame, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        folds_for(df, 5, 42, tmp_path)
    assert list(tmp_path.iterdir()) == []
