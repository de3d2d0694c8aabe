"""Read preference files of every supported layout into pair tables (see :mod:`arena.data.schema`).

Usage::

    table, report = read_pairs("train.parquet")  # layout detected from columns and extension
    table, reports = read_many(["wsdm.parquet", "lmsys.csv"], empty="drop")

Layouts (``format``), detected when ``format="auto"``:

- ``wsdm``: ``id, prompt, response_a, response_b, winner`` (model_a/model_b[/tie]); plain text.
- ``lmsys``: text cells are JSON-encoded lists of turns (``null`` turns become ""); labels
  one-hot in ``winner_model_a, winner_model_b, winner_tie``. Detected by those columns, or in a
  csv by every prompt cell looking like ``[...]`` (unlabeled LMSYS test files).
- ``hh``: Anthropic HH ``chosen``/``rejected`` transcripts. The shared conversation up to and
  including the last ``"\\n\\nAssistant:"`` becomes the prompt (one string); the two final assistant
  turns go to A/B by a coin seeded by ``(seed, id)`` and the label says where ``chosen`` went.
  Ids default to ``hh-<stem>-<row>``.
- ``generic``: anything else, usually after ``columns`` renamed the file's columns to schema
  names. Labels from ``label`` (model_a/model_b/tie or 0/1/2, -1 = unlabeled) and/or soft labels
  from ``prob_model_a, prob_model_b[, prob_tie]`` (label = argmax). List cells are turns.

Files with text but no label columns are unlabeled (label -1). When the prompt and the responses
have different numbers of turns, the shorter lists are padded with "" so that turn ``k`` of each
lines up. A response is *empty* when all its turns are blank; ``empty`` decides what to do with it.
Columns outside the schema are not carried over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from arena.data import validate as v
from arena.data.labels import fold_column, labels_of
from arena.data.schema import (
    COLUMNS,
    LABEL_A,
    LABEL_B,
    TEXT_COLUMNS,
    UNKNOWN,
    UNLABELED,
    DataError,
    EmptyPolicy,
    ReadReport,
    SurrogatePolicy,
    empty_table,
)
from arena.data.validate import EMPTY_PLACEHOLDER, ONE_HOT_COLUMNS

__all__ = [
    "EMPTY_PLACEHOLDER",
    "HH_MARKER",
    "Format",
    "arrow_frame",
    "pairs_from_frame",
    "read_many",
    "read_pairs",
]

Format = Literal["auto", "wsdm", "lmsys", "hh", "generic"]
HH_MARKER = "\n\nAssistant:"
BOM = "\ufeff"
_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
_PARSE_ERRORS = (
    pa.ArrowException,
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    json.JSONDecodeError,
    OSError,  # pyarrow: "Couldn't deserialize thrift" and other broken parquet files
)
_CSV_OPTIONS: dict[str, Any] = {  # every cell as text: "123" stays a string, "" stays ""
    "dtype": object, "keep_default_na": False, "na_filter": False,
    "encoding": "utf-8-sig", "encoding_errors": "surrogateescape",
}  # fmt: skip


def _load_parquet(path: Path) -> pd.DataFrame:
    return arrow_frame(pq.read_table(path))


def arrow_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table -> DataFrame of object columns; string columns holding invalid UTF-8 are
    decoded as :func:`_load_jsonl` decodes text (surrogates kept for the surrogate policy)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            try:
                table.column(i).validate(full=True)
            except pa.ArrowInvalid:  # invalid UTF-8: decode it ourselves, surrogates and all
                table = table.set_column(i, field.name, table.column(i).cast(pa.large_binary()))
    frame = table.to_pandas().astype(object)
    for field in table.schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            cells = [v.decode_bytes(x) if isinstance(x, bytes) else x for x in frame[field.name]]
            frame[field.name] = pd.Series(cells, index=frame.index, dtype=object)
    return frame


def _load_jsonl(path: Path) -> pd.DataFrame:
    text = v.decode_bytes(path.read_bytes()).removeprefix(BOM)  # a BOM, as csv files may start
    if path.suffix == ".json" and text.lstrip().startswith("["):
        records = json.loads(text)
    else:
        # only "\n" ends a record: str.splitlines() would also cut at U+2028, U+0085 and other
        # characters that JSON allows unescaped inside strings
        records = parse_json_lines(text.split("\n"), str(path))
        if not records:
            raise no_json_lines(path)
    return json_objects(records, str(path))


def no_json_lines(path: Path) -> DataError:
    """A JSON-lines file without a record (0 bytes, or blank lines only)."""
    return DataError(str(path), None, "*", "expected one JSON object per line; the file is empty")


def parse_json_lines(lines: Iterable[str], file: str, start: int = 0) -> list[Any]:
    """The JSON value of every non-blank line; the first is data row ``start``."""
    records = []
    for row, line in enumerate((ln for ln in lines if ln.strip()), start):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            msg = f"broken JSON line ({err.msg}); expected one JSON object per line"
            raise v.row_error(file, row, "*", msg) from None
    return records


def json_objects(records: list[Any], file: str, start: int = 0) -> pd.DataFrame:
    """JSON records (data rows ``start, start + 1, ...``) as a frame; each must be an object."""
    for row, record in enumerate(records, start):
        if not isinstance(record, dict):
            found = v.describe(record)
            raise v.row_error(file, row, "*", f"expected a JSON object, found {found}")
    return pd.DataFrame(records, dtype=object)


def _load(path: Path) -> pd.DataFrame:
    """Any supported file -> DataFrame of object columns (str cells may hold surrogates)."""
    if path.suffix not in _SUFFIXES:
        raise DataError(str(path), None, "*", f"unsupported file type; expected {_SUFFIXES}")
    if not path.is_file():
        raise DataError(str(path), None, "*", "expected an existing file; there is none")
    try:
        if path.suffix == ".parquet":
            frame = _load_parquet(path)
        elif path.suffix == ".csv":
            frame = pd.read_csv(path, **_CSV_OPTIONS)
        else:
            frame = _load_jsonl(path)
    except _PARSE_ERRORS as err:
        raise _parse_error(path, err) from None
    except RecursionError:
        raise DataError(str(path), None, "*", "expected JSON nested less deeply") from None
    except UnicodeEncodeError:  # pandas keeps column names as UTF-8 strings
        msg = "expected column names (csv header, JSON keys) in valid UTF-8, found invalid text"
        raise DataError(str(path), None, "*", msg) from None
    return frame.reset_index(drop=True)


def _parse_error(path: Path, err: Exception) -> DataError:
    """A file the parser refuses, with the data row when the parser names a line."""
    line = re.search(r"\bline (\d+)", str(err))
    if isinstance(err, json.JSONDecodeError):
        row = None  # a .json list: the line of the file, not a record
        where = f" (line {err.lineno}, column {err.colno})"
    else:
        row = int(line.group(1)) - 2 if line and path.suffix == ".csv" else None
        where = ""
    msg = f"expected a well-formed {path.suffix[1:]} file{where}; the parser says: {err}"
    if isinstance(err, PermissionError):
        msg = f"expected a file this user may read; {err.strerror or 'permission denied'}"
    return DataError(str(path), row if row is None or row >= 0 else None, "*", msg)


def _rename(frame: pd.DataFrame, columns: dict[str, str] | None, file: str) -> pd.DataFrame:
    """Apply a schema-name -> file-column mapping; file columns it shadows are dropped."""
    if not columns:
        return frame
    v.require_columns(frame, columns.values(), file, " named in the column mapping")
    shadowed = [k for k in columns if k in frame.columns and k not in columns.values()]
    return frame.drop(columns=shadowed).rename(columns={src: k for k, src in columns.items()})


def _is_turn_list(cell: Any) -> bool:
    """A JSON-encoded list, as LMSYS files store their turns (``"[INST] hi [/INST]"`` is text)."""
    if not isinstance(cell, str) or not cell.lstrip().startswith("["):
        return False
    try:
        return isinstance(json.loads(cell), list)
    except (ValueError, RecursionError):
        return False


@dataclasses.dataclass
class PromptKinds:
    """How many non-blank prompt cells are JSON turn lists, and the first file row of each kind."""

    lists: int = 0
    texts: int = 0
    first_list: int | None = None
    first_text: int | None = None

    def add(self, prompts: Iterable[Any], start: int = 0) -> PromptKinds:
        for row, cell in enumerate(prompts, start):
            if not isinstance(cell, str) or not cell.strip():
                continue
            if _is_turn_list(cell):
                self.lists += 1
                self.first_list = row if self.first_list is None else self.first_list
            else:
                self.texts += 1
                self.first_text = row if self.first_text is None else self.first_text
        return self

    def turn_lists(self, file: str) -> bool:
        """Whether the prompts are LMSYS turn lists; a file mixing both kinds is an error naming
        the first row of the rarer kind."""
        if self.lists and self.texts:
            lists = self.lists >= self.texts
            row = self.first_text if lists else self.first_list
            kind = "is plain text" if lists else "is a JSON turn list"
            msg = (
                f"one layout per file: {self.lists} of {self.lists + self.texts} prompts are JSON "
                f"turn lists (LMSYS layout) and this one {kind}; fix the row, or force a layout "
                "with data.format=lmsys (or wsdm, generic)"
            )
            raise v.row_error(file, int(row or 0), "prompt", msg)
        return self.lists > 0


def _detect(frame: pd.DataFrame, path: Path, fmt: Format) -> Format:
    """The layout of ``frame`` from its columns and, for a csv with prompts, whether every
    prompt cell is a JSON turn list."""
    cols = set(frame.columns)
    if fmt != "auto":
        return fmt
    if {"chosen", "rejected"} <= cols:
        return "hh"
    if cols & set(ONE_HOT_COLUMNS[:2]):
        return "lmsys"
    lists = path.suffix == ".csv" and "prompt" in cols
    if lists and PromptKinds().add(frame["prompt"]).turn_lists(str(path)):
        return "lmsys"
    return "wsdm" if "winner" in cols else "generic"


def _ids(frame: pd.DataFrame, file: str, default_prefix: str | None) -> list[str]:
    """The ``id`` column as non-empty strings, or ``<default_prefix>-<row>`` when allowed."""
    if "id" not in frame.columns and default_prefix is not None:
        return [f"{default_prefix}-{i}" for i in range(len(frame))]
    return [v.id_text(value, file, row) for row, value in enumerate(frame["id"].tolist())]


def _split_hh(chosen: str, rejected: str, file: str, row: int) -> tuple[str, str, str]:
    """(prompt, chosen reply, rejected reply) of two transcripts that share a conversation."""
    end = len(chosen)
    while (cut := chosen.rfind(HH_MARKER, 0, end)) >= 0:
        prefix = chosen[: cut + len(HH_MARKER)]
        if rejected.startswith(prefix):
            n = len(prefix)
            return prefix.strip(), chosen[n:].strip(), rejected[n:].strip()
        end = cut + len(HH_MARKER) - 1  # a marker inside the final reply: try the one before
    msg = f"expected chosen and rejected transcripts sharing the conversation up to {HH_MARKER!r}"
    raise v.row_error(file, row, "chosen", msg)


def _coin(seed: int, key: str) -> int:
    """A fair coin that depends only on (seed, key), stable across runs and platforms."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode("utf-8", "surrogatepass"), digest_size=8)
    return digest.digest()[0] & 1


