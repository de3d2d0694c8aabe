"""Fuzzing the readers and the teacher store with whole malformed files.

Every file layout (WSDM parquet and csv, LMSYS csv with JSON-encoded turn lists, Anthropic HH
jsonl, generic jsonl) is generated with random mixes of missing and extra columns, NaN, None,
numbers where text belongs, empty strings, lone surrogates, broken JSON, duplicate ids and
unknown labels. Whatever comes in, the reader returns valid pairs whose counts add up, or raises
a :class:`DataError` naming the file, the column, the row (unless the problem is the file's
layout) and what was expected; any other exception is a reader bug. Teacher files get the same
treatment, with an oracle: exactly the well-formed stores load, with the file's numbers.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena.data.readers import EMPTY_PLACEHOLDER, read_many, read_pairs
from arena.data.schema import COLUMNS, TEXT_COLUMNS, DataError
from arena.data.teachers import Teacher, load_teachers

# CI: 40 fixed examples per property. A longer random search: FUZZ_EXAMPLES=1000 pytest ...
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 40)),
    deadline=None,
    derandomize="FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ONE_HOT = ["winner_model_a", "winner_model_b", "winner_tie"]
PROBS = ["prob_model_a", "prob_model_b", "prob_tie"]
# errors about the whole file (its columns, its syntax, other files) need not name a row
FILE_LEVEL = re.compile(
    "missing required column|well-formed|unique across files|labels required|expected columns"
    "|prob_tie column|every training id|nested|column names|existing file|the file is empty"
)
# --- cells ---------------------------------------------------------------------------------
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=10),  # surrogates included
    st.sampled_from(
        ["", " ", "\ud800", "a\udfffb", "\ud83d\ude00", "model_a", "[x]", "line\u2028sep", "\x85"]
    ),
)
JUNK = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.integers(-3, 3),
    st.floats(allow_nan=False, width=32),
    st.booleans(),
)
CELL = st.one_of(TEXT, TEXT, TEXT, JUNK)
LABEL = st.sampled_from(["model_a", "model_b", "tie", "model_a", "model_b", "", "model_c", None, 1])
OPTIONAL = ["model_a", "model_b", "language", "fold", "source", "extra"]


def _maybe_drop(draw: st.DrawFn, columns: list[str]) -> list[str]:
    """Mostly all columns; sometimes one is missing."""
    dropped = draw(st.sampled_from([None, None, None, None, *columns]))
    return [c for c in columns if c != dropped]


def _ids(draw: st.DrawFn, n: int) -> list[Any]:
    kind = draw(st.sampled_from(["clean", "clean", "duplicate", "messy"]))
    ids: list[Any] = [f"r{i}" for i in range(n)]
    if kind == "duplicate" and n > 1:
        ids[draw(st.integers(1, n - 1))] = ids[0]
    elif kind == "messy":
        ids = [draw(st.one_of(st.just(f"r{i}"), CELL)) for i in range(n)]
    return ids


@st.composite
def flat_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """WSDM-style rows (plain text cells) with optional, missing and extra columns."""
    n = draw(st.integers(0, 6))
    columns = [
        "id",
        *TEXT_COLUMNS,
        "winner",
        *draw(st.lists(st.sampled_from(OPTIONAL), unique=True)),
    ]
    columns = _maybe_drop(draw, columns)
    ids = _ids(draw, n)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {}
        for c in columns:
            if c == "id":
                row[c] = ids[i]
            elif c == "winner":
                row[c] = draw(LABEL)
            elif c == "fold":
                row[c] = draw(
                    st.one_of(st.integers(-2, 5), st.sampled_from([None, 1.5, "x", 2**40]))
                )
            else:
                row[c] = draw(CELL)
        rows.append(row)
    return rows


@st.composite
def turn_list_cell(draw: st.DrawFn) -> str:
    """An LMSYS text cell: a JSON-encoded list of turns, often with nulls, sometimes broken."""
    turns = draw(st.lists(st.one_of(TEXT, TEXT, st.none(), st.integers(0, 9)), max_size=3))
    kind = draw(st.sampled_from(["list"] * 6 + ["broken", "text", "json", "empty", "nested"]))
    encoded = json.dumps(turns)
    return {
        "list": encoded,
        "broken": encoded[:-1],
        "text": draw(TEXT),
        "json": draw(st.sampled_from(["null", '"a string"', '{"a": 1}', "[NaN]", "7"])),
        "empty": "",
        "nested": json.dumps([turns]),
    }[kind]


@st.composite
def lmsys_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 5))
    base = [
        "id",
        "model_a",
        "model_b",
        *TEXT_COLUMNS,
        *ONE_HOT,
        *draw(st.sampled_from([[], ["x"]])),
    ]
    columns = _maybe_drop(draw, base)
    ids = _ids(draw, n)
    one_hot = st.one_of(
        st.sampled_from([(1, 0, 0), (0, 1, 0), (0, 0, 1)] * 3),
        st.tuples(*[st.sampled_from([0, 1, "", "x", "1.0", 2])] * 3),
    )
    rows = []
    for i in range(n):
        win = draw(one_hot)
        row = {"id": ids[i], "model_a": draw(TEXT), "model_b": "m"}
        row |= {c: draw(turn_list_cell()) for c in TEXT_COLUMNS}
        row |= dict(zip(ONE_HOT, win, strict=True)) | {"x": draw(CELL)}
        rows.append({c: row[c] for c in columns})
    return rows


@st.composite
def hh_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 5))
    with_id = draw(st.booleans())
    rows = []
    for i in range(n):
        convo = f"\n\nHuman: {draw(TEXT)}\n\nAssistant:"
        chosen: Any = convo + " " + draw(TEXT)
        rejected: Any = draw(st.sampled_from([convo, "\n\nHuman: other"])) + " " + draw(TEXT)
        kind = draw(st.sampled_from(["ok"] * 6 + ["junk", "missing", "list"]))
        if kind == "junk":
            rejected = draw(JUNK)
        elif kind == "list":
            chosen = [chosen, draw(st.one_of(TEXT, st.none()))]
        row = {"chosen": chosen, "rejected": rejected}
        if kind == "missing":
            del row["rejected"]
        if with_id:
            row["id"] = draw(st.one_of(st.just(f"h{i}"), CELL))
        rows.append(row)
    return rows


@st.composite
def generic_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Generic jsonl: turn lists or text, labels as names or ints, soft labels, folds."""
    n = draw(st.integers(0, 5))
    labels = draw(st.sampled_from(["label", "probs", "none"]))
    ids = _ids(draw, n)
    text = st.one_of(TEXT, st.lists(st.one_of(TEXT, st.none(), st.integers()), max_size=3), JUNK)
    prob = st.one_of(st.floats(0, 1), st.sampled_from([None, -0.1, "0.5", "x"]))
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"id": ids[i]} | {c: draw(text) for c in TEXT_COLUMNS}
        if labels == "label":
            row["label"] = draw(st.sampled_from([0, 1, 2, -1, "tie", "2", 3, None, True, 1.0, "x"]))
        elif labels == "probs":
            a = draw(prob)
            row |= {
                "prob_model_a": a,
                "prob_model_b": 1 - a if isinstance(a, float) else draw(prob),
            }
        if draw(st.booleans()):
            row[draw(st.sampled_from(["fold", "extra", "language"]))] = draw(CELL)
        rows.append({k: v for k, v in row.items() if draw(st.integers(0, 30)) or k != "prompt"})
    return rows


