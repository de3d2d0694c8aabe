"""Checks and policies behind :mod:`arena.data.readers`: text turns, surrogates, empty
responses and ids (labels and folds: :mod:`arena.data.labels`).

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

import numpy as np
import pandas as pd

from arena.data.schema import TEXT_COLUMNS, DataError, EmptyPolicy

EMPTY_PLACEHOLDER = "(empty response)"
ONE_HOT_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")
PROB_COLUMNS = ("prob_model_a", "prob_model_b", "prob_tie")
ROW_NOTE = " (rows are 0-based data rows, header excluded)"
_SURROGATE = re.compile("[\ud800-\udfff]")
# A high surrogate not followed by a low one, or a low one not preceded by a high one.
_LONE_SURROGATE = re.compile(
    "[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)


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


def id_text(value: object, file: str, row: int) -> str:
    """An id cell as text: a non-empty string or an integer; a whole float (an int column with
    gaps) loses its ``.0``; a boolean (a JSON ``true``) is no id."""
    if isinstance(value, (float, np.floating)) and value.is_integer():
        value = int(value)
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if is_blank(value) or not (isinstance(value, str) or is_int):
        msg = f"expected a non-empty string or integer id, found {describe(value)}"
        raise row_error(file, row, "id", msg)
    return str(value)


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


def short(value: object, limit: int = 80) -> str:
    """``repr`` of a cell, cut to ``limit`` characters (cells may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...'"


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
