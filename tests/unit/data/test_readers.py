"""Readers: every layout into valid pair tables, every bad cell into a DataError that names it.

Fixture files are written into ``tmp_path`` by the tests themselves, so each test shows the
exact bytes it reads. Real data under ``../shared/data`` is read by the integration tests.
"""

from __future__ import annotations

import csv
import json
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
from tests.helpers import assert_pairs

LMSYS_HEADER = ["id", "model_a", "model_b", "prompt", "response_a", "response_b"]
ONE_HOT = ["winner_model_a", "winner_model_b", "winner_tie"]
WSDM_COLUMNS = ["id", "prompt", "response_a", "response_b", "winner", "model_a"]


# --- helpers -------------------------------------------------------------------------------
def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def lmsys_row(i: int, prompt: Any, a: Any, b: Any, win: tuple[int, int, int] = (1, 0, 0)) -> list:
    enc = [x if isinstance(x, str) else json.dumps(x) for x in (prompt, a, b)]
    return [f"id{i}", "gpt-4", "llama", *enc, *win]


def write_lmsys(path: Path, rows: list[list[Any]]) -> Path:
    return write_csv(path, LMSYS_HEADER + ONE_HOT, rows)


def wsdm_frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"w{i}" for i in range(n)],
            "prompt": [f"question {i}" for i in range(n)],
            "response_a": [f"answer a{i}" for i in range(n)],
            "response_b": [f"answer b{i}" for i in range(n)],
            "winner": ["model_a", "model_b", "model_a"][:n],
        }
    )


def assert_names(err: pytest.ExceptionInfo[DataError], path: Path, row: int | None, col: str):
    msg = str(err.value)
    assert path.name in msg and repr(col) in msg, msg
    if row is not None:
        assert re.search(rf"\brow {row}\b", msg) and "0-based" in msg, msg
        assert err.value.row == row


# --- WSDM ----------------------------------------------------------------------------------
def test_wsdm_parquet_reads_plain_text_as_one_turn(tmp_path: Path) -> None:
    frame = wsdm_frame().assign(model_a=["m1", "", "m3"], language=["en", "de", None])
    frame.to_parquet(tmp_path / "train.parquet")
    df, report = read_pairs(tmp_path / "train.parquet")
    assert_pairs(df)
    assert df["prompt"].tolist() == [["question 0"], ["question 1"], ["question 2"]]
    assert df["label"].tolist() == [0, 1, 0]
    assert df["model_a"].tolist() == ["m1", "unknown", "m3"]
    assert df["model_b"].tolist() == ["unknown"] * 3
    assert df["language"].tolist() == ["en", "de", "unknown"]
    assert df["source"].tolist() == ["train"] * 3 and df["fold"].tolist() == [-1] * 3
    assert report.rows_read == report.rows_kept == 3 and report.rows_dropped == 0


def test_wsdm_csv_keeps_numbers_as_text_and_takes_source(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        ["id", "prompt", "response_a", "response_b", "winner"],
        [[1, "123", "4.5", "NaN", "model_b"]],
    )
    df, _ = read_pairs(path, source="wsdm")
    assert df.loc[0, "prompt"] == ["123"] and df.loc[0, "response_b"] == ["NaN"]
    assert df.loc[0, "id"] == "1" and df.loc[0, "source"] == "wsdm"


def test_unknown_label_lists_the_allowed_values(tmp_path: Path) -> None:
    wsdm_frame().assign(winner=["model_a", "model_a", "model_c"]).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match="'model_c'.*allowed: 'model_a', 'model_b', 'tie'") as err:
        read_pairs(tmp_path / "x.parquet")
    assert_names(err, tmp_path / "x.parquet", 2, "winner")


def test_missing_column_lists_what_was_found(tmp_path: Path) -> None:
    wsdm_frame().drop(columns="response_b").to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match=r"missing.*'response_b'.*found columns \['id'") as err:
        read_pairs(tmp_path / "x.parquet")
    assert_names(err, tmp_path / "x.parquet", None, "response_b")


def test_duplicate_ids_name_both_rows(tmp_path: Path) -> None:
    wsdm_frame().assign(id=["a", "b", "a"]).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match="duplicate id 'a': rows 0 and 2") as err:
        read_pairs(tmp_path / "x.parquet")
    assert_names(err, tmp_path / "x.parquet", 2, "id")