# --- writers -------------------------------------------------------------------------------
def _arrow(values: list[Any]) -> pa.Array:
    """A parquet column as a real writer would type it; text may hold invalid UTF-8."""
    values = [None if isinstance(v, float) and v != v else v for v in values]  # NaN: null
    if values and all(v is None or isinstance(v, str) for v in values):
        raw = pa.array(
            [None if v is None else v.encode("utf-8", "surrogatepass") for v in values],
            type=pa.binary(),
        )
        return pa.Array.from_buffers(pa.string(), len(raw), raw.buffers(), raw.null_count)
    try:
        return pa.array(values)
    except (pa.ArrowException, OverflowError, UnicodeEncodeError):  # mixed: stored as text
        return _arrow([None if v is None else str(v) for v in values])


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["id"]
    table = {c: _arrow([row.get(c) for row in rows]) for c in columns}
    pq.write_table(pa.table(table) if rows else pa.table({c: pa.array([]) for c in columns}), path)
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], ragged: bool = False) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["id"]
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i, row in enumerate(rows):
            cells = ["" if row.get(c) is None else str(row.get(c)) for c in columns]
            writer.writerow([*cells, "surplus"] if ragged and i == len(rows) - 1 else cells)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]], broken: int | None = None) -> Path:
    lines = [json.dumps(row) for row in rows]
    if broken is not None and lines:
        lines[broken % len(lines)] = lines[broken % len(lines)][:-1]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- properties ----------------------------------------------------------------------------
