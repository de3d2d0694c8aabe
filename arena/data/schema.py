"""The one pair schema every reader produces and every consumer relies on.

A *pair table* is a ``pandas.DataFrame`` with one row per comparison and these columns:

==============  ===============  ====================================================
column          dtype            meaning
==============  ===============  ====================================================
id              str              unique id within the table
prompt          list[str]        user turns (a single-turn pair has one element)
response_a      list[str]        assistant turns of A, aligned with ``prompt``
response_b      list[str]        assistant turns of B, aligned with ``prompt``
label           int              0 = A wins, 1 = B wins, 2 = tie, -1 = unlabeled
soft_label      object           ``None`` or float ndarray of shape (n_classes,)
model_a         str              name of model A ("unknown" when not given)
model_b         str              name of model B
language        str              language tag ("unknown" when not given)
source          str              where the row came from (file stem by default)
fold            int              CV fold, -1 until folds are assigned
==============  ===============  ====================================================

Teacher probabilities join as extra columns ``teacher:<name>`` holding ndarrays of shape
(n_classes,); :data:`TEACHER_PREFIX` names them so that swap can flip every one of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

LABEL_A: Final = 0
LABEL_B: Final = 1
LABEL_TIE: Final = 2
UNLABELED: Final = -1

LABEL_NAMES: Final = ("model_a", "model_b", "tie")
TEACHER_PREFIX: Final = "teacher:"
UNKNOWN: Final = "unknown"

TEXT_COLUMNS: Final = ("prompt", "response_a", "response_b")
COLUMNS: Final = (
    "id",
    "prompt",
    "response_a",
    "response_b",
    "label",
    "soft_label",
    "model_a",
    "model_b",
    "language",
    "source",
    "fold",
)

SurrogatePolicy = Literal["repair", "reject"]
EmptyPolicy = Literal["keep", "placeholder", "drop", "reject"]


class DataError(ValueError):
    """Bad input, always naming the file, the row, the column and what was expected."""

    def __init__(self, file: str, row: int | str | None, column: str | None, expected: str):
        where = f"{file}"
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {expected}")
        self.file, self.row, self.column, self.expected = file, row, column, expected


@dataclass(frozen=True)
class ReadReport:
    """What a reader changed on the way in; ends up in the run summary."""

    file: str
    rows_read: int
    rows_kept: int
    surrogates_repaired: int = 0
    empty_responses: int = 0
    rows_dropped: int = 0
    duplicates_dropped: int = 0


READ_COUNTS: Final = (
    "rows_read",
    "rows_kept",
    "surrogates_repaired",
    "empty_responses",
    "rows_dropped",
    "duplicates_dropped",
)


def report_totals(reports: Sequence[ReadReport | Mapping[str, Any]]) -> dict[str, int]:
    """The counts of several read reports (dataclasses or their ``asdict``) added up."""
    rows = [r if isinstance(r, Mapping) else asdict(r) for r in reports]
    return {k: sum(int(r[k]) for r in rows) for k in READ_COUNTS}


def empty_table() -> pd.DataFrame:
    """A pair table with no rows and every column present."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})


def teacher_columns(df: pd.DataFrame) -> list[str]:
    """Names of the teacher-probability columns of a pair table."""
    return [c for c in df.columns if c.startswith(TEACHER_PREFIX)]


def n_classes_of(df: pd.DataFrame) -> int:
    """3 when the table holds a tie (hard or soft), else 2."""
    if (df["label"] == LABEL_TIE).any():
        return 3
    soft = df["soft_label"].dropna()
    if len(soft) and len(soft.iloc[0]) == 3:
        return 3
    return 2


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) int labels -> (n, n_classes) float32; unlabeled rows become all-zero."""
    out = np.zeros((len(labels), n_classes), dtype=np.float32)
    ok = labels >= 0
    out[np.flatnonzero(ok), labels[ok]] = 1.0
    return out
