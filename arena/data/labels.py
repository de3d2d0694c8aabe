"""Labels, soft labels and folds of a pair file: label names or ints, one-hot ``winner_*``
columns, ``prob_*`` columns and the ``fold`` column, checked over whole columns in numpy.

Every failure is a :class:`~arena.data.schema.DataError` naming the file, the 0-based data row,
the column and what was expected (see :mod:`arena.data.validate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from arena.data.schema import LABEL_NAMES, UNLABELED, DataError
from arena.data.validate import (
    ONE_HOT_COLUMNS,
    PROB_COLUMNS,
    describe,
    is_blank,
    require_columns,
    row_error,
    short,
)

PROB_TOLERANCE = 1e-3
MAX_FOLD = 2**31 - 1
_NAME_TO_LABEL: dict[Any, int] = {name: i for i, name in enumerate(LABEL_NAMES)}
_INT_TO_LABEL: dict[Any, int] = {0: 0, 1: 1, 2: 2, -1: UNLABELED, "0": 0, "1": 1, "2": 2, "-1": -1}


def names_to_labels(col: pd.Series, file: str, allow_ints: bool) -> np.ndarray:
    """Label names (model_a/model_b/tie), and with ``allow_ints`` 0/1/2/-1 -> int64 labels."""
    mapping = {**_NAME_TO_LABEL, **(_INT_TO_LABEL if allow_ints else {})}
    values = col.tolist()
    codes, uniques = _factorize(values)
    mapped = np.array([_label_of(x, mapping) for x in uniques] + [-9], dtype=np.int64)[codes]
    bad = mapped == -9
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        allowed = "'model_a', 'model_b', 'tie'" + (" or 0, 1, 2, -1" if allow_ints else "")
        value = values[row]
        missing = is_blank(value) and not isinstance(value, str)
        found = "a missing value" if missing else short(value)
        msg = f"expected a label, found unknown label {found}; allowed: {allowed}"
        raise row_error(file, row, str(col.name), msg)
    return mapped


def _factorize(values: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """(codes, uniques) of a column; unhashable cells (lists, arrays) get code -1."""
    index: dict[tuple[type, Any], int] = {}
    codes = np.empty(len(values), dtype=np.int64)
    for i, x in enumerate(values):
        try:
            codes[i] = index.setdefault((type(x), x), len(index))
        except TypeError:
            codes[i] = -1
    return codes, [x for _, x in index]


def _label_of(value: object, mapping: dict[Any, int]) -> int:
    """The label a cell names, or -9. Whole floats count as ints (an int column with gaps);
    bools, NaN and other floats name no label."""
    if isinstance(value, (bool, np.bool_)):
        return -9
    if isinstance(value, (float, np.floating)):
        if not value.is_integer():
            return -9
        value = int(value)
    return mapping.get(value, -9)


def to_float(col: pd.Series) -> np.ndarray:
    """(n,) float64 of a column; anything that is not a number (or a numeric string) is NaN."""
    cells = [
        x if isinstance(x, (str, int, float, np.number)) and not isinstance(x, bool) else np.nan
        for x in col.tolist()
    ]
    numbers = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce")
    return np.asarray(numbers, dtype=np.float64)


def _numeric(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """(n, len(columns)) float64; anything that is not a number becomes NaN."""
    return np.column_stack([to_float(frame[c]) for c in columns]).reshape(len(frame), len(columns))


def one_hot_labels(frame: pd.DataFrame, columns: Sequence[str], file: str) -> np.ndarray:
    """One-hot winner columns (``winner_model_a``, ...) -> int64 labels (n,)."""
    mat = _numeric(frame, columns)
    ok = np.isin(mat, (0.0, 1.0)).all(axis=1) & (mat.sum(axis=1) == 1.0)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        found = ", ".join(short(frame[c].iloc[row], 40) for c in columns)
        msg = f"expected exactly one of {list(columns)} to be 1 and the others 0, found ({found})"
        raise row_error(file, row, "/".join(columns), msg)
    return mat.argmax(axis=1).astype(np.int64)


def soft_labels(frame: pd.DataFrame, columns: Sequence[str], file: str) -> np.ndarray:
    """Probability columns -> (n, len(columns)) float32 rows summing to 1."""
    mat = _numeric(frame, columns)
    bad_cell = np.isnan(mat) | (mat < 0)
    sums = np.nansum(mat, axis=1)
    bad = bad_cell.any(axis=1) | (np.abs(sums - 1.0) > PROB_TOLERANCE)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        col = int(np.argmax(bad_cell[row])) if bad_cell[row].any() else None
        column = columns[col] if col is not None else "/".join(columns)
        found = ", ".join(short(frame[c].iloc[row], 40) for c in columns)
        expected = f"expected non-negative probabilities summing to 1 (±{PROB_TOLERANCE})"
        msg = f"{expected}, found ({found})"
        raise row_error(file, row, column, msg)
    return (mat / sums[:, None]).astype(np.float32)


def fold_column(col: pd.Series, file: str) -> np.ndarray:
    """A ``fold`` column -> int64 folds; blank cells mean -1 (not assigned)."""
    values = to_float(col)
    blank = np.array([is_blank(v) for v in col.tolist()], dtype=bool)
    with np.errstate(invalid="ignore"):
        bad = (np.isnan(values) & ~blank) | (
            ~np.isnan(values) & ((values % 1 != 0) | (values < -1) | (values > MAX_FOLD))
        )
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        msg = f"expected an integer fold from -1 to {MAX_FOLD}, found {describe(col.iloc[row])}"
        raise row_error(file, row, "fold", msg)
    return np.where(np.isnan(values), -1, values).astype(np.int64)


def labels_of(
    frame: pd.DataFrame, file: str, labeled: bool | None
) -> tuple[np.ndarray | None, list[np.ndarray | None]]:
    """Hard labels (None when the file has no label columns) and soft labels, one per row.

    Hard labels come from the first of: one-hot ``winner_*`` columns, ``winner``, ``label``,
    else the argmax of the ``prob_*`` columns, which also give the soft labels.
    """
    cols = frame.columns
    soft: list[np.ndarray | None] = [None] * len(frame)
    hard = None
    if cols.intersection(PROB_COLUMNS[:2]).size:
        require_columns(frame, PROB_COLUMNS[:2], file)
        probs = soft_labels(frame, [c for c in PROB_COLUMNS if c in cols], file)
        soft, hard = list(probs), probs.argmax(axis=1).astype(np.int64)
    if cols.intersection(ONE_HOT_COLUMNS[:2]).size:
        require_columns(frame, ONE_HOT_COLUMNS[:2], file)
        hard = one_hot_labels(frame, [c for c in ONE_HOT_COLUMNS if c in cols], file)
    elif "winner" in cols:
        hard = names_to_labels(frame["winner"], file, allow_ints=False)
    elif "label" in cols:
        hard = names_to_labels(frame["label"], file, allow_ints=True)
    if labeled and hard is None:
        msg = (
            f"labels required (labeled=True): expected 'winner', 'label', {list(ONE_HOT_COLUMNS)}"
            f" or {list(PROB_COLUMNS)}; found columns {list(map(str, cols))}"
        )
        raise DataError(file, None, "winner", msg)
    if labeled and hard is not None and (hard == UNLABELED).any():
        row = int(np.flatnonzero(hard == UNLABELED)[0])
        raise row_error(file, row, "label", "labels required (labeled=True), found -1")
    return hard, soft


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log probability of the true class of (n, C) ``probs`` for (n,) ``labels``,
    each clipped to [1e-15, 1] as Kaggle scores it."""
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-15, 1.0)
    return float(-np.log(picked).mean())