def assert_names(err: DataError, path: Path, n_rows: int) -> None:
    """The error names the file, a column, the row (unless about the file) and an expectation."""
    msg = str(err)
    assert path.name in msg and err.column is not None and repr(err.column) in msg, msg
    assert re.search("expected|required|allowed", err.expected), msg
    if err.row is None:
        assert FILE_LEVEL.search(msg), msg
    else:
        assert isinstance(err.row, int) and 0 <= err.row <= n_rows and f"row {err.row}" in msg, msg


def assert_valid(df: pd.DataFrame, empty: str) -> None:
    """Everything :mod:`arena.data.schema` promises about a pair table."""
    assert list(df.columns) == list(COLUMNS)
    assert df["id"].is_unique
    for col in ("id", "model_a", "model_b", "language", "source"):
        assert all(isinstance(x, str) and x.strip() and x.encode("utf-8") for x in df[col]), col
    for p, a, b in zip(*(df[c] for c in TEXT_COLUMNS), strict=True):
        assert len(p) == len(a) == len(b) >= 1
        assert all(isinstance(t, str) and t.encode("utf-8") is not None for t in (*p, *a, *b))
        if empty != "keep":
            assert any(t.strip() for t in a) and any(t.strip() for t in b)
    assert df["label"].dtype == np.int64 and set(df["label"]) <= {-1, 0, 1, 2}
    assert df["fold"].dtype == np.int64 and (df["fold"] >= -1).all()
    for soft, label in zip(df["soft_label"], df["label"], strict=True):
        if soft is not None:
            assert abs(float(soft.sum()) - 1) < 1e-5 and int(soft.argmax()) == label


def check_read(path: Path, n_rows: int, **kw: Any) -> pd.DataFrame | None:
    try:
        df, report = read_pairs(path, **kw)
    except DataError as err:
        assert_names(err, path, n_rows)
        return None
    assert_valid(df, kw.get("empty", "keep"))
    assert report.rows_read == n_rows and report.rows_kept == len(df)
    assert report.rows_read == report.rows_kept + report.rows_dropped
    if kw.get("empty") == "placeholder":
        n_marked = sum(
            (df[c].map(lambda t: t[0] == EMPTY_PLACEHOLDER)).sum() for c in TEXT_COLUMNS[1:]
        )
        assert n_marked >= report.empty_responses
    return df


POLICIES = {
    "surrogates": st.sampled_from(["repair", "repair", "reject"]),
    "empty": st.sampled_from(["keep", "placeholder", "drop", "reject"]),
}


@FUZZ
@given(rows=flat_records(), suffix=st.sampled_from([".parquet", ".csv", ".jsonl"]), **POLICIES)
def test_flat_files(tmp_path: Path, rows: list, suffix: str, surrogates: str, empty: str) -> None:
    path = tmp_path / f"wsdm{suffix}"
    {".parquet": write_parquet, ".csv": write_csv, ".jsonl": write_jsonl}[suffix](path, rows)
    check_read(path, len(rows), surrogates=surrogates, empty=empty)


@FUZZ
@given(rows=lmsys_records(), ragged=st.booleans(), **POLICIES)
def test_lmsys_csv(tmp_path: Path, rows: list, ragged: bool, surrogates: str, empty: str) -> None:
    path = write_csv(tmp_path / "arena.csv", rows, ragged=ragged and len(rows) > 1)
    check_read(path, len(rows), surrogates=surrogates, empty=empty)


@FUZZ
@given(rows=hh_records(), seed=st.integers(0, 3), **POLICIES)
def test_hh_jsonl(tmp_path: Path, rows: list, seed: int, surrogates: str, empty: str) -> None:
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    df = check_read(path, len(rows), surrogates=surrogates, empty=empty, seed=seed)
    if df is not None:
        assert set(df["label"]) <= {0, 1}


MAPPINGS = st.sampled_from(
    [None, {"id": "qid", "prompt": "question"}, {"response_a": "r1", "response_b": "r1"}]
)


@FUZZ
@given(
    rows=generic_records(),
    broken=st.one_of(st.none(), st.integers(0, 4)),
    suffix=st.sampled_from([".jsonl", ".parquet", ".csv"]),
    mapping=MAPPINGS,
    **POLICIES,
)
def test_generic_files(
    tmp_path: Path,
    rows: list,
    broken: int | None,
    suffix: str,
    mapping: dict[str, str] | None,
    surrogates: str,
    empty: str,
) -> None:
    """Generic files, their columns renamed in the file and mapped back (or mapped wrongly)."""
    if mapping:
        rows = [{mapping.get(k, k): v for k, v in row.items()} for row in rows]
    if suffix == ".parquet":
        path = write_parquet(tmp_path / "gen.parquet", rows)
    elif suffix == ".csv":
        path = write_csv(tmp_path / "gen.csv", rows)
    else:
        path = write_jsonl(tmp_path / "gen.jsonl", rows, broken)
    check_read(path, len(rows), surrogates=surrogates, empty=empty, columns=mapping)


