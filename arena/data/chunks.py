"""Read a pair file a chunk of rows at a time, with the checks of :func:`read_pairs`.

Usage::

    for chunk in iter_pairs("test.parquet", chunk_rows=4096, empty="placeholder"):
        chunk.table      # pair table of file rows chunk.start .. chunk.start + chunk.rows - 1
        chunk.report     # ReadReport of this chunk; merge_reports(...) adds them up

Parquet is read by record batches (pyarrow ``iter_batches``), csv by pandas chunks, jsonl line by
line; only a ``.json`` list of objects is parsed whole (then cut into chunks). Every chunk goes
through :func:`arena.data.readers.pairs_from_frame`, so the concatenated chunks equal
``read_pairs`` of the file and a bad row raises the same :class:`DataError`, with its row counted
from the start of the file. What spans chunks:

- ids must be unique over the file: an index of 64-bit id hashes (16 bytes a row, not the ids)
  names both rows of the first repeat;
- the layout is decided for the whole file before the first chunk (:func:`file_layout`: from
  the columns, and for a csv of unlabeled prompts from every prompt cell);
- HH files without ids get ``hh-<stem>-<row>`` from the file row, as ``read_pairs`` gives them.

With several problems in one file, ``read_pairs`` reports the first by check (ids before text),
this reader the first by chunk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from arena.data import validate as v
from arena.data.readers import (
    _CSV_OPTIONS,
    _PARSE_ERRORS,
    _SUFFIXES,
    BOM,
    Format,
    PromptKinds,
    _detect,
    _load,
    _parse_error,
    _rename,
    arrow_frame,
    json_objects,
    no_json_lines,
    pairs_from_frame,
    parse_json_lines,
)
from arena.data.schema import DataError, EmptyPolicy, ReadReport, SurrogatePolicy

__all__ = ["Chunk", "ReadOptions", "file_layout", "iter_pairs", "merge_reports"]

_DUPLICATE_ROWS = re.compile(r"rows (\d+) and (\d+)")


@dataclass(frozen=True)
class Chunk:
    """One chunk of a pair file.

    Attributes:
        table: its pair table (rows dropped by ``empty="drop"`` are missing).
        start: file row (0-based, header excluded) of its first row.
        rows: file rows it covers, dropped ones included.
        report: what the reader changed in it.
    """

    table: pd.DataFrame
    start: int
    rows: int
    report: ReadReport


def merge_reports(file: str, reports: list[ReadReport]) -> ReadReport:
    """One :class:`ReadReport` for a whole file from those of its chunks."""
    fields = [f.name for f in dataclasses.fields(ReadReport) if f.name != "file"]
    return ReadReport(file, *(sum(getattr(r, name) for r in reports) for name in fields))


def _frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Raw chunks of at most ``chunk_rows`` rows (object columns, rows numbered from 0)."""
    if path.suffix == ".parquet":
        # without pre-buffering pages are read as batches need them: memory stays bounded in a
        # large row group instead of holding its whole column chunks
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        for batch in parquet.iter_batches(batch_size=chunk_rows, use_threads=False):
            yield arrow_frame(pa.Table.from_batches([batch]))
        if parquet.metadata.num_rows == 0:
            yield arrow_frame(parquet.schema_arrow.empty_table())
    elif path.suffix == ".csv":
        with pd.read_csv(path, chunksize=chunk_rows, **_CSV_OPTIONS) as reader:
            yield from (frame.reset_index(drop=True) for frame in reader)
    elif path.suffix == ".jsonl":
        yield from _jsonl_frames(path, chunk_rows)
    else:  # a .json list cannot be cut before it is parsed
        frame = _load(path)
        for s in range(0, max(len(frame), 1), chunk_rows):
            yield frame.iloc[s : s + chunk_rows].reset_index(drop=True)


