"""``arena.predict`` streaming a file chunk by chunk writes what the in-memory path writes, and a
bad row in a later chunk leaves no output."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from arena.data.schema import DataError
from arena.data.synthetic import make_synthetic
from arena.inference import Ensemble
from arena.inference.stream import predict_to_files
from arena.predict import predict_run
from tests.conftest import CONF, ROOT
from tests.helpers import max_diff, write_wsdm

pytestmark = pytest.mark.usefixtures("one_thread")


def predict_cfg(
    ckpt: Path, test: Path, out: Path, cache: Path, chunk_rows: int | None
) -> DictConfig:
    overrides = [f"ckpt={ckpt}", f"data.test_file={test}", f"output_dir={out}"]
    overrides += ["tta=uncertain", "uncertain_fraction=0.4", f"chunk_rows={chunk_rows or 'null'}"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("predict", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir, cfg.paths.cache_dir, cfg.paths.output_dir = (
            str(ROOT),
            str(cache),
            str(out),
        )
    return cfg


def test_predict_run_streamed_writes_what_in_memory_writes(ckpts, wsdm_file, tmp_path) -> None:
    outs = {k: tmp_path / f"out_{k}" for k in ("memory", "streamed")}
    for key, chunk_rows in (("memory", None), ("streamed", 4)):
        predict_run(predict_cfg(ckpts["fusion2"], wsdm_file, outs[key], tmp_path, chunk_rows))
        assert not [p for p in outs[key].iterdir() if p.name.endswith(".tmp")]
    probs = {k: pd.read_parquet(out / "probs.parquet") for k, out in outs.items()}
    subs = {k: pd.read_csv(out / "submission.csv", dtype={"id": str}) for k, out in outs.items()}
    summary = {k: json.loads((out / "summary.json").read_text()) for k, out in outs.items()}
    assert probs["memory"]["id"].tolist() == probs["streamed"]["id"].tolist()
    assert list(probs["memory"].columns) == list(probs["streamed"].columns)
    values = {k: p.iloc[:, 1:].to_numpy() for k, p in probs.items()}
    assert max_diff(values["memory"], values["streamed"]) <= 1e-6
    pd.testing.assert_frame_equal(subs["memory"], subs["streamed"])
    for key in ("n_rows", "tta_rescored", "acc", "log_loss", "read"):
        assert summary["memory"][key] == pytest.approx(summary["streamed"][key]), key
    assert summary["streamed"]["tta_rescored"] == 12


def test_a_bad_row_in_a_later_chunk_leaves_no_output(predictors, tmp_path: Path) -> None:
    df = make_synthetic(12, seed=23, n_turns_max=1)
    frame = pd.read_parquet(write_wsdm(df, tmp_path / "good.parquet"))
    frame.loc[9, "winner"] = "nobody"
    frame.to_parquet(tmp_path / "bad.parquet")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"row 9, column 'winner'"):
        predict_to_files(
            Ensemble([predictors["linear2"]]), tmp_path / "bad.parquet", None, out,
            layout="wsdm", chunk_rows=4,
        )  # fmt: skip
    assert not out.exists() or not list(out.iterdir())