@FUZZ
@given(first=flat_records(), second=flat_records(), empty=POLICIES["empty"])
def test_read_many_counts_add_up(tmp_path: Path, first: list, second: list, empty: str) -> None:
    """Two files sharing some pairs: per file, rows read = kept + dropped + duplicates."""
    second = [*second, *({**row, "id": f"copy{i}"} for i, row in enumerate(first[:2]))]
    paths = [
        write_jsonl(tmp_path / "one.jsonl", first),
        write_jsonl(tmp_path / "two.jsonl", second),
    ]
    try:
        df, reports = read_many(paths, empty=empty)
    except DataError as err:
        assert_names(err, Path(err.file.split(",")[0]), max(len(first), len(second)))
        return
    assert_valid(df, empty)
    assert [r.rows_read for r in reports] == [len(first), len(second)]
    for r in reports:
        assert r.rows_read == r.rows_kept + r.rows_dropped + r.duplicates_dropped
    assert sum(r.rows_kept for r in reports) == len(df)


GARBAGE = st.one_of(
    st.binary(max_size=48),
    st.sampled_from(
        [b"", b"PAR1\x00\x00\x00\x00PAR1", b"\xff\xfe\x00a", b'[{"id": 1}', b"a,b\n1,2,3\n"]
    ),
    st.builds(lambda b: b'{"id": "1", "\\ud800": ' + b + b"}\n", st.binary(max_size=8)),
)


@FUZZ
@given(raw=GARBAGE, suffix=st.sampled_from([".csv", ".parquet", ".jsonl", ".json"]))
def test_arbitrary_bytes(tmp_path: Path, raw: bytes, suffix: str) -> None:
    """Whatever the bytes, a reader answers with pairs or a DataError, never a library error."""
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(raw)
    check_read(path, raw.count(b"\n") + 1)
    if suffix in (".csv", ".parquet"):
        try:
            load_teachers([Teacher("t", [str(path)])], ["1"], 2)
        except DataError as err:
            assert_names(err, path, raw.count(b"\n") + 1)


def test_megabyte_responses_read_and_errors_stay_short(tmp_path: Path) -> None:
    big = "x" * 2**20
    rows = [
        {"id": "a", "prompt": "p", "response_a": big, "response_b": "b", "winner": "model_a"},
        {
            "id": "b",
            "prompt": "q",
            "response_a": "a",
            "response_b": big + "\ud800",
            "winner": "tie",
        },
    ]
    df, report = read_pairs(write_parquet(tmp_path / "big.parquet", rows))
    assert df.loc[0, "response_a"] == [big] and df.loc[1, "response_b"] == [big + "\ufffd"]
    assert report.surrogates_repaired == 1
    lmsys = [{"id": "c", "prompt": '["p"]', "response_a": json.dumps([big, None])}]
    lmsys[0] |= {"response_b": '["b"]', **dict(zip(ONE_HOT, (0, 1, 0), strict=True))}
    df, _ = read_pairs(write_csv(tmp_path / "big.csv", lmsys))
    assert df.loc[0, "response_a"] == [big, ""] and df.loc[0, "label"] == 1
    rows[1]["winner"] = big  # a megabyte where a label belongs
    with pytest.raises(DataError, match="unknown label") as err:
        read_pairs(write_jsonl(tmp_path / "big.jsonl", rows))
    assert err.value.row == 1 and len(str(err.value)) < 1000


def test_json_nested_too_deeply_is_a_data_error(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "[" * 100_000, "response_a": "[]", "response_b": "[]"}]
    with pytest.raises(DataError, match="broken JSON|nested") as err:
        read_pairs(write_csv(tmp_path / "deep.csv", rows), format="lmsys")
    assert_names(err.value, tmp_path / "deep.csv", 1)


# --- teachers ------------------------------------------------------------------------------
IDS = [f"p{i}" for i in range(6)]