def _jsonl_frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """JSON lines as ``read_pairs`` splits them (at ``\\n`` only; blank lines skipped)."""
    lines: list[str] = []
    row = 0
    with path.open("rb") as f:
        for raw in f:
            line = v.decode_bytes(raw).removesuffix("\n")
            line = line.removeprefix(BOM) if row == 0 and not lines else line
            if not line.strip():
                continue
            lines.append(line)
            if len(lines) == chunk_rows:
                yield json_objects(parse_json_lines(lines, str(path), row), str(path), row)
                row, lines = row + len(lines), []
    if row == 0 and not lines:
        raise no_json_lines(path)
    if lines:
        yield json_objects(parse_json_lines(lines, str(path), row), str(path), row)


def _shifted(err: DataError, start: int) -> DataError:
    """The same error with its rows (and those named in its message) counted from the file start."""
    if not isinstance(err.row, int) or start == 0:
        return err
    shift = lambda m: f"rows {int(m[1]) + start} and {int(m[2]) + start}"  # noqa: E731
    return DataError(
        err.file, err.row + start, err.column, _DUPLICATE_ROWS.sub(shift, err.expected)
    )


class _SeenIds:
    """Sorted 64-bit hashes of the ids read so far and the file row of each."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.rows = np.zeros(0, dtype=np.int64)

    def add(self, ids: list[str], start: int) -> None:
        """Add the ids of file rows ``start, start + 1, ...``; raise on one seen before."""
        digests = [hashlib.blake2b(i.encode("utf-8", "surrogatepass"), digest_size=8) for i in ids]
        new = np.array([int.from_bytes(d.digest(), "little") for d in digests], dtype=np.uint64)
        pos = np.minimum(np.searchsorted(self.hashes, new), max(len(self.hashes) - 1, 0))
        if len(self.hashes) and (hit := self.hashes[pos] == new).any():
            k = int(np.flatnonzero(hit)[0])
            first, row = int(self.rows[pos[k]]), start + k
            msg = f"duplicate id {ids[k]!r}: rows {first} and {row} share it; expected unique ids"
            raise v.row_error(self.file, row, "id", msg)
        hashes = np.concatenate([self.hashes, new])
        rows = np.concatenate([self.rows, np.arange(start, start + len(ids), dtype=np.int64)])
        order = np.argsort(hashes, kind="stable")
        self.hashes, self.rows = hashes[order], rows[order]


def _checked(path: Path, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``frames`` with the parser's errors as :class:`DataError` s naming the file."""
    while True:
        try:
            frame = next(frames, None)
        except _PARSE_ERRORS as err:
            raise _parse_error(path, err) from None
        if frame is None:
            return
        yield frame


def file_layout(
    path: str | Path,
    *,
    format: Format = "auto",
    columns: dict[str, str] | None = None,
    chunk_rows: int = 8192,
) -> Format:
    """The layout :func:`iter_pairs` and ``read_pairs`` read ``path`` in: ``format`` unless
    ``"auto"``, else from its columns and, for a csv of prompts without label columns, from every
    prompt cell in the file (all JSON turn lists: ``lmsys``; a mix is an error naming a row).

    Raises:
        DataError: the file is unreadable or mixes layouts.
    """
    if format != "auto":
        return format
    path, file = Path(path), str(path)
    if path.suffix not in _SUFFIXES:
        raise DataError(file, None, None, f"unsupported file type; expected {_SUFFIXES}")
    first = next(_checked(path, _frames(path, chunk_rows)), None)
    if first is None:
        raise DataError(file, None, "*", "expected a header or schema; the file has none")
    head = _rename(first.iloc[:0], columns, file)
    layout = _detect(head, path, "auto")
    if path.suffix != ".csv" or "prompt" not in head.columns or layout in ("hh", "lmsys"):
        return layout
    source = (columns or {}).get("prompt", "prompt")
    kinds, start = PromptKinds(), 0
    with pd.read_csv(path, usecols=[source], chunksize=chunk_rows, **_CSV_OPTIONS) as reader:
        for frame in _checked(path, iter(reader)):
            kinds.add(frame[source], start)
            start += len(frame)
    return "lmsys" if kinds.turn_lists(file) else layout


