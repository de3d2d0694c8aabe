"""Cross-validation folds: deterministic, stratified by label, grouped by prompt.

Two rows whose prompts are equal after collapsing whitespace and case-folding form one *group*,
and a group always lands in a single fold, so a prompt never leaks between train and validation.
Within that constraint, folds are balanced per *stratum*: the hard label, else the argmax of the
soft label, else a stratum of its own for unlabeled rows.

Rows whose ``fold`` column is already >= 0 (e.g. folds shipped with a data file) keep it, and the
other rows of their prompt group join them. If the preset folds of one group disagree, they are
still kept (the file's choice is respected) and the group's unassigned rows join its most common
preset fold.

Use :func:`folds_for` in training: it stores the assignment next to the data keyed by a content
hash, so every run and every teacher of a K-fold distillation agrees on the folds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arena.data.readers import read_many
from arena.data.schema import DataError, ReadReport
from arena.data.synthetic import make_synthetic
from arena.utils.io import write_parquet


def normalize_prompt(prompt: str | Iterable[str]) -> str:
    """Canonical text of a prompt: each turn whitespace-collapsed and case-folded.

    Args:
        prompt: a list of user turns (a bare string counts as one turn).

    Returns:
        The normalized turns joined by the ASCII unit separator.
    """
    turns = [prompt] if isinstance(prompt, str) else list(prompt)
    return "\x1f".join(" ".join(str(t).split()).casefold() for t in turns)


def prompt_keys(df: pd.DataFrame) -> np.ndarray:
    """Group key of every row: a stable hash of the normalized prompt.

    Args:
        df: pair table, n rows.

    Returns:
        (n,) array of 16-character hex strings; equal normalized prompts give equal keys.
    """
    return np.array(
        [
            hashlib.blake2b(normalize_prompt(p).encode("utf-8"), digest_size=8).hexdigest()
            for p in df["prompt"]
        ],
        dtype=object,
    )


def strata(df: pd.DataFrame) -> np.ndarray:
    """Stratum of every row: hard label, else argmax of the soft label, else -1.

    Args:
        df: pair table, n rows.

    Returns:
        (n,) int64 array with values in {-1, 0, 1, 2}.
    """
    labels = _int_column(df, "label")
    if "soft_label" in df.columns:
        soft = df["soft_label"].to_numpy(dtype=object)
        for i in np.flatnonzero((labels < 0) & df["soft_label"].notna().to_numpy()):
            labels[i] = int(np.argmax(np.asarray(soft[i])))
    return labels


def _int_column(df: pd.DataFrame, name: str) -> np.ndarray:
    """(n,) int64 copy of a column, with -1 for missing values or a missing column."""
    if name not in df.columns:
        return np.full(len(df), -1, dtype=np.int64)
    return pd.to_numeric(df[name]).fillna(-1).to_numpy(dtype=np.int64).copy()


def _greedy_assign(counts: np.ndarray, preset: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Assign groups without a preset fold, balancing per-stratum counts across folds.

    Groups are shuffled with ``seed`` (breaking ties between equal sizes), then visited largest
    first; each goes to the fold whose squared relative deviation from the per-stratum targets
    (plus the same for fold size) grows least, ties going to the smaller fold.

    Args:
        counts: (n_groups, n_strata) rows per group and stratum.
        preset: (n_groups,) fold fixed by the data, or -1.
        n_folds: number of folds K.
        seed: shuffling seed.

    Returns:
        (n_groups,) int64 fold of every group.
    """
    fold_counts = np.zeros((n_folds, counts.shape[1] + 1))  # last column: fold size
    group_counts = np.concatenate([counts, counts.sum(1, keepdims=True)], axis=1).astype(float)
    np.add.at(fold_counts, preset[preset >= 0], group_counts[preset >= 0])
    target = group_counts.sum(0) / n_folds  # (n_strata + 1,)
    scale = np.maximum(target, 1.0)
    order = np.random.default_rng(seed).permutation(len(counts))
    order = order[np.argsort(-group_counts[order, -1], kind="stable")]
    folds = preset.copy()
    for g in order[preset[order] < 0]:
        # growth of sum((fold - target)^2 / scale) when the group joins each fold: (n_folds,)
        cost = ((2.0 * (fold_counts - target) + group_counts[g]) * group_counts[g] / scale).sum(1)
        best = np.flatnonzero(np.isclose(cost, cost.min()))
        folds[g] = best[np.argmin(fold_counts[best, -1])]
        fold_counts[folds[g]] += group_counts[g]
    return folds


def _group_presets(group: np.ndarray, fold: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups,) most common preset fold (>= 0) of each group, or -1 when it has none."""
    preset = np.full(n_groups, -1, dtype=np.int64)
    has = fold >= 0
    if has.any():
        table = np.zeros((n_groups, int(fold.max()) + 1), dtype=np.int64)
        np.add.at(table, (group[has], fold[has]), 1)
        preset = np.where(table.sum(1) > 0, table.argmax(1), -1)
    return preset


def assign_folds(df: pd.DataFrame, n_folds: int, seed: int = 42) -> np.ndarray:
    """Deterministic prompt-grouped, label-stratified K-fold assignment.

    The result depends only on the set of rows (not their order), ``n_folds`` and ``seed``.

    Args:
        df: pair table, n rows; uses ``prompt``, ``label``, ``soft_label`` and ``fold``.
        n_folds: number of folds K >= 2.
        seed: seed of the tie-breaking shuffle.

    Returns:
        (n,) int64 array of folds in [0, K); rows with a preset ``fold`` >= 0 keep it.

    Raises:
        ValueError: if K < 2 or a preset fold is >= K.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    fold = _int_column(df, "fold")
    if (fold >= n_folds).any():
        raise ValueError(f"preset folds must be < n_folds={n_folds}, got max {fold.max()}")
    if len(df) == 0:
        return np.zeros(0, dtype=np.int64)
    _, group = np.unique(prompt_keys(df), return_inverse=True)
    n_groups = int(group.max()) + 1
    _, stratum = np.unique(strata(df), return_inverse=True)
    counts = np.zeros((n_groups, int(stratum.max()) + 1), dtype=np.int64)
    np.add.at(counts, (group, stratum), 1)
    group_fold = _greedy_assign(counts, _group_presets(group, fold, n_groups), n_folds, seed)
    return np.where(fold >= 0, fold, group_fold[group]).astype(np.int64)