def _hh_text(
    frame: pd.DataFrame, ids: list[str], file: str, seed: int
) -> tuple[dict[str, list[list[str]]], np.ndarray]:
    """HH chosen/rejected -> text columns and labels (0: chosen is A, 1: chosen is B)."""
    text: dict[str, list[list[str]]] = {c: [] for c in TEXT_COLUMNS}
    labels = np.empty(len(frame), dtype=np.int64)
    rows = zip(frame["chosen"].tolist(), frame["rejected"].tolist(), ids, strict=True)
    for row, (chosen, rejected, key) in enumerate(rows):
        good = v.text_cell(chosen, file, row, "chosen", json_list=False)
        bad = v.text_cell(rejected, file, row, "rejected", json_list=False)
        prompt, good_reply, bad_reply = _split_hh("".join(good), "".join(bad), file, row)
        labels[row] = LABEL_B if _coin(seed, key) else LABEL_A
        a, b = (bad_reply, good_reply) if labels[row] == LABEL_B else (good_reply, bad_reply)
        for column, value in zip(TEXT_COLUMNS, (prompt, a, b), strict=True):
            text[column].append([value])
    return text, labels


def _strings(frame: pd.DataFrame, column: str, default: str) -> list[str]:
    """A name column (model, language, source) as str; missing or blank cells get ``default``."""
    if column not in frame.columns:
        return [default] * len(frame)
    try:  # few distinct values (model names, languages): clean each one once
        codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
    except TypeError:  # unhashable cells such as lists
        return [default if v.is_blank(x) else str(x) for x in frame[column].tolist()]
    cleaned = [default if v.is_blank(x) else str(x) for x in uniques] + [default]
    return np.asarray(cleaned, dtype=object)[codes].tolist()


