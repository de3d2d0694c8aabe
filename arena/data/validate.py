"""Checks and policies behind :mod:`arena.data.readers`: text turns, surrogates, empty
responses, labels, ids and folds.

Every failure is a :class:`~arena.data.schema.DataError` naming the file, the 0-based data row
(header excluded), the column and what was expected. Numeric checks run over whole columns in
numpy; text needs one Python pass per cell (about a second for 50k rows of JSON turn lists).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from arena.data.schema import LABEL_NAMES, TEXT_COLUMNS, UNLABELED, DataError, EmptyPolicy

EMPTY_PLACEHOLDER = "(empty response)"
ONE_HOT_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")
PROB_COLUMNS = ("prob_model_a", "prob_model_b", "prob_tie")
ROW_NOTE = " (rows are 0-based data rows, header excluded)"
PROB_TOLERANCE = 1e-3
MAX_FOLD = 2**31 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
# A high surrogate not followed by a low one, or a low one not preceded by a high one.
_LONE_SURROGATE = re.compile(
    "[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)
_NAME_TO_LABEL: dict[Any, int] = {name: i for i, name in enumerate(LABEL_NAMES)}
_INT_TO_LABEL: dict[Any, int] = {0: 0, 1: 1, 2: 2, -1: UNLABELED, "0": 0, "1": 1, "2": 2, "-1": -1}


def row_error(file: str, row: int, column: str, expected: str) -> DataError:
    """A :class:`DataError` for one cell, saying that rows are counted from 0."""
    return DataError(file, row, column, expected + ROW_NOTE)


def require_columns(frame: pd.DataFrame, names: Iterable[str], file: str, why: str = "") -> None:
    """Raise unless every column in ``names`` is present, listing the columns found."""
    missing = [n for n in names if n not in frame.columns]
    if missing:
        msg = f"missing required column(s) {missing}{why}; found columns {list(map(str, frame))}"
        raise DataError(file, None, ", ".join(missing), msg)


def describe(value: object) -> str:
    """Short human description of a value of the wrong type, e.g. ``float (NaN)``."""
    if value is None:
        return "None (missing value)"
    if isinstance(value, float) and math.isnan(value):
        return "NaN (float, missing value)"
    return f"{type(value).__name__} ({str(value)[:40]!r})"


def decode_bytes(raw: bytes) -> str:
    """UTF-8 bytes -> str; encoded surrogates survive, other bad bytes become lone surrogates.

    Either way the surrogate policy then repairs or rejects them, with file, row and column.
    """
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape")


def is_blank(value: object) -> bool:
    """True for None, NaN and strings with nothing but whitespace."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and not value.strip()


def _turns(items: Sequence[object], file: str, row: int, column: str) -> list[str]:
    out: list[str] = []
    for k, item in enumerate(items):
        if isinstance(item, bytes):
            item = decode_bytes(item)
        if item is None:
            out.append("")  # JSON null turn: the model said nothing
        elif isinstance(item, str):
            out.append(item)
        else:
            raise row_error(file, row, column, f"turn {k} is {describe(item)}; expected a string")
    return out


def _json_turns(text: str, file: str, row: int, column: str) -> list[str]:
    stripped = text.strip()
    if not stripped:
        return [""]
    expected = 'expected a JSON-encoded list of turns like ["Hi"]'
    if not stripped.startswith("["):
        raise row_error(file, row, column, f"{expected}, found text that is not one: {text[:40]!r}")
    try:
        parsed = json.loads(stripped)
    except json.JSONDecodeError as err:
        msg = f"broken JSON ({err.msg} at char {err.pos}); {expected}"
        raise row_error(file, row, column, msg) from None
    except RecursionError:
        raise row_error(file, row, column, f"JSON nested too deeply; {expected}") from None
    if not isinstance(parsed, list):
        raise row_error(file, row, column, f"{expected}, found JSON {describe(parsed)}")
    return _turns(parsed, file, row, column)


def text_cell(value: object, file: str, row: int, column: str, json_list: bool) -> list[str]:
    """One text cell -> list of turns.

    Accepts a string (one turn, or a JSON-encoded list when ``json_list``), a list/array of
    strings (``None`` turns become ""), or bytes (decoded as UTF-8). Anything else is an error.
    """
    if isinstance(value, bytes):
        value = decode_bytes(value)
    if isinstance(value, str):
        return _json_turns(value, file, row, column) if json_list else [value]
    if isinstance(value, (list, tuple, np.ndarray)):
        return _turns(list(value), file, row, column)
    msg = f"expected text (a string or a list of strings), found {describe(value)}"
    raise row_error(file, row, column, msg)


