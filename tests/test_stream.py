"""Streamed inference (:mod:`arena.inference.stream`) against the in-memory path, and the chunked
reader (:mod:`arena.data.chunks`) against ``read_pairs``: same tables, same errors with file rows.
Peak memory is a benchmark number (``python -m arena.bench only=scaling``), not tested here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from arena.data.chunks import iter_pairs, merge_reports
from arena.data.readers import read_pairs
from arena.data.schema import DataError
from arena.data.synthetic import make_synthetic
from arena.data.tokenize import TokenizedPairs, tokenize_chunks, tokenize_pairs
from arena.inference import TTA, Ensemble
from arena.inference.run import predict_run
from arena.inference.stream import predict_file, predict_to_files
from tests.conftest import CONF, ROOT
from tests.predict_helpers import write_lmsys_test, write_wsdm

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def wsdm_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    df = make_synthetic(29, seed=21, n_turns_max=2)
    return write_wsdm(df, tmp_path_factory.mktemp("stream") / "test.parquet", join_turns=False)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max(initial=0.0))


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
    got = predict_file(ensemble, path, tta, chunk_rows=4, read={"empty": "placeholder"})
    assert max_diff(got.prediction.probs, expected.probs) <= 1e-6
    assert got.prediction.rescored.tolist() == expected.rescored.tolist()
    assert got.report == report and report.empty_responses == 1


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


# -- the chunked reader ------------------------------------------------------------------------


def hh_lines(n: int) -> list[dict[str, str]]:
    convo = "\n\nHuman: question {i}?\n\nAssistant: sure.\n\nHuman: and then?\n\nAssistant:"
    return [
        {"chosen": convo.format(i=i) + f" good {i}", "rejected": convo.format(i=i) + f" bad {i}"}
        for i in range(n)
    ]


def write_file(kind: str, folder: Path, rows: int = 11) -> Path:
    """A file of ``rows`` rows in the layout ``kind``: wsdm parquet, lmsys csv or hh jsonl."""
    if kind == "parquet":
        return write_wsdm(make_synthetic(rows, seed=24, n_turns_max=2), folder / "t.parquet")
    if kind == "csv":
        return write_lmsys_test(make_synthetic(rows, seed=25, n_turns_max=3), folder / "t.csv")
    path = folder / "t.jsonl"
    lines = [json.dumps(r) for r in hh_lines(rows)]
    lines.insert(3, "   ")  # blank lines are skipped and not counted as rows
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("kind", ["parquet", "csv", "jsonl"])
def test_chunks_concatenate_to_read_pairs(kind: str, tmp_path: Path) -> None:
    path = write_file(kind, tmp_path)
    table, report = read_pairs(path, empty="placeholder")
    chunks = list(iter_pairs(path, chunk_rows=4, empty="placeholder"))
    assert [c.start for c in chunks] == [0, 4, 8] and [c.rows for c in chunks] == [4, 4, 3]
    joined = pd.concat([c.table for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, table)
    assert merge_reports(str(path), [c.report for c in chunks]) == report


def break_row(kind: str, path: Path, row: int) -> None:
    """Make file row ``row`` invalid in a way each layout can express."""
    if kind == "parquet":
        frame = pd.read_parquet(path)
        frame.loc[row, "winner"] = "nobody"
        frame.to_parquet(path)
    elif kind == "csv":
        frame = pd.read_csv(path, dtype=object, keep_default_na=False)
        frame.loc[row, "response_a"] = '["unclosed'
        frame.to_csv(path, index=False)
    else:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        lines[row] = '{"chosen": "no marker", "rejected": "at all"}'
        path.write_text("\n".join(lines) + "\n")


def duplicate_id(path: Path, src: int, dst: int) -> None:
    frame = pd.read_parquet(path)
    frame.loc[dst, "id"] = frame.loc[src, "id"]
    frame.to_parquet(path)


def error_of(read) -> str:
    with pytest.raises(DataError) as info:
        read()
    return str(info.value)


@pytest.mark.parametrize("kind", ["parquet", "csv", "jsonl"])
def test_a_bad_row_raises_what_read_pairs_raises(kind: str, tmp_path: Path) -> None:
    path = write_file(kind, tmp_path)
    break_row(kind, path, 9)
    expected = error_of(lambda: read_pairs(path))
    assert ", row 9, " in expected
    assert error_of(lambda: list(iter_pairs(path, chunk_rows=4))) == expected


@pytest.mark.parametrize("src,dst", [(2, 9), (8, 10)], ids=["across-chunks", "within-a-chunk"])
def test_duplicate_ids_name_both_file_rows(src: int, dst: int, tmp_path: Path) -> None:
    path = write_file("parquet", tmp_path)
    duplicate_id(path, src, dst)
    expected = error_of(lambda: read_pairs(path))
    assert f"rows {src} and {dst} share it" in expected
    assert error_of(lambda: list(iter_pairs(path, chunk_rows=4))) == expected


def test_broken_json_line_counts_file_rows(tmp_path: Path) -> None:
    path = write_file("jsonl", tmp_path)
    lines = path.read_text().splitlines()
    lines[-1] = '{"chosen": "cut off'
    path.write_text("\n".join(lines) + "\n")
    expected = error_of(lambda: read_pairs(path))
    assert ", row 10, " in expected
    assert error_of(lambda: list(iter_pairs(path, chunk_rows=3))) == expected
    with pytest.raises(ValueError, match="chunk_rows"):
        next(iter_pairs(path, chunk_rows=0))


def test_tokenize_chunks_equals_the_whole_table_and_caches_each_chunk(predictors, tmp_path) -> None:
    path = write_file("csv", tmp_path)
    tokenizer = predictors["fusion2"].tokenizer
    whole = tokenize_pairs(read_pairs(path)[0], tokenizer)
    for _ in range(2):  # the first call fills the cache, the second reads it
        chunks = (c.table for c in iter_pairs(path, chunk_rows=4))
        seen: list[TokenizedPairs] = []
        got = tokenize_chunks(chunks, tokenizer, tmp_path / "cache", seen.append)
        assert [len(t) for t in seen] == [4, 4, 3]  # every chunk, while it is in memory
        assert isinstance(got.ids, np.memmap)  # the joined ids live on disk, not in the process
        for field in ("ids", "offsets", "turns"):
            assert np.array_equal(getattr(got, field), getattr(whole, field)), field
    entries = sorted((tmp_path / "cache" / "tokens").iterdir())
    assert len(entries) == 3 and all(e.is_dir() for e in entries)  # one per chunk, no leftovers
    assert isinstance(TokenizedPairs.load(entries[0]).ids, np.memmap)
    empty = tokenize_chunks([], tokenizer, None)
    assert len(empty) == 0 and len(empty.offsets) == 1