@pytest.mark.parametrize(
    ("column", "values", "found"),
    [
        ("prompt", [1, 2, 3], "int"),
        ("response_a", ["x", None, "z"], "None|NaN"),
        ("response_b", [0.5, float("nan"), 1.0], "float"),
    ],
)
def test_non_string_text_says_the_type(tmp_path: Path, column: str, values: list, found: str):
    frame = wsdm_frame().astype(object)
    frame[column] = pd.Series(values, dtype=object)
    frame.to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match=f"expected text.*found ({found})") as err:
        read_pairs(tmp_path / "x.parquet")
    assert_names(err, tmp_path / "x.parquet", 1 if values[0] == "x" else 0, column)


def test_fold_column_is_kept_and_checked(tmp_path: Path) -> None:
    wsdm_frame().assign(fold=[0, 4, -1]).to_parquet(tmp_path / "ok.parquet")
    assert read_pairs(tmp_path / "ok.parquet")[0]["fold"].tolist() == [0, 4, -1]
    wsdm_frame().assign(fold=[0, 1.5, 2]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="integer fold") as err:
        read_pairs(tmp_path / "bad.parquet")
    assert_names(err, tmp_path / "bad.parquet", 1, "fold")


def test_labeled_flag(tmp_path: Path) -> None:
    wsdm_frame().drop(columns="winner").to_parquet(tmp_path / "test.parquet")
    df, _ = read_pairs(tmp_path / "test.parquet")
    assert df["label"].tolist() == [-1, -1, -1]
    with pytest.raises(DataError, match="labels required") as err:
        read_pairs(tmp_path / "test.parquet", labeled=True)
    assert_names(err, tmp_path / "test.parquet", None, "winner")
    wsdm_frame().to_parquet(tmp_path / "train.parquet")
    assert read_pairs(tmp_path / "train.parquet", labeled=False)[0]["label"].tolist() == [-1] * 3


# --- surrogates ----------------------------------------------------------------------------
def test_lone_surrogates_are_repaired_and_counted(tmp_path: Path) -> None:
    rec = {
        "id": "s",
        "prompt": "hi \ud800 there",
        "response_a": "ok \ud83d\ude00",
        "response_b": "\udfff",
        "label": "tie",
    }
    df, report = read_pairs(write_jsonl(tmp_path / "s.jsonl", [rec]))
    assert df.loc[0, "prompt"] == ["hi \ufffd there"]
    assert df.loc[0, "response_a"] == ["ok \U0001f600"]  # a valid pair is one character
    assert df.loc[0, "response_b"] == ["\ufffd"] and df.loc[0, "label"] == 2
    assert report.surrogates_repaired == 2


def test_lone_surrogate_rejected_names_the_cell(tmp_path: Path) -> None:
    recs = [{"id": str(i), "prompt": "p", "response_a": "a", "response_b": "b"} for i in range(3)]
    recs[1]["response_a"] = "bad \ud800"
    path = write_jsonl(tmp_path / "s.jsonl", recs)
    with pytest.raises(DataError, match="lone surrogate U\\+D800 at char 4") as err:
        read_pairs(path, surrogates="reject")
    assert_names(err, path, 1, "response_a")


def test_invalid_utf8_bytes_in_csv_and_parquet_go_through_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(b"id,prompt,response_a,response_b,winner\n1,p\xff,a,b,model_a\n")
    df, report = read_pairs(path)
    assert df.loc[0, "prompt"] == ["p\ufffd"] and report.surrogates_repaired == 1
    raw = pa.array([b"\xed\xa0\x80x", b"fine"], type=pa.binary())  # encoded lone U+D800
    text = pa.Array.from_buffers(pa.string(), 2, raw.buffers())  # invalid UTF-8 in a string column
    table = pa.table(
        {"id": ["1", "2"], "prompt": text, "response_a": ["a", "a"], "response_b": ["b", "b"]}
    )
    pq.write_table(table, tmp_path / "b.parquet")
    df, report = read_pairs(tmp_path / "b.parquet")
    assert df["prompt"].tolist() == [["\ufffdx"], ["fine"]] and report.surrogates_repaired == 1
    with pytest.raises(DataError) as err:
        read_pairs(tmp_path / "b.parquet", surrogates="reject")
    assert_names(err, tmp_path / "b.parquet", 0, "prompt")