def text_column(col: pd.Series, file: str, json_list: bool) -> list[list[str]]:
    """A whole text column -> one list of turns per row (see :func:`text_cell`)."""
    name = str(col.name)
    return [text_cell(v, file, i, name, json_list) for i, v in enumerate(col.tolist())]


def has_surrogates(text: str) -> bool:
    """True when ``text`` holds surrogate code points (it then cannot be encoded as UTF-8)."""
    if text.isascii():  # O(1) in CPython
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _repair(text: str) -> tuple[str, int]:
    """Replace lone surrogates with U+FFFD and join valid pairs; return (text, n_lone)."""
    fixed, n_lone = _LONE_SURROGATE.subn("\ufffd", text)
    if _SURROGATE.search(fixed):  # only valid pairs are left: join them into one code point
        fixed = fixed.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    return fixed, n_lone


def fix_surrogates(
    cells: list[list[str]], policy: str, file: str, column: str
) -> tuple[list[list[str]], int]:
    """Apply the surrogate policy to a text column in place; return (cells, lone surrogates).

    Raises:
        DataError: with ``policy="reject"`` at the first lone surrogate.
    """
    repaired = 0
    if not has_surrogates("".join(chain.from_iterable(cells))):
        return cells, 0  # the common case: one pass in C over the whole column
    for i, turns in enumerate(cells):
        if not any(has_surrogates(t) for t in turns):
            continue
        for k, turn in enumerate(turns):
            lone = _LONE_SURROGATE.search(turn)
            if lone and policy == "reject":
                msg = (
                    f"lone surrogate U+{ord(lone.group()):04X} at char {lone.start()} of turn {k}; "
                    "expected valid Unicode (surrogates='repair' replaces it with U+FFFD)"
                )
                raise row_error(file, i, column, msg)
        fixed = [_repair(t) for t in turns]
        cells[i] = [t for t, _ in fixed]
        repaired += sum(n for _, n in fixed)
    return cells, repaired


def fix_strings(values: list[str], policy: str, file: str, column: str) -> tuple[list[str], int]:
    """:func:`fix_surrogates` for a column of plain strings (ids, model names)."""
    if not has_surrogates("".join(values)):
        return values, 0
    cells, repaired = fix_surrogates([[x] for x in values], policy, file, column)
    return [turns[0] for turns in cells], repaired


def check_unique_ids(ids: pd.Series, file: str) -> None:
    """Raise on the first id that repeats, naming both rows."""
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        msg = (
            f"duplicate id {ids.iloc[row]!r}: rows {first} and {row} share it; expected unique ids"
        )
        raise row_error(file, row, "id", msg)


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


def short(value: object, limit: int = 80) -> str:
    """``repr`` of a cell, cut to ``limit`` characters (cells may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...'"


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


def align_turns(text: dict[str, list[list[str]]]) -> None:
    """Pad the shorter turn lists of each row with "" (in place) so prompt, A and B line up."""
    for p, a, b in zip(*(text[c] for c in TEXT_COLUMNS), strict=True):
        if len(p) == len(a) == len(b) > 0:
            continue
        n = max(len(p), len(a), len(b), 1)
        for turns in (p, a, b):
            turns.extend([""] * (n - len(turns)))


def apply_empty_policy(
    table: pd.DataFrame, policy: EmptyPolicy, file: str
) -> tuple[pd.DataFrame, int, int]:
    """Handle responses whose turns are all blank; return (table, empty responses, rows dropped).

    ``keep`` leaves them, ``placeholder`` writes :data:`EMPTY_PLACEHOLDER` into each of their
    turns, ``drop`` removes their rows and ``reject`` raises at the first one.
    """
    masks = {
        c: np.array([not any(t.strip() for t in turns) for turns in table[c]], dtype=bool)
        for c in TEXT_COLUMNS[1:]
    }
    either = masks["response_a"] | masks["response_b"]
    if policy == "reject" and either.any():
        row = int(np.flatnonzero(either)[0])
        column = "response_a" if masks["response_a"][row] else "response_b"
        msg = f"empty response {table[column].iloc[row]!r}; expected text (or empty='keep')"
        raise row_error(file, row, column, msg)
    if policy == "placeholder":
        for column, mask in masks.items():
            cells = [
                [EMPTY_PLACEHOLDER] * len(turns) if empty else turns
                for turns, empty in zip(table[column], mask, strict=True)
            ]
            table[column] = pd.Series(cells, index=table.index, dtype=object)
    dropped = int(either.sum()) if policy == "drop" else 0
    if dropped:
        table = table.loc[~either].reset_index(drop=True)
    return table, int(sum(m.sum() for m in masks.values())), dropped