@st.composite
def teacher_store(draw: st.DrawFn) -> tuple[list[list[dict[str, Any]]], int, bool]:
    """(rows of each file, classes in the files, whether every cell is a valid probability)."""
    n_cls = draw(st.sampled_from([2, 3, 3]))
    present = draw(st.lists(st.sampled_from([*IDS, "extra1", "extra2"]), max_size=10))
    present = present if draw(st.integers(0, 3)) else [*IDS, *present[:2]]
    valid = True
    rows = []
    for key in present:
        weights = draw(st.lists(st.floats(0.01, 1), min_size=n_cls, max_size=n_cls))
        probs: list[Any] = [w / sum(weights) for w in weights]
        if not draw(st.integers(0, 12)):
            probs[draw(st.integers(0, n_cls - 1))] = draw(
                st.sampled_from([None, float("nan"), -0.2, 1.5, "x", float("inf")])
            )
            valid = False
        rows.append({"id": key, **dict(zip(PROBS, probs, strict=False)), "fold": 0})
    cut = draw(st.integers(0, len(rows)))
    return [rows[:cut], rows[cut:]], n_cls, valid


@FUZZ
@given(
    store=teacher_store(),
    n_classes=st.sampled_from([2, 3]),
    suffix=st.sampled_from(["parquet", "csv"]),
)
def test_teacher_files(tmp_path: Path, store: tuple, n_classes: int, suffix: str) -> None:
    files, n_cls, valid_cells = store
    paths = [tmp_path / f"oof{k}.{suffix}" for k in range(2)]
    for path, rows in zip(paths, files, strict=True):
        (write_parquet if suffix == "parquet" else write_csv)(path, rows)
    all_rows = [r for rows in files for r in rows]
    keys = [r["id"] for r in all_rows]
    well_formed = (
        n_cls == n_classes
        and valid_cells
        and len(set(keys)) == len(keys)
        and set(IDS) <= set(keys)
        and all(rows for rows in files)  # an empty parquet file has no prob columns
    )
    try:
        got = load_teachers([Teacher("t", [str(p) for p in paths])], IDS, n_classes)
    except DataError as err:
        assert not well_formed, err
        assert_names(err, Path(err.file.split(", ")[0].split(" and ")[0]), len(all_rows))
        return
    assert well_formed
    assert got.shape == (len(IDS), 1, n_classes) and got.dtype == np.float32
    want = {r["id"]: [r[c] for c in PROBS[:n_classes]] for r in all_rows}
    np.testing.assert_allclose(got[:, 0], [want[i] for i in IDS], rtol=1e-5, atol=1e-6)


# --- one layout per file ---------------------------------------------------------------------
PROMPT_CELLS = st.one_of(
    st.lists(st.one_of(st.none(), st.text(max_size=8)), min_size=1, max_size=3).map(json.dumps),
    st.text(max_size=12),  # plain text, bracketed or not
    st.sampled_from(["[INST] hi [/INST]", "[see note]", "[1, 2", "", "  "]),
)


@FUZZ
@given(prompts=st.lists(PROMPT_CELLS, max_size=12), chunk_rows=st.integers(1, 5))
def test_one_layout_per_unlabeled_csv(tmp_path: Path, prompts: list, chunk_rows: int) -> None:
    """Every reader decides alike: LMSYS when every non-blank prompt is a JSON list, plain text
    when none is, else an error naming the first row of the rarer kind; an empty file reads as
    an empty table."""
    from arena.data.chunks import file_layout, iter_pairs

    path = tmp_path / "test.csv"
    n = len(prompts)
    rows = {"id": [str(i) for i in range(n)], "prompt": prompts,
            "response_a": ['["a"]'] * n, "response_b": ['["b"]'] * n}  # fmt: skip
    pd.DataFrame(rows, columns=list(rows)).to_csv(path, index=False)
    kinds = [isinstance(p, str) and p.strip() != "" and is_json_list(p) for p in prompts]
    blank = [not (isinstance(p, str) and p.strip()) for p in prompts]
    lists = [k for k, b in zip(kinds, blank, strict=True) if not b]
    readers = (
        lambda: file_layout(path),
        lambda: read_pairs(path),
        lambda: list(iter_pairs(path, chunk_rows=chunk_rows)),
    )
    if any(lists) and not all(lists):
        majority = sum(lists) >= len(lists) - sum(lists)
        odd = next(i for i, (k, b) in enumerate(zip(kinds, blank, strict=True))
                   if not b and k != majority)  # fmt: skip
        for read in readers:
            with pytest.raises(DataError, match=f"row {odd}, column 'prompt'.*one layout per file"):
                read()
        return
    assert file_layout(path) == ("lmsys" if any(lists) else "generic")
    table, report = read_pairs(path)
    assert (
        report.rows_read == n == sum(len(c.table) for c in iter_pairs(path, chunk_rows=chunk_rows))
    )


def is_json_list(cell: str) -> bool:
    try:
        return isinstance(json.loads(cell), list)
    except ValueError:
        return False