# --- LMSYS ---------------------------------------------------------------------------------
def test_lmsys_turn_lists_ties_and_null_turns(tmp_path: Path) -> None:
    path = write_lmsys(
        tmp_path / "arena.csv",
        [
            lmsys_row(0, ["hi"], ["hello"], ["hey"], (0, 0, 1)),
            lmsys_row(1, ["q1", "q2"], ["a1", None], ["b1", "b2"], (0, 1, 0)),
            lmsys_row(2, ["q1", "q2"], ["a1"], ["b1", "b2", "b3"], (1, 0, 0)),
        ],
    )
    df, report = read_pairs(path)
    assert_pairs(df)
    assert df["label"].tolist() == [2, 1, 0] and df["model_a"].tolist() == ["gpt-4"] * 3
    assert df.loc[1, "response_a"] == ["a1", ""]  # null turn -> ""
    assert df.loc[2, "prompt"] == ["q1", "q2", ""]  # shorter lists padded to line up
    assert df.loc[2, "response_a"] == ["a1", "", ""]
    assert report.empty_responses == 0


def test_unlabeled_lmsys_test_file_is_detected(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "test.csv", LMSYS_HEADER, [lmsys_row(0, ["q"], ["a"], ["b"])[:6]])
    df, _ = read_pairs(path)
    assert df.loc[0, "prompt"] == ["q"] and df.loc[0, "label"] == -1


def _empties(tmp_path: Path) -> Path:
    return write_lmsys(
        tmp_path / "e.csv",
        [
            lmsys_row(0, ["q"], ["a"], ["b"]),
            lmsys_row(1, ["q"], [None], ["b"]),
            lmsys_row(2, ["q"], ["a"], [""]),
            lmsys_row(3, ["q"], [], ["  "]),
            lmsys_row(4, ["q"], "", ["b"]),
        ],
    )


@pytest.mark.parametrize("policy", ["keep", "placeholder", "drop"])
def test_empty_policy(tmp_path: Path, policy: str) -> None:
    df, report = read_pairs(_empties(tmp_path), empty=policy)  # type: ignore[arg-type]
    assert_pairs(df)
    assert report.empty_responses == 5 and report.rows_read == 5
    if policy == "drop":
        assert df["id"].tolist() == ["id0"] and report.rows_dropped == 4 == 5 - report.rows_kept
        return
    marker = "" if policy == "keep" else EMPTY_PLACEHOLDER
    assert df["response_a"].tolist() == [["a"], [marker], ["a"], [marker], [marker]]
    assert df.loc[3, "response_b"] == (["  "] if policy == "keep" else [marker])
    assert report.rows_dropped == 0 and len(df) == 5


def test_empty_policy_reject(tmp_path: Path) -> None:
    path = _empties(tmp_path)
    with pytest.raises(DataError, match="empty response") as err:
        read_pairs(path, empty="reject")
    assert_names(err, path, 1, "response_a")


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ('["unclosed', "broken JSON"),
        ("plain words", "JSON-encoded list.*not one: 'plain words'"),
        ('"a json string"', "JSON-encoded list"),
        ('{"a": 1}', "JSON-encoded list"),
        ('["ok", 7]', "turn 1 is int"),
    ],
)
def test_lmsys_bad_text_names_the_cell(tmp_path: Path, cell: str, message: str) -> None:
    path = write_lmsys(
        tmp_path / "bad.csv", [lmsys_row(0, ["q"], ["a"], ["b"]), lmsys_row(1, ["q"], ["a"], cell)]
    )
    with pytest.raises(DataError, match=message) as err:
        read_pairs(path)
    assert_names(err, path, 1, "response_b")