def iter_pairs(
    path: str | Path,
    *,
    chunk_rows: int = 8192,
    format: Format = "auto",
    columns: dict[str, str] | None = None,
    source: str | None = None,
    surrogates: SurrogatePolicy = "repair",
    empty: EmptyPolicy = "keep",
    seed: int = 0,
    labeled: bool | None = None,
) -> Iterator[Chunk]:
    """Read ``path`` in chunks of ``chunk_rows`` rows (arguments as in :func:`read_pairs`).

    Yields:
        :class:`Chunk` s in file order; a file without rows gives one empty chunk.

    Raises:
        DataError: naming the file, the file row and the column of the first bad row.
        ValueError: ``chunk_rows`` below 1.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    path, file = Path(path), str(path)
    if path.suffix not in _SUFFIXES:
        raise DataError(file, None, None, f"unsupported file type; expected {_SUFFIXES}")
    layout = file_layout(path, format=format, columns=columns, chunk_rows=chunk_rows)
    seen, start = _SeenIds(file), 0
    for raw in _checked(path, _frames(path, chunk_rows)):
        try:
            frame = _rename(raw, columns, file)
            if layout == "hh" and "id" not in frame.columns:
                frame["id"] = [f"hh-{path.stem}-{start + i}" for i in range(len(frame))]
            table, report = pairs_from_frame(
                frame, path, format=layout, source=source, surrogates=surrogates,
                empty="keep", seed=seed, labeled=labeled,
            )  # fmt: skip
        except DataError as err:
            raise _shifted(err, start) from None
        seen.add(table["id"].tolist(), start)  # before empties, as read_pairs checks ids first
        try:
            table, n_empty, dropped = v.apply_empty_policy(table, empty, file)
        except DataError as err:
            raise _shifted(err, start) from None
        report = dataclasses.replace(
            report, rows_kept=len(table), empty_responses=n_empty, rows_dropped=dropped
        )
        yield Chunk(table, start, len(frame), report)
        start += len(frame)


@dataclass(frozen=True)
class ReadOptions:
    """How a command reads one pair file, whole (``read_pairs``) or in chunks (``iter_pairs``):
    the layout is decided once for the whole file, so the reader and the submission agree.

    Attributes:
        path: the file.
        format: its layout (never ``auto`` once built by :meth:`for_file`).
        columns: a column mapping for ``generic`` files.
        surrogates, empty: policies for broken unicode and empty cells.
    """

    path: str
    format: Format
    columns: dict[str, str] | None = None
    surrogates: SurrogatePolicy = "repair"
    empty: EmptyPolicy = "keep"

    @classmethod
    def for_file(
        cls,
        path: str | Path,
        *,
        format: Format = "auto",
        columns: dict[str, str] | None = None,
        surrogates: SurrogatePolicy = "repair",
        empty: EmptyPolicy = "keep",
        every_row: bool = False,
    ) -> ReadOptions:
        """Checked options for ``path``, its layout resolved from the file.

        Args:
            every_row: the output needs one row per input row (a submission), so
                ``empty="drop"`` is refused.

        Raises:
            FileNotFoundError: ``path`` is not a file.
            ValueError: ``empty="drop"`` where every row is needed.
            DataError: the file is unreadable or mixes layouts.
        """
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} is not a file")
        if every_row and empty == "drop":
            raise ValueError("a submission needs every row: data.empty=drop is not allowed here")
        layout = file_layout(path, format=format, columns=columns)
        return cls(str(path), layout, columns, surrogates, empty)

    def kwargs(self) -> dict[str, object]:
        """Keywords of ``read_pairs`` / ``iter_pairs`` (all but the path)."""
        return {
            "format": self.format,
            "columns": self.columns,
            "surrogates": self.surrogates,
            "empty": self.empty,
        }