def _names(
    frame: pd.DataFrame, path: Path, layout: Format, source: str | None, file: str
) -> dict[str, list[str]]:
    """The string columns of the table: id, model_a, model_b, language, source."""
    names = {"id": _ids(frame, file, f"hh-{path.stem}" if layout == "hh" else None)}
    for column in ("model_a", "model_b", "language"):
        names[column] = _strings(frame, column, UNKNOWN)
    names["source"] = [source] * len(frame) if source else _strings(frame, "source", path.stem)
    return names


def _content(
    frame: pd.DataFrame, layout: Format, ids: list[str], file: str, seed: int, labeled: bool | None
) -> tuple[dict[str, list[list[str]]], np.ndarray, list[np.ndarray | None]]:
    """Text turn lists, hard labels (n,) and soft labels of the layout."""
    soft: list[np.ndarray | None] = [None] * len(frame)
    hard: np.ndarray | None
    if layout == "hh":
        text, hard = _hh_text(frame, ids, file, seed)
    else:
        text = {c: v.text_column(frame[c], file, layout == "lmsys") for c in TEXT_COLUMNS}
        hard, soft = labels_of(frame, file, labeled)
    if hard is None or labeled is False:
        return text, np.full(len(frame), UNLABELED, dtype=np.int64), [None] * len(frame)
    return text, hard, soft


