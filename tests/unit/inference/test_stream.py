"""Streamed scoring (:mod:`arena.inference.stream`) equals the in-memory ensemble, with every TTA
mode and for 3-class LMSYS files."""

from __future__ import annotations

from pathlib import Path

import pytest

from arena.data.chunks import ReadOptions
from arena.data.readers import read_pairs
from arena.data.synthetic import make_synthetic
from arena.inference import TTA, Ensemble
from arena.inference.stream import predict_file
from tests.helpers import max_diff, write_lmsys_test

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "tta",
    [TTA("none"), TTA("full"), TTA("uncertain", 0.3), TTA("uncertain", time_budget_s=1e6)],
    ids=["none", "full", "uncertain", "budget"],
)
def test_streamed_ensemble_equals_in_memory(predictors, wsdm_file: Path, tta: TTA) -> None:
    ensemble = Ensemble([predictors["fusion2"], predictors["linear2"]], [1, 2], "logit")
    table, report = read_pairs(wsdm_file)
    expected = ensemble.predict(table, tta)
    got = predict_file(ensemble, wsdm_file, tta, chunk_rows=6)  # 5 chunks, the last of 5 rows
    assert max_diff(got.prediction.probs, expected.probs) <= 1e-6
    assert max_diff(got.prediction.plain, expected.plain) <= 1e-6
    assert got.prediction.rescored.tolist() == expected.rescored.tolist()
    n_rescored = {"none": 0, "full": 29, "uncertain": 9}.get(tta.mode, 29)
    if tta.time_budget_s is None:
        assert len(got.prediction.rescored) == n_rescored
    else:  # a budget this large re-scores every row
        assert len(got.prediction.rescored) == 29
    assert got.labels.tolist() == table["label"].tolist() and got.report == report


def test_streamed_three_classes_from_lmsys_csv(predictors, tmp_path: Path) -> None:
    df = make_synthetic(17, seed=22, n_classes=3, n_turns_max=3)
    path = write_lmsys_test(df, tmp_path / "test.csv")
    ensemble = Ensemble([predictors["left3"]])
    tta = TTA("uncertain", 0.5, uncertainty="max_prob")
    table, report = read_pairs(path, empty="placeholder")
    expected = ensemble.predict(table, tta)
    read = ReadOptions.for_file(path, empty="placeholder")
    got = predict_file(ensemble, read, tta, chunk_rows=4)
    assert max_diff(got.prediction.probs, expected.probs) <= 1e-6
    assert got.prediction.rescored.tolist() == expected.rescored.tolist()
    assert got.report == report and report.empty_responses == 1