@pytest.mark.parametrize("win", [(1, 1, 0), (0, 0, 0), (2, -1, 0), ("x", 0, 1)])
def test_one_hot_must_have_exactly_one(tmp_path: Path, win: tuple) -> None:
    path = write_lmsys(
        tmp_path / "oh.csv",
        [lmsys_row(0, ["q"], ["a"], ["b"]), lmsys_row(1, ["q"], ["a"], ["b2"], win)],
    )
    with pytest.raises(DataError, match="exactly one of") as err:
        read_pairs(path)
    assert_names(err, path, 1, "winner_model_a/winner_model_b/winner_tie")


# --- Anthropic HH --------------------------------------------------------------------------
def hh_record(i: int, tail: str = "") -> dict[str, str]:
    convo = (
        f"\n\nHuman: question {i}?\n\nAssistant: earlier reply{tail}\n\nHuman: and?\n\nAssistant:"
    )
    return {"chosen": convo + f" good {i}", "rejected": convo + f" bad {i}"}


def test_hh_splits_prompt_and_places_chosen_by_seeded_coin(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "harmless.jsonl", [hh_record(i) for i in range(200)])
    df, _ = read_pairs(path, seed=3)
    assert_pairs(df)
    assert df.loc[0, "id"] == "hh-harmless-0"
    assert df.loc[0, "prompt"] == [
        "Human: question 0?\n\nAssistant: earlier reply\n\nHuman: and?\n\nAssistant:"
    ]
    chosen = np.where(df["label"] == 0, df["response_a"], df["response_b"])
    assert [c[0] for c in chosen] == [f"good {i}" for i in range(200)]
    assert 70 < (df["label"] == 0).sum() < 130  # a fair coin, not "chosen is always A"
    assert df["label"].tolist() == read_pairs(path, seed=3)[0]["label"].tolist()
    assert df["label"].tolist() != read_pairs(path, seed=4)[0]["label"].tolist()


def test_hh_marker_inside_the_final_reply(tmp_path: Path) -> None:
    rec = hh_record(0)
    rec["chosen"] += "\n\nAssistant: quoted"
    df, _ = read_pairs(write_jsonl(tmp_path / "hh.jsonl", [rec]))
    good = df.loc[0, "response_a" if df.loc[0, "label"] == 0 else "response_b"]
    assert good == ["good 0\n\nAssistant: quoted"]


def test_hh_without_shared_conversation(tmp_path: Path) -> None:
    recs = [hh_record(0), {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b"}]
    path = write_jsonl(tmp_path / "hh.jsonl", recs)
    with pytest.raises(DataError, match="sharing the conversation") as err:
        read_pairs(path)
    assert_names(err, path, 1, "chosen")


# --- generic -------------------------------------------------------------------------------
def test_column_mapping_and_label_values(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "qid": ["a", "b", "c", "d"],
            "q": ["x"] * 4,
            "r1": ["1"] * 4,
            "r2": ["2"] * 4,
            "pref": ["tie", 0, "1", 2],
        }
    )
    frame.astype(str).to_csv(tmp_path / "g.csv", index=False)
    mapping = {"id": "qid", "prompt": "q", "response_a": "r1", "response_b": "r2", "label": "pref"}
    df, _ = read_pairs(tmp_path / "g.csv", columns=mapping)
    assert_pairs(df)
    assert df["label"].tolist() == [2, 0, 1, 2] and df["id"].tolist() == ["a", "b", "c", "d"]
    with pytest.raises(DataError, match="named in the column mapping.*found columns") as err:
        read_pairs(tmp_path / "g.csv", columns={**mapping, "prompt": "question"})
    assert_names(err, tmp_path / "g.csv", None, "question")


def test_soft_labels(tmp_path: Path) -> None:
    frame = wsdm_frame().drop(columns="winner")
    probs = {
        "prob_model_a": [0.7, 0.1, 0.3],
        "prob_model_b": [0.2, 0.6, 0.3],
        "prob_tie": [0.1, 0.3, 0.4],
    }
    frame.assign(**probs).to_parquet(tmp_path / "p.parquet")
    df, _ = read_pairs(tmp_path / "p.parquet")
    assert_pairs(df)
    assert df["label"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(df.loc[1, "soft_label"], [0.1, 0.6, 0.3], rtol=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "column"),
    [
        (0.7, 0.2, "prob_model_a/prob_model_b"),
        (-0.1, 1.1, "prob_model_a"),
        (0.5, None, "prob_model_b"),
    ],
)
def test_bad_soft_labels(tmp_path: Path, a: float, b: float | None, column: str) -> None:
    frame = wsdm_frame(2).drop(columns="winner")
    frame.assign(prob_model_a=[0.5, a], prob_model_b=[0.5, b]).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataError, match="probabilities summing to 1") as err:
        read_pairs(tmp_path / "p.parquet")
    assert_names(err, tmp_path / "p.parquet", 1, column)


