"""The teacher store: out-of-fold probability files keyed by ``id``.

A teacher is a name, one or more parquet/csv files with columns ``id, prob_model_a, prob_model_b
[, prob_tie]`` (the ``oof.parquet`` of each of its fold runs) and a weight in the distillation loss.
Its files are listed (``files``) or are those of one sweep of its fold runs (``runs``: a sweep dir,
or a glob of sweep dirs of which the newest is read). A training run pins what it read in its run
dir (:func:`pin_teachers`), so a later sweep of the teacher never changes a run being resumed.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from arena.data.labels import soft_labels
from arena.data.schema import LABEL_NAMES, DataError
from arena.data.validate import id_text, row_error
from arena.utils.io import write_json

PROB_COLUMNS = tuple(f"prob_{name}" for name in LABEL_NAMES)


@dataclass(frozen=True)
class Teacher:
    """One teacher of a distillation run.

    Attributes:
        name: label used in logs and loss parts.
        files: its probability files (typically one ``oof.parquet`` per fold); glob patterns
            are expanded, and a pattern that matches nothing is an error.
        runs: instead of ``files``: a Hydra sweep dir of the teacher's fold runs, whose
            ``*/oof.parquet`` are read; a glob pattern (``.../teacher_x/multirun_*``) reads the
            sweep whose name sorts last, i.e. the latest started (``multirun_<start time>``).
        weight: weight of its KL and cosine terms.
    """

    name: str
    files: Sequence[str] = field(default_factory=tuple)
    runs: str | None = None
    weight: float = 1.0


def _load_frame(path: str) -> pd.DataFrame:
    """A teacher file as object columns (csv cells as text, so ids such as "007" survive)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(path, None, "*", "expected a teacher probability file; it does not exist")
    if p.suffix not in (".parquet", ".csv"):
        raise DataError(path, None, "*", f"expected a .parquet or .csv file, found {p.suffix!r}")
    try:
        if p.suffix == ".parquet":
            return pd.read_parquet(p).astype(object)
        return pd.read_csv(p, dtype=object, keep_default_na=False, encoding_errors="replace")
    except (pa.ArrowException, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as err:
        msg = f"expected a well-formed {p.suffix[1:]} file; the parser says: {err}"
        raise DataError(path, None, "*", msg) from None


def _ids(col: pd.Series, path: str) -> list[str]:
    """The id column as strings; whole floats (an int column with gaps) lose their ``.0``."""
    return [id_text(value, path, row) for row, value in enumerate(col.tolist())]


def _read_one(path: str, n_classes: int) -> pd.DataFrame:
    """``id`` plus ``n_classes`` probability columns of one file, every row checked."""
    df = _load_frame(path)
    need = ["id", *PROB_COLUMNS[:n_classes]]
    missing = [c for c in need if c not in df.columns]
    if missing:
        msg = f"expected columns {need} for {n_classes} classes, found {list(map(str, df.columns))}"
        raise DataError(path, None, ", ".join(missing), msg)
    if n_classes == 2 and "prob_tie" in df.columns:
        msg = "expected 2-class probabilities (data.n_classes=2), found a prob_tie column"
        raise DataError(path, None, "prob_tie", msg)
    probs = soft_labels(df, need[1:], path)  # names the row and column of a bad cell
    out = pd.DataFrame({"id": _ids(df["id"], path)})
    for k, column in enumerate(need[1:]):
        out[column] = probs[:, k]
    return out


def _check_unique(table: pd.DataFrame) -> None:
    """Each id once per teacher: name both places of the first repeat."""
    dup = table["id"].duplicated(keep="first").to_numpy()
    if dup.any():
        second = table.iloc[int(np.flatnonzero(dup)[0])]
        first = table[table["id"] == second["id"]].iloc[0]
        msg = (
            f"expected each id once per teacher; id {second['id']!r} appears again, first in "
            f"{first['_file']}, row {first['_row']} (two runs of one fold, e.g. a sweep over "
            "other settings too: list the runs to read in the teacher's files)"
        )
        raise row_error(second["_file"], int(second["_row"]), "id", msg)


def newest_sweep(teacher: Teacher) -> Path:
    """The sweep dir ``teacher.runs`` names; of several a glob matches, the one whose name sorts
    last (Hydra names sweeps ``multirun_<start time>``: the latest started).

    Raises:
        DataError: nothing matches.
    """
    assert teacher.runs is not None
    if not glob.has_magic(teacher.runs):
        sweeps = [Path(teacher.runs)] if Path(teacher.runs).is_dir() else []
    else:
        sweeps = sorted((Path(p) for p in glob.glob(teacher.runs) if Path(p).is_dir()),
                        key=lambda p: p.name)  # fmt: skip
    if not sweeps:
        msg = f"expected a sweep dir of teacher {teacher.name!r}'s fold runs; none found"
        raise DataError(teacher.runs, None, "*", msg)
    return sweeps[-1]


def expand(teacher: Teacher) -> list[str]:
    """The teacher's files: ``files`` with glob patterns expanded (sorted), or the
    ``oof.parquet`` of every run of its newest sweep (:func:`newest_sweep`)."""
    if teacher.runs is not None:
        if teacher.files:
            msg = f"teacher {teacher.name!r}: give its files or its runs, not both"
            raise DataError(teacher.runs, None, "files", msg)
        sweep = newest_sweep(teacher)
        found = sorted(str(p) for p in sweep.glob("*/oof.parquet"))
        if not found:
            msg = f"expected */oof.parquet of teacher {teacher.name!r}'s finished fold runs"
            raise DataError(str(sweep), None, "*", msg)
        return found
    paths: list[str] = []
    for pattern in teacher.files:
        if glob.has_magic(pattern):
            matched = sorted(glob.glob(pattern))
            if not matched:
                msg = f"expected a file for teacher {teacher.name!r}; no file matches"
                raise DataError(pattern, None, "*", msg)
            paths += matched
        else:
            paths.append(pattern)
    return paths


def pin_teachers(teachers: Sequence[Teacher], record: Path, resume: bool) -> list[Teacher]:
    """The teachers with their files resolved, as ``record`` (a run dir's ``teachers.json``) keeps
    them: a run resumed (``resume``) reads the files its start read, whatever sweeps appeared
    since; a new run resolves them anew and writes ``record``.

    Raises:
        ValueError: a resumed run names other teachers than its start did.
    """
    if resume and record.is_file():
        saved = json.loads(record.read_text())["teachers"]
        if [t.name for t in teachers] != [s["name"] for s in saved]:
            raise ValueError(
                f"{record} pins teachers {[s['name'] for s in saved]}, the config names "
                f"{[t.name for t in teachers]}: resume with the teachers the run started with"
            )
        pairs = zip(teachers, saved, strict=True)
        return [replace(t, files=tuple(s["files"]), runs=None) for t, s in pairs]
    pinned = [replace(t, files=tuple(expand(t)), runs=None) for t in teachers]
    write_json(record, {"teachers": [{"name": t.name, "files": list(t.files)} for t in pinned]})
    return pinned


def load_teacher(teacher: Teacher, ids: Sequence[str], n_classes: int) -> np.ndarray:
    """Probabilities of one teacher for ``ids``.

    Returns:
        (len(ids), n_classes) float32, rows in the order of ``ids``.

    Raises:
        DataError: an id appears twice across the teacher's files, or ids are missing.
    """
    files = expand(teacher)
    if not files:
        msg = "expected at least one probability file"
        raise DataError(f"teacher {teacher.name!r}", None, "files", msg)
    frames = [
        _read_one(f, n_classes).assign(_file=f, _row=lambda t: np.arange(len(t))) for f in files
    ]
    table = pd.concat(frames, ignore_index=True)
    _check_unique(table)
    table = table.set_index("id")
    wanted = pd.Index([str(i) for i in ids])
    missing = wanted.difference(table.index)
    if len(missing):
        raise DataError(
            ", ".join(files),
            None,
            "id",
            f"expected probabilities for every training id: {len(missing)} of {len(wanted)} "
            f"missing for teacher {teacher.name!r} (e.g. {list(missing[:3])}); were its folds "
            "made from the same files and data.n_folds, and did every fold run finish?",
        )
    return table.loc[wanted, list(PROB_COLUMNS[:n_classes])].to_numpy(dtype=np.float32)


def load_teachers(teachers: Sequence[Teacher], ids: Sequence[str], n_classes: int) -> np.ndarray:
    """(len(ids), N, n_classes) float32 probabilities of every teacher (N may be 0)."""
    if not teachers:
        return np.zeros((len(ids), 0, n_classes), dtype=np.float32)
    return np.stack([load_teacher(t, ids, n_classes) for t in teachers], axis=1)
