"""The chunked reader (:mod:`arena.data.chunks`) against ``read_pairs``: same tables, same errors
with file rows counted from the start of the file; chunked tokenization equals the whole table's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena.data.chunks import iter_pairs, merge_reports
from arena.data.readers import read_pairs
from arena.data.schema import DataError
from arena.data.synthetic import make_synthetic
from arena.data.tokenize import TokenizedPairs, tokenize_chunks, tokenize_pairs
from tests.helpers import write_lmsys_test, write_wsdm

pytestmark = pytest.mark.usefixtures("one_thread")


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