def test_generic_jsonl_with_turn_lists(tmp_path: Path) -> None:
    rec = {
        "id": 7,
        "prompt": ["a", "b"],
        "response_a": ["1", None],
        "response_b": ["x", "y"],
        "label": 1,
        "fold": 2,
    }
    df, _ = read_pairs(write_jsonl(tmp_path / "g.jsonl", [rec]))
    assert df.loc[0, "response_a"] == ["1", ""] and df.loc[0, "id"] == "7"
    assert df.loc[0, "label"] == 1 and df.loc[0, "fold"] == 2


def test_broken_jsonl_line_and_unsupported_type(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2,\n', encoding="utf-8")
    with pytest.raises(DataError, match="broken JSON line") as err:
        read_pairs(path)
    assert_names(err, path, 1, "*")
    (tmp_path / "g.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        read_pairs(tmp_path / "g.txt")


def test_forced_layout_and_json_array_file(tmp_path: Path) -> None:
    header = ["id", "prompt", "response_a", "response_b", "winner"]
    path = write_csv(tmp_path / "w.csv", header, [["1", "[see note]", "a", "b", "model_a"]])
    # bracketed text is not a JSON turn list: plain text, read as it stands
    assert read_pairs(path)[0].loc[0, "prompt"] == ["[see note]"]
    with pytest.raises(DataError, match="broken JSON"):
        read_pairs(path, format="lmsys")
    recs = [{"id": "j", "prompt": "p", "response_a": "a", "response_b": "b", "winner": "tie"}]
    (tmp_path / "w.json").write_text(json.dumps(recs), encoding="utf-8")
    assert read_pairs(tmp_path / "w.json")[0].loc[0, "label"] == 2


def test_pair_table_round_trips_through_parquet(tmp_path: Path) -> None:
    path = write_lmsys(
        tmp_path / "arena.csv",
        [
            lmsys_row(0, ["q1", "q2"], ["a1", "a2"], ["b1", "b2"], (0, 0, 1)),
            lmsys_row(1, ["q"], ["a"], ["b"], (0, 1, 0)),
        ],
    )
    df, _ = read_pairs(path)
    df.assign(fold=[3, 1]).drop(columns="soft_label").to_parquet(tmp_path / "pairs.parquet")
    back, _ = read_pairs(tmp_path / "pairs.parquet")
    assert_pairs(back)
    assert back.drop(columns="fold").to_dict("list") == df.drop(columns="fold").to_dict("list")
    assert back["fold"].tolist() == [3, 1] and back["source"].tolist() == ["arena"] * 2


# --- read_many -----------------------------------------------------------------------------
def test_read_many_concatenates_and_drops_cross_file_duplicates(tmp_path: Path) -> None:
    wsdm_frame().to_parquet(tmp_path / "one.parquet")
    two = wsdm_frame().assign(id=["x0", "x1", "x2"])
    two.loc[1, TEXT_COLUMNS] = ["question 0", "answer b0", "answer a0"]  # one's row 0, swapped
    two.loc[2, ["prompt"]] = ["new question"]
    pd.concat([two, two.iloc[[2]].assign(id="x3")]).to_parquet(tmp_path / "two.parquet")
    df, reports = read_many([tmp_path / "one.parquet", tmp_path / "two.parquet"])
    assert_pairs(df)
    assert df["id"].tolist() == ["w0", "w1", "w2", "x2", "x3"]  # same-file repeat x3 is kept
    assert df["source"].tolist() == ["one"] * 3 + ["two"] * 2
    assert [r.duplicates_dropped for r in reports] == [0, 2]
    assert [r.rows_kept for r in reports] == [3, 2]


def test_read_many_rejects_an_id_in_two_files(tmp_path: Path) -> None:
    wsdm_frame().to_parquet(tmp_path / "one.parquet")
    wsdm_frame().assign(prompt=["other"] * 3).to_parquet(tmp_path / "two.parquet")
    with pytest.raises(
        DataError, match="unique across files.*'w0' is also in .*one.parquet"
    ) as err:
        read_many([tmp_path / "one.parquet", tmp_path / "two.parquet"])
    assert_names(err, tmp_path / "two.parquet", None, "id")
    assert read_many([])[0].columns.tolist() == list(COLUMNS)


# --- property: anything through the WSDM parquet reader is valid pairs or a DataError -------
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=8),  # surrogates included
    st.sampled_from(["", " ", "\ud800", "a\udfffb", "\ud83d\ude00", "model_a", None]),
)
WINNER = st.sampled_from(["model_a", "model_b", "tie", "model_a", "model_b", "", "x", None])
ROW = st.tuples(TEXT, TEXT, TEXT, TEXT, WINNER, TEXT)  # id, prompt, a, b, winner, model_a