def _table(
    names: dict[str, list[str]],
    text: dict[str, list[list[str]]],
    hard: np.ndarray,
    soft: list[np.ndarray | None],
    fold: np.ndarray,
) -> pd.DataFrame:
    """Assemble the pair table in :data:`COLUMNS` order (object columns, int labels/folds)."""
    columns: dict[str, list[Any]] = {**names, **text, "soft_label": soft}
    table = pd.DataFrame({c: pd.Series(x, dtype=object) for c, x in columns.items()})
    table["label"] = hard.astype(np.int64)
    table["fold"] = fold.astype(np.int64)
    return table[list(COLUMNS)]


def read_pairs(
    path: str | Path,
    *,
    format: Format = "auto",
    columns: dict[str, str] | None = None,
    source: str | None = None,
    surrogates: SurrogatePolicy = "repair",
    empty: EmptyPolicy = "keep",
    seed: int = 0,
    labeled: bool | None = None,
) -> tuple[pd.DataFrame, ReadReport]:
    """Read one file into a pair table.

    Args:
        path: a ``.parquet``, ``.csv``, ``.jsonl`` or ``.json`` (list of objects) file.
        format: layout (see the module docstring); ``"auto"`` detects it.
        columns: schema name -> column name in the file, applied before anything else.
        source: the ``source`` of every row; default the file's ``source`` column if it has
            one (blank cells fall back to the stem), else the file stem.
        surrogates: ``"repair"`` lone surrogates to U+FFFD (counted) or ``"reject"`` them.
        empty: empty responses are kept as "", get :data:`EMPTY_PLACEHOLDER` in every turn,
            drop their row (counted) or are an error.
        seed: seeds the per-row A/B coin of HH files.
        labeled: None reads labels when there are any; True requires them; False reads the
            file as unlabeled (label -1) whatever it holds.

    Returns:
        The pair table (columns :data:`~arena.data.schema.COLUMNS`) and its :class:`ReadReport`.

    Raises:
        DataError: naming the file, 0-based data row and column of the first problem.
    """
    path = Path(path)
    frame = _load(path)
    return pairs_from_frame(
        frame, path, format=format, columns=columns, source=source, surrogates=surrogates,
        empty=empty, seed=seed, labeled=labeled,
    )  # fmt: skip


