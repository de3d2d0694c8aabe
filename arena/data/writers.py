"""Write pair tables back out in the competition layouts that :func:`arena.data.readers.read_pairs`
reads, atomically.

- ``lmsys`` (csv): ``id, model_a, model_b, prompt, response_a, response_b, winner_model_a,
  winner_model_b, winner_tie, language``; text cells are JSON-encoded turn lists, labels one-hot
  (all zero for an unlabeled row).
- ``wsdm`` (parquet): ``id, prompt, response_a, response_b, winner, model_a, model_b, language``;
  turns joined with a blank line, ``winner`` ``model_a``/``model_b``/``tie`` (None unlabeled).

    write_pairs(make_synthetic(1000, n_classes=3), "train.csv", layout="lmsys")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from arena.data.schema import LABEL_NAMES, TEXT_COLUMNS, UNLABELED
from arena.data.validate import ONE_HOT_COLUMNS
from arena.utils.io import atomic_path

Layout = Literal["lmsys", "wsdm"]
TURN_SEPARATOR = "\n\n"


def _lmsys(table: pd.DataFrame) -> pd.DataFrame:
    frame = table[["id", "model_a", "model_b"]].copy()
    for column in TEXT_COLUMNS:
        frame[column] = [json.dumps(list(turns), ensure_ascii=False) for turns in table[column]]
    labels = table["label"].to_numpy()
    for k, column in enumerate(ONE_HOT_COLUMNS):
        frame[column] = (labels == k).astype(np.int64)
    frame["language"] = table["language"]
    return frame


def _wsdm(table: pd.DataFrame) -> pd.DataFrame:
    frame = table[["id"]].copy()
    for column in TEXT_COLUMNS:
        frame[column] = [TURN_SEPARATOR.join(turns) for turns in table[column]]
    frame["winner"] = [None if k == UNLABELED else LABEL_NAMES[k] for k in table["label"]]
    return frame.assign(
        model_a=table["model_a"], model_b=table["model_b"], language=table["language"]
    )


def write_pairs(table: pd.DataFrame, path: str | Path, layout: Layout = "lmsys") -> Path:
    """Write ``table`` (a pair table per :mod:`arena.data.schema`) to ``path``.

    Args:
        table: pair table; soft labels, sources and folds are not written (the layouts have no
            place for them).
        path: target file, ``.csv`` for ``lmsys``, ``.parquet`` for ``wsdm``.
        layout: ``lmsys`` or ``wsdm``.

    Returns:
        ``path``.

    Raises:
        ValueError: unknown layout, or a suffix that does not fit it.
    """
    path = Path(path)
    suffix = {"lmsys": ".csv", "wsdm": ".parquet"}.get(layout)
    if suffix is None or path.suffix != suffix:
        raise ValueError(f"{path}: layout {layout!r} is written as a {suffix or '?'} file")
    frame = _lmsys(table) if layout == "lmsys" else _wsdm(table)
    with atomic_path(path) as tmp:
        if layout == "lmsys":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path