def arrow_text(values: tuple[str | None, ...], as_binary: bool) -> pa.Array:
    """Text as parquet holds it: a binary column, or a string column that is not valid UTF-8."""
    encoded = [None if x is None else x.encode("utf-8", "surrogatepass") for x in values]
    raw = pa.array(encoded, type=pa.binary())
    if as_binary:
        return raw
    return pa.Array.from_buffers(pa.string(), len(raw), raw.buffers(), null_count=raw.null_count)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(ROW, max_size=6),
    messy_ids=st.booleans(),
    as_binary=st.booleans(),
    surrogates=st.sampled_from(["repair", "reject"]),
    empty=st.sampled_from(["keep", "placeholder", "drop", "reject"]),
)
def test_wsdm_parquet_round_trip(
    tmp_path: Path, rows: list, messy_ids: bool, as_binary: bool, surrogates: str, empty: str
) -> None:
    if not messy_ids:
        rows = [(f"r{i}", *row[1:]) for i, row in enumerate(rows)]
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(WSDM_COLUMNS)
    arrays = {n: arrow_text(x, as_binary) for n, x in zip(WSDM_COLUMNS, cols, strict=True)}
    path = tmp_path / "prop.parquet"
    pq.write_table(pa.table(arrays), path)
    try:
        df, report = read_pairs(path, surrogates=surrogates, empty=empty)  # type: ignore[arg-type]
    except DataError as err:
        assert path.name in str(err)
        return
    assert_pairs(df)
    assert report.rows_read == len(rows) == report.rows_kept + report.rows_dropped
    assert set(df["label"]) <= {0, 1, 2}


def test_jsonl_edge_cases_read_as_csv_ones_do(tmp_path: Path, monkeypatch) -> None:
    from arena.data.chunks import iter_pairs

    row = {"id": "1", "prompt": "p", "response_a": "a", "response_b": "b", "winner": "model_a"}
    bom = tmp_path / "bom.jsonl"  # a BOM is accepted, as in csv
    bom.write_text(json.dumps(row) + "\n", encoding="utf-8-sig")
    assert read_pairs(bom)[0].loc[0, "id"] == "1"
    assert next(iter_pairs(bom)).table.loc[0, "id"] == "1"
    true_id = tmp_path / "true_id.jsonl"  # JSON true is no id (it used to read as "True")
    true_id.write_text(json.dumps({**row, "id": True}) + "\n")
    for read in (lambda: read_pairs(true_id), lambda: list(iter_pairs(true_id))):
        with pytest.raises(DataError, match="row 0, column 'id'.*found bool"):
            read()
    empty = tmp_path / "empty.jsonl"  # 0 bytes: an empty file, not missing columns
    empty.write_bytes(b"")
    for read in (lambda: read_pairs(empty), lambda: list(iter_pairs(empty))):
        with pytest.raises(DataError, match="the file is empty"):
            read()

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pd, "read_csv", denied)  # root reads anything: fake the refusal
    csv = tmp_path / "private.csv"
    csv.write_text("id,prompt,response_a,response_b\n")
    with pytest.raises(DataError, match="private.csv.*may read; Permission denied"):
        read_pairs(csv)