def folds_path(df: pd.DataFrame, n_folds: int, seed: int, store_dir: Path) -> Path:
    """Where :func:`folds_for` stores the assignment of this table.

    The file name holds a hash of the sorted ids with each row's prompt, stratum and preset
    fold, plus ``n_folds`` and ``seed``: any change to the data or the settings gives a new file.

    Args:
        df: pair table with unique ids.
        n_folds: number of folds K.
        seed: assignment seed.
        store_dir: directory of the fold files.

    Returns:
        ``store_dir / "folds-k<K>-s<seed>-<hash>.parquet"``.
    """
    digest = hashlib.blake2b(f"{n_folds}|{seed}".encode(), digest_size=16)
    ids = df["id"].astype(str).to_numpy()
    stratum, fold = strata(df), _int_column(df, "fold")
    prompts = df["prompt"].to_numpy(dtype=object)
    for i in np.argsort(ids, kind="stable"):
        turns = [prompts[i]] if isinstance(prompts[i], str) else list(prompts[i])
        digest.update(
            repr((ids[i], [str(t) for t in turns], int(stratum[i]), int(fold[i]))).encode()
        )
    return Path(store_dir) / f"folds-k{n_folds}-s{seed}-{digest.hexdigest()[:20]}.parquet"


def _read_folds(path: Path, ids: pd.Index, n_folds: int) -> np.ndarray:
    """Folds from a stored file, in the order of ``ids``; errors if the ids differ."""
    stored = pd.read_parquet(path, columns=["id", "fold"])
    stored_ids = pd.Index(stored["id"].astype(str))
    if not stored_ids.is_unique or len(stored_ids) != len(ids) or not stored_ids.isin(ids).all():
        missing = int((~ids.isin(stored_ids)).sum())
        extra = int((~stored_ids.isin(ids)).sum())
        expected = f"exactly the table's {len(ids)} ids ({missing} missing, {extra} extra)"
        raise DataError(str(path), None, "id", expected)
    folds = stored.set_index(stored_ids)["fold"].reindex(ids).to_numpy(dtype=np.int64)
    if ((folds < 0) | (folds >= n_folds)).any():
        raise DataError(str(path), None, "fold", f"folds in [0, {n_folds})")
    return folds


def folds_for(df: pd.DataFrame, n_folds: int, seed: int, store_dir: Path) -> np.ndarray:
    """Fold of every row, computed once per data content and stored for every later run.

    Args:
        df: pair table, n rows, unique ids.
        n_folds: number of folds K >= 2.
        seed: assignment seed.
        store_dir: directory for the fold files (created if missing).

    Returns:
        (n,) int64 folds in [0, K), aligned with ``df`` rows.

    Raises:
        ValueError: if ids are not unique.
        DataError: if the stored file does not cover exactly the table's ids.
    """
    ids = pd.Index(df["id"].astype(str))
    if not ids.is_unique:
        raise ValueError(f"folds_for needs unique ids; {int(ids.duplicated().sum())} duplicated")
    path = folds_path(df, n_folds, seed, store_dir)
    if path.exists():
        return _read_folds(path, ids, n_folds)
    folds = assign_folds(df, n_folds, seed)
    write_parquet(path, pd.DataFrame({"id": ids.to_numpy(), "fold": folds}))
    return folds


def read_folded(
    train_files: Sequence[str],
    extra_train_files: Sequence[str] = (),
    synthetic: dict[str, Any] | None = None,
    *,
    n_folds: int,
    seed: int,
    store_dir: Path,
    **read_kw: Any,
) -> tuple[pd.DataFrame, list[tuple[str, ReadReport]]]:
    """A run's training table: the rows of ``train_files`` (else ``make_synthetic(**synthetic)``)
    with their stored folds (:func:`folds_for`), then the rows of ``extra_train_files`` with fold
    -1: they always train and are never validated, and the other rows' folds stay as they were.

    Args:
        train_files, extra_train_files: pair files; ``read_kw`` as in ``read_many``.
        synthetic: :func:`make_synthetic` keywords, used when ``train_files`` is empty.
        n_folds, seed, store_dir: as in :func:`folds_for`.

    Returns:
        The table and ``(role, report)`` per file read, role ``train`` or ``extra_train``.

    Raises:
        ValueError: ``extra_train_files`` without ``train_files``.
    """
    if train_files:
        df, reports = read_many([*train_files, *extra_train_files], **read_kw)
        n_folded = sum(r.rows_kept for r in reports[: len(train_files)])
        roles = ["train"] * len(train_files) + ["extra_train"] * len(extra_train_files)
        reads = list(zip(roles, reports, strict=True))
    else:
        if extra_train_files:
            raise ValueError("data.extra_train_files needs data.train_files to validate on")
        df, reads = make_synthetic(**(synthetic or {})), []
        n_folded = len(df)
    df = df.reset_index(drop=True)
    folds = folds_for(df.iloc[:n_folded], n_folds, seed, store_dir)
    df["fold"] = np.concatenate([folds, np.full(len(df) - n_folded, -1, dtype=np.int64)])
    return df, reads