def pairs_from_frame(
    frame: pd.DataFrame,
    path: str | Path,
    *,
    format: Format = "auto",
    columns: dict[str, str] | None = None,
    source: str | None = None,
    surrogates: SurrogatePolicy = "repair",
    empty: EmptyPolicy = "keep",
    seed: int = 0,
    labeled: bool | None = None,
) -> tuple[pd.DataFrame, ReadReport]:
    """:func:`read_pairs` of a frame already loaded from ``path`` (rows numbered from 0 in it);
    :mod:`arena.data.chunks` feeds it one chunk of a file at a time."""
    path = Path(path)
    file = str(path)
    frame = _rename(frame, columns, file)
    layout = _detect(frame, path, format)
    required = ("chosen", "rejected") if layout == "hh" else ("id", *TEXT_COLUMNS)
    v.require_columns(frame, required, file)
    names, repaired = _names(frame, path, layout, source, file), 0
    for column, values in names.items():
        names[column], count = v.fix_strings(values, surrogates, file, column)
        repaired += count
    v.check_unique_ids(pd.Series(names["id"], dtype=object), file)
    text, hard, soft = _content(frame, layout, names["id"], file, seed, labeled)
    v.align_turns(text)
    for column in TEXT_COLUMNS:
        text[column], count = v.fix_surrogates(text[column], surrogates, file, column)
        repaired += count
    n = len(frame)
    fold = fold_column(frame["fold"], file) if "fold" in frame.columns else np.full(n, -1)
    table = _table(names, text, hard, soft, fold)
    table, n_empty, dropped = v.apply_empty_policy(table, empty, file)
    return table, ReadReport(file, n, len(table), repaired, n_empty, dropped)


PairKey = tuple[tuple[str, ...], ...]


def _pair_keys(table: pd.DataFrame, swapped: bool) -> list[PairKey]:
    """One key per row identifying (prompt, A, B), or (prompt, B, A) when ``swapped``.

    Tuples, not joined strings: no separator character can make two different pairs collide.
    """
    a, b = ("response_b", "response_a") if swapped else ("response_a", "response_b")
    rows = zip(table["prompt"], table[a], table[b], strict=True)
    return [tuple(tuple(turns) for turns in row) for row in rows]


def read_many(paths: Sequence[str | Path], **kw: Any) -> tuple[pd.DataFrame, list[ReadReport]]:
    """Read several files (``**kw`` as in :func:`read_pairs`) into one pair table.

    A pair already read from an earlier file (same prompt and responses, either way round) is
    dropped and counted in the later file's ``duplicates_dropped``; repeats within one file are
    kept (they may be different models giving the same text). The remaining ids must be unique
    across files, so a row that appears verbatim in two files is a dropped duplicate, not an error.

    Raises:
        DataError: an id in two files (both named), or any error of :func:`read_pairs`.
    """
    seen_pairs: set[PairKey] = set()
    seen_ids: dict[str, str] = {}
    tables, reports = [], []
    for path in paths:
        table, report = read_pairs(path, **kw)
        keys = zip(_pair_keys(table, False), _pair_keys(table, True), strict=True)
        dup = np.array([k in seen_pairs or k_swap in seen_pairs for k, k_swap in keys], dtype=bool)
        table = table.loc[~dup].reset_index(drop=True)
        seen_pairs.update(_pair_keys(table, False))
        for key in table["id"]:
            if key in seen_ids:
                msg = f"ids must be unique across files; id {key!r} is also in {seen_ids[key]}"
                raise DataError(report.file, None, "id", msg)
            seen_ids[key] = report.file
        n_dup = int(dup.sum())
        reports.append(dataclasses.replace(report, rows_kept=len(table), duplicates_dropped=n_dup))
        tables.append(table)
    if not tables:
        return empty_table(), []
    return pd.concat(tables, ignore_index=True), reports
