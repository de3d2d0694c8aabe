"""Label correction (:mod:`arena.data.correction`): the blend by hand, which rows it touches, the
report, missing teacher ids, and the option as config gives it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena.data.correction import LabelCorrection, blend, correct_labels, pin_correction
from arena.data.schema import DataError
from arena.data.synthetic import make_synthetic
from arena.data.teachers import Teacher


def write_oof(ids: list[str], probs: np.ndarray, path: Path) -> Path:
    """A teacher's OOF file: ``id, prob_model_a, prob_model_b``."""
    frame = pd.DataFrame({"id": ids, "prob_model_a": probs[:, 0], "prob_model_b": probs[:, 1]})
    frame.to_parquet(path)
    return path


def test_blend_by_hand() -> None:
    labels = np.array([0, 1, 1])
    teacher = np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])
    out = blend(labels, teacher, 0.25)
    # (1 - w) * onehot + w * teacher with w = 0.25
    expected = np.array([[0.8, 0.2], [0.225, 0.775], [0.125, 0.875]], dtype=np.float32)
    np.testing.assert_allclose(out, expected, atol=1e-7)
    np.testing.assert_allclose(blend(labels, teacher, 1.0), teacher.astype(np.float32))


def official_table() -> pd.DataFrame:
    """6 official rows in folds 0-2, one of them soft-labelled, then 2 extra rows (fold -1)."""
    df = make_synthetic(8, seed=3)
    df["fold"] = [0, 1, 2, 0, 1, 2, -1, -1]
    df["label"] = [0, 1, 0, 1, 0, 1, 0, 1]
    soft = [None] * 8
    soft[2] = np.array([0.3, 0.7], dtype=np.float32)  # a pseudo-labelled row: left as it is
    df["soft_label"] = pd.Series(soft, dtype=object)
    return df


def test_corrects_official_hard_rows_only_and_reports(tmp_path: Path) -> None:
    df = official_table()
    teacher_probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5], [0.1, 0.9], [0.2, 0.8]])
    rows = [0, 1, 3, 4, 5]  # official, hard-labelled
    oof = write_oof(df["id"].iloc[rows].tolist(), teacher_probs, tmp_path / "oof.parquet")
    correction = LabelCorrection(Teacher("t", files=(str(oof),)), weight=0.5)
    out, report = correct_labels(df, correction, n_classes=2)
    assert df["soft_label"].iloc[0] is None  # the input is not modified
    targets = np.stack(out["soft_label"].iloc[rows].to_list())
    expected = blend(df["label"].to_numpy()[rows], teacher_probs, 0.5)
    np.testing.assert_allclose(targets, expected, atol=1e-7)
    np.testing.assert_allclose(out["soft_label"].iloc[2], [0.3, 0.7])  # soft row kept
    assert out["soft_label"].iloc[6:].isna().all()  # extra rows kept
    assert (out["label"] == df["label"]).all()  # the hard label stays the official one
    # labels 0, 1, 1, 0, 1: the teacher gives them 0.6, 0.7, 0.5, 0.1, 0.8;
    # change = w * (1 - that) = 0.5 * mean(0.4, 0.3, 0.5, 0.9, 0.2) = 0.23
    assert report["mean_target_change"] == pytest.approx(0.23)
    assert report["rows_corrected"] == 5 and report["rows_kept"] == 3
    assert report["argmax_changed"] == 0  # at w = 0.5 the label keeps at least 0.5 + 0.5 * p
    flipped = correct_labels(df, LabelCorrection(correction.teacher, 0.9), 2)[1]
    assert flipped["argmax_changed"] == 1  # row 4: 0.1 + 0.9 * 0.1 = 0.19 left on its label


def test_missing_teacher_ids_name_the_file_and_count(tmp_path: Path) -> None:
    df = official_table()
    oof = write_oof(df["id"].iloc[[0, 1]].tolist(), np.full((2, 2), 0.5), tmp_path / "part.parquet")
    correction = LabelCorrection(Teacher("t", files=(str(oof),)), weight=0.5)
    with pytest.raises(DataError, match=r"part.parquet.*3 of 5 missing for teacher 't'"):
        correct_labels(df, correction, n_classes=2)


def test_option_from_config_values(tmp_path: Path) -> None:
    value = {"teacher": {"name": "t", "runs": str(tmp_path)}, "weight": 0.3}
    correction = LabelCorrection.from_value(value)
    assert correction == LabelCorrection(Teacher("t", runs=str(tmp_path)), 0.3)
    assert LabelCorrection.from_value(None) is None
    with pytest.raises(ValueError, match=r"weight=0.0: expected a share of the teacher in \("):
        LabelCorrection.from_value({"teacher": {"name": "t"}, "weight": 0.0})
    with pytest.raises(ValueError, match="expected {teacher:"):
        LabelCorrection.from_value({"weight": 0.5})
    with pytest.raises(ValueError, match=r"unknown keys \['wieght'\]"):
        LabelCorrection.from_value({"teacher": {"name": "t"}, "wieght": 0.5})


def test_pinned_files_survive_a_new_sweep(tmp_path: Path) -> None:
    first = tmp_path / "multirun_1" / "f0"
    first.mkdir(parents=True)
    write_oof(["a"], np.array([[0.5, 0.5]]), first / "oof.parquet")
    correction = LabelCorrection(Teacher("t", runs=str(tmp_path / "multirun_*")), 0.5)
    record = tmp_path / "label_correction.json"
    pinned = pin_correction(correction, record, resume=False)
    assert pinned.teacher.files == (str(first / "oof.parquet"),) and pinned.teacher.runs is None
    newer = tmp_path / "multirun_2" / "f0"
    newer.mkdir(parents=True)
    write_oof(["a"], np.array([[0.5, 0.5]]), newer / "oof.parquet")
    assert pin_correction(correction, record, resume=True) == pinned  # a resume reads the first
    renewed = pin_correction(correction, record, resume=False)  # a new run reads the newest
    assert renewed.teacher.files == (str(newer / "oof.parquet"),)
