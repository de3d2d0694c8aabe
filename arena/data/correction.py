"""Label correction: official labels blended with a teacher's out-of-fold probabilities.

Every official training row (a row of ``data.train_files``, or synthetic, with a hard label and no
soft label) gets the soft target

    target = (1 - weight) * onehot(label) + weight * teacher_probs

where ``teacher_probs`` is the teacher's OOF prediction for that row's ``id`` (the teacher store
of :mod:`arena.data.teachers`). Rows that already carry a soft label (``prob_*`` columns, e.g.
pseudo-labelled files) and rows of ``extra_train_files`` keep their targets; the hard ``label``
stays the official one, so metrics against it are unchanged. Validation rows are never passed
here. A swapped row's target is the swap of the blend (:func:`arena.data.swap.swap_probs` on the
target), so augmentation needs nothing more.

Usage::

    correction = LabelCorrection(Teacher("deberta", runs="logs/train/deberta/multirun_*"), 0.5)
    train_df, report = correct_labels(train_df, correction, n_classes=2)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arena.data.schema import one_hot
from arena.data.teachers import Teacher, expand, load_teacher, pin_teachers


@dataclass(frozen=True)
class LabelCorrection:
    """What corrects the official labels, and by how much.

    Attributes:
        teacher: the teacher store whose OOF probabilities are blended in (its ``weight`` is
            unused here).
        weight: share of the teacher in the target, in (0, 1]: 0 would be the official label,
            1 replaces it by the teacher's probabilities.
    """

    teacher: Teacher
    weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.weight <= 1.0:
            raise ValueError(
                f"data.label_correction.weight={self.weight}: expected a share of the teacher "
                "in (0, 1] (null data.label_correction turns correction off)"
            )

    @classmethod
    def from_value(
        cls, value: LabelCorrection | Mapping[str, Any] | None
    ) -> LabelCorrection | None:
        """The option as the config gives it: None, this class, or ``{teacher: {name, runs |
        files}, weight}`` (a plain mapping, as a command-line override writes it).

        Raises:
            ValueError: a mapping without a ``teacher`` mapping, or with unknown keys.
        """
        if value is None or isinstance(value, LabelCorrection):
            return value
        fields = {k: v for k, v in value.items() if k != "_target_"}
        teacher = fields.pop("teacher", None)
        if not isinstance(teacher, Mapping | Teacher):
            raise ValueError(
                "data.label_correction: expected {teacher: {name: ..., runs: <sweep dir>}, "
                f"weight: 0.5}}, found {dict(value)}"
            )
        if isinstance(teacher, Mapping):
            teacher = Teacher(**{k: v for k, v in teacher.items() if k != "_target_"})
        unknown = set(fields) - {"weight"}
        if unknown:
            raise ValueError(f"data.label_correction: unknown keys {sorted(unknown)}")
        return cls(teacher=teacher, **fields)


def blend(labels: np.ndarray, teacher_probs: np.ndarray, weight: float) -> np.ndarray:
    """Soft targets from hard labels and a teacher.

    Args:
        labels: (n,) int labels in [0, C).
        teacher_probs: (n, C) probabilities, rows summing to 1.
        weight: share of the teacher in (0, 1].

    Returns:
        (n, C) float32 ``(1 - weight) * onehot(labels) + weight * teacher_probs``; rows sum to 1.
    """
    hard = one_hot(labels, teacher_probs.shape[1])
    return ((1.0 - weight) * hard + weight * teacher_probs).astype(np.float32)


def correctable(df: pd.DataFrame) -> np.ndarray:
    """(n,) bool: official rows (fold >= 0: not an extra file) with a hard label and no soft one."""
    fold = pd.to_numeric(df["fold"]).fillna(-1).to_numpy()
    has_soft = df["soft_label"].notna().to_numpy()
    return (fold >= 0) & (df["label"].to_numpy() >= 0) & ~has_soft


def correct_labels(
    df: pd.DataFrame, correction: LabelCorrection, n_classes: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The training table with the soft labels of its correctable rows set to the blend.

    Args:
        df: training pair table (n rows, folds assigned); not modified.
        correction: teacher and weight.
        n_classes: C, the number of probability columns the teacher must have.

    Returns:
        A copy of ``df`` and the report for ``summary.json``: ``teacher``, ``files``, ``weight``,
        ``rows_corrected``, ``rows_kept`` (already soft-labelled or extra rows, left as they
        were), ``mean_target_change`` (mean total-variation distance between the one-hot and
        the blended target over the corrected rows, = weight * (1 - teacher's probability of
        the official label)) and ``argmax_changed`` (rows whose blended target favours another
        class than the official label).

    Raises:
        DataError: the teacher's files are unreadable, or miss ids of rows to correct (naming
            the files and how many are missing).
    """
    rows = np.flatnonzero(correctable(df))
    files = expand(correction.teacher)
    out = df.copy()
    report: dict[str, Any] = {
        "teacher": correction.teacher.name,
        "files": files,
        "weight": correction.weight,
        "rows_corrected": len(rows),
        "rows_kept": len(df) - len(rows),
        "mean_target_change": 0.0,
        "argmax_changed": 0,
    }
    if not len(rows):
        return out, report
    labels = df["label"].to_numpy()[rows].astype(np.int64)
    probs = load_teacher(correction.teacher, df["id"].iloc[rows].astype(str).tolist(), n_classes)
    targets = blend(labels, probs, correction.weight)  # (n_rows, C)
    soft = out["soft_label"].to_numpy(dtype=object, copy=True)
    for k, row in enumerate(rows):
        soft[row] = targets[k]
    out["soft_label"] = pd.Series(soft, index=out.index, dtype=object)
    kept = targets[np.arange(len(rows)), labels]  # probability left on the official label
    report["mean_target_change"] = float((1.0 - kept).mean())
    report["argmax_changed"] = int((targets.argmax(axis=1) != labels).sum())
    return out, report


def pin_correction(correction: LabelCorrection, record: Path, resume: bool) -> LabelCorrection:
    """``correction`` with its teacher's files resolved and recorded in ``record`` (a run dir's
    ``label_correction.json``), as :func:`arena.data.teachers.pin_teachers` does for
    distillation: a resumed run blends the files its start read."""
    (teacher,) = pin_teachers([correction.teacher], record, resume)
    return replace(correction, teacher=teacher)
