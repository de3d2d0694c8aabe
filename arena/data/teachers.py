"""The teacher store: out-of-fold probability files keyed by ``id``.

A teacher is a name, one or more parquet/csv files with columns ``id, prob_model_a, prob_model_b
[, prob_tie]`` (the ``oof.parquet`` of each of its fold runs) and a weight in the distillation loss.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from arena.data.schema import LABEL_NAMES, DataError

PROB_COLUMNS = tuple(f"prob_{name}" for name in LABEL_NAMES)


@dataclass(frozen=True)
class Teacher:
    """One teacher of a distillation run.

    Attributes:
        name: label used in logs and loss parts.
        files: its probability files (typically one ``oof.parquet`` per fold); glob patterns
            are expanded, and a pattern that matches nothing is an error.
        weight: weight of its KL and cosine terms.
    """

    name: str
    files: Sequence[str] = field(default_factory=tuple)
    weight: float = 1.0


def _read_one(path: str, n_classes: int) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise DataError(path, None, None, "teacher probability file does not exist")
    df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    need = ["id", *PROB_COLUMNS[:n_classes]]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(path, None, missing[0], f"columns {need} (found {list(df.columns)})")
    if n_classes == 2 and "prob_tie" in df.columns:
        raise DataError(path, None, "prob_tie", "2-class probabilities, found a tie column")
    df = df[need].copy()
    df["id"] = df["id"].astype(str)
    probs = df[list(need[1:])].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(probs).all(1) | (probs < 0).any(1) | (np.abs(probs.sum(1) - 1) > 1e-3)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(path, row, "prob_*", f"probabilities >= 0 summing to 1, got {probs[row]}")
    return df


def expand(teacher: Teacher) -> list[str]:
    """The teacher's files with glob patterns expanded (sorted)."""
    paths: list[str] = []
    for pattern in teacher.files:
        if glob.has_magic(pattern):
            matched = sorted(glob.glob(pattern))
            if not matched:
                raise DataError(pattern, None, None, f"teacher {teacher.name!r}: no file matches")
            paths += matched
        else:
            paths.append(pattern)
    return paths


def load_teacher(teacher: Teacher, ids: Sequence[str], n_classes: int) -> np.ndarray:
    """Probabilities of one teacher for ``ids``.

    Returns:
        (len(ids), n_classes) float32, rows in the order of ``ids``.

    Raises:
        DataError: an id appears twice across the teacher's files, or ids are missing.
    """
    files = expand(teacher)
    if not files:
        raise DataError(f"teacher {teacher.name!r}", None, None, "at least one probability file")
    frames = [_read_one(f, n_classes).assign(_file=f) for f in files]
    table = pd.concat(frames, ignore_index=True)
    dup = table["id"].duplicated(keep=False)
    if dup.any():
        first = table[dup].iloc[:2]
        raise DataError(
            " and ".join(dict.fromkeys(first["_file"])),
            None,
            "id",
            f"each id once per teacher; {first['id'].iloc[0]!r} appears {int(dup.sum())} times",
        )
    table = table.set_index("id")
    wanted = pd.Index([str(i) for i in ids])
    missing = wanted.difference(table.index)
    if len(missing):
        raise DataError(
            ", ".join(files),
            None,
            "id",
            f"probabilities for every training id: {len(missing)} of {len(wanted)} missing "
            f"for teacher {teacher.name!r} (e.g. {list(missing[:3])})",
        )
    return table.loc[wanted, list(PROB_COLUMNS[:n_classes])].to_numpy(dtype=np.float32)


def load_teachers(teachers: Sequence[Teacher], ids: Sequence[str], n_classes: int) -> np.ndarray:
    """(len(ids), N, n_classes) float32 probabilities of every teacher."""
    return np.stack([load_teacher(t, ids, n_classes) for t in teachers], axis=1)
