"""Streamed prediction: score a pair file chunk by chunk, so memory stays flat as files grow.

    with OutputFiles(out_dir, "wsdm") as out:            # temp files, renamed when the block ends
        read = ReadOptions.for_file("test.parquet", empty="placeholder")
        streamed = predict_file(ensemble, read, TTA("uncertain"), chunk_rows=8192, out=out)
    streamed.prediction.probs, streamed.labels, streamed.report   # (n, C), (n,), ReadReport

Each chunk (:func:`arena.data.chunks.iter_pairs`) is encoded by every member and scored in
length-sorted token-budget batches (:meth:`Ensemble.score_plain`); only the (n, C)
probabilities, labels and per-row costs of the whole file stay in memory (a few dozen bytes a
row). ``tta=full`` re-scores each chunk swapped right away. ``tta=uncertain`` must see every row
before it can pick the least confident ones: a first pass keeps the plain probabilities, the rows
are chosen over the whole file exactly as :meth:`Ensemble.predict` chooses them, and a second
pass reads the file again, re-scores the chosen rows of each chunk swapped and writes the rows.
With a time budget, the second pass's reading time (measured in the first) is reserved too.

Under torchrun every rank reads the same chunks and scores its share of each
(:class:`Predictor` gathers); only the rank given an :class:`OutputFiles` writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arena.data.chunks import Chunk, ReadOptions, iter_pairs, merge_reports
from arena.data.schema import ReadReport
from arena.inference.ensemble import TTA, Ensemble, Prediction, select_rows
from arena.inference.predictor import Encoded
from arena.inference.submission import (
    PROBS_FILE,
    SUBMISSION_FILE,
    Layout,
    prob_frame,
    submission_frame,
)
from arena.utils.io import atomic_path


@dataclass(frozen=True)
class Streamed:
    """Result of :func:`predict_file`.

    Attributes:
        prediction: probabilities (n, C), plain ones, rows re-scored by TTA and timings (reading
            the file included).
        labels: (n,) int64 labels of the file (-1 where unlabeled).
        report: what the reader changed, over the whole file.
    """

    prediction: Prediction
    labels: np.ndarray
    report: ReadReport


class OutputFiles:
    """``probs.parquet`` and ``submission.csv`` written a chunk at a time into temporary files
    beside their final names, renamed into place when the ``with`` block ends without error
    (:func:`arena.utils.io.atomic_path`); on an error neither file appears.

    Args:
        out_dir: the folder of both files.
        layout: submission layout (``wsdm`` or ``lmsys``).
    """

    def __init__(self, out_dir: Path, layout: Layout):
        self.out_dir, self.layout = Path(out_dir), layout
        self._stack = ExitStack()
        self._parquet: pq.ParquetWriter | None = None
        self._csv: TextIO | None = None
        self.rows = 0

    def __enter__(self) -> OutputFiles:
        self._probs_tmp = self._stack.enter_context(atomic_path(self.out_dir / PROBS_FILE))
        self._csv_tmp = self._stack.enter_context(atomic_path(self.out_dir / SUBMISSION_FILE))
        return self

    def write(self, ids: np.ndarray, probs: np.ndarray) -> None:
        """Append (k,) ids and their (k, C) probabilities (every call, even with k = 0, keeps
        the columns the same)."""
        table = pa.Table.from_pandas(prob_frame(ids, probs), preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._probs_tmp, table.schema)
            self._csv = self._stack.enter_context(self._csv_tmp.open("w", newline=""))
            submission_frame(ids, probs, self.layout).to_csv(self._csv, index=False)
        else:
            submission_frame(ids, probs, self.layout).to_csv(self._csv, index=False, header=False)
        self._parquet.write_table(table.cast(self._parquet.schema))
        self.rows += len(ids)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if kind is None and self._parquet is None:
            raise RuntimeError("no rows were written: call write() at least once")
        self._stack.__exit__(kind, error, trace)


class _Reader:
    """:func:`iter_pairs` over one file, as often as asked, counting the seconds spent reading."""

    def __init__(self, read: ReadOptions, chunk_rows: int):
        self.path, self.chunk_rows, self.read = read.path, chunk_rows, read
        self.seconds = 0.0

    def chunks(self) -> Iterator[Chunk]:
        chunks = iter_pairs(self.path, chunk_rows=self.chunk_rows, **self.read.kwargs())  # type: ignore[arg-type]
        while True:
            began = time.perf_counter()
            chunk = next(chunks, None)
            self.seconds += time.perf_counter() - began
            if chunk is None:
                return
            yield chunk


def _write(out: OutputFiles | None, chunk: Chunk, probs: np.ndarray) -> None:
    if out is not None:
        out.write(chunk.table["id"].to_numpy(), probs)


def _score(
    ensemble: Ensemble, chunk: Chunk, full: bool
) -> tuple[list[Encoded], np.ndarray, np.ndarray, np.ndarray]:
    """Encodings, plain (k, C), final (k, C) probabilities (swap-averaged when ``full``) and the
    (k,) swapped-pass cost of the rows of one chunk."""
    if not len(chunk.table):
        nothing = np.zeros((0, ensemble.n_classes))
        return [], nothing, nothing, np.zeros(0)
    encoded, plain, cost = ensemble.score_plain(chunk.table)
    final = plain
    if full:
        rows = np.arange(len(plain), dtype=np.int64)
        final = (plain + ensemble.score_swapped(encoded, rows)) / 2
    return encoded, plain, final, cost


def predict_file(
    ensemble: Ensemble,
    source: ReadOptions | str | Path,
    tta: TTA | None = None,
    *,
    chunk_rows: int = 8192,
    out: OutputFiles | None = None,
) -> Streamed:
    """Score every row of ``path`` a chunk at a time (see the module docstring).

    Args:
        ensemble: the checkpoints.
        source: a pair file (any layout :func:`arena.data.readers.read_pairs` reads; options
            from :meth:`ReadOptions.for_file`), or the options to read one with.
        tta: swap TTA; None scores as given.
        chunk_rows: rows read, encoded and scored at a time.
        out: where rows go as they are finished (None: nowhere, e.g. on ranks above 0).

    Returns:
        the probabilities ``ensemble.predict(read_pairs(path)[0], tta)`` gives, up to the
        rounding of other batch shapes, with the labels and the read report.
    """
    read = source if isinstance(source, ReadOptions) else ReadOptions.for_file(source)
    tta, reader = tta or TTA(), _Reader(read, chunk_rows)
    start, plain_seconds = time.perf_counter(), 0.0
    plain_parts, final_parts, label_parts, cost_parts, reports = [], [], [], [], []
    for chunk in reader.chunks():
        began = time.perf_counter()
        _, plain, final, cost = _score(ensemble, chunk, tta.mode == "full")
        plain_seconds += time.perf_counter() - began  # the swapped half of "full" included
        if tta.mode != "uncertain":
            _write(out, chunk, final)
        plain_parts.append(plain)
        final_parts.append(final)
        label_parts.append(chunk.table["label"].to_numpy(dtype=np.int64))
        cost_parts.append(cost)
        reports.append(chunk.report)
    plain = np.concatenate(plain_parts)
    plain_seconds += reader.seconds
    probs, chosen = np.concatenate(final_parts), np.zeros(0, dtype=np.int64)
    if tta.mode == "full":
        chosen = np.arange(len(plain), dtype=np.int64)
    elif tta.mode == "uncertain":  # the second pass reads the file again: reserve that time
        left = (tta.time_budget_s or 0.0) - plain_seconds - reader.seconds
        chosen = ensemble.broadcast(select_rows(plain, tta, np.concatenate(cost_parts), left))
        probs = _rescore_pass(ensemble, reader, plain, chosen, out)
    prediction = Prediction(probs, plain, chosen, time.perf_counter() - start, plain_seconds)
    return Streamed(prediction, np.concatenate(label_parts), merge_reports(read.path, reports))


def predict_to_files(
    ensemble: Ensemble,
    source: ReadOptions | str | Path,
    tta: TTA | None,
    out_dir: Path | None,
    *,
    layout: Layout,
    chunk_rows: int = 8192,
) -> Streamed:
    """:func:`predict_file` writing ``probs.parquet`` and ``submission.csv`` into ``out_dir``
    (both renamed into place at the end; None writes nothing, as on ranks above 0)."""
    if out_dir is None:
        return predict_file(ensemble, source, tta, chunk_rows=chunk_rows)
    with OutputFiles(out_dir, layout) as out:
        return predict_file(ensemble, source, tta, chunk_rows=chunk_rows, out=out)


def _rescore_pass(
    ensemble: Ensemble,
    reader: _Reader,
    plain: np.ndarray,
    chosen: np.ndarray,
    out: OutputFiles | None,
) -> np.ndarray:
    """Second pass of ``tta=uncertain``: the (n, C) final probabilities, written chunk by chunk.

    ``chosen`` (sorted rows of the whole file) are re-scored swapped and averaged with ``plain``.
    """
    probs, offset = plain.copy(), 0
    changed = RuntimeError(f"{reader.path} changed between the two passes of tta=uncertain")
    for chunk in reader.chunks():
        n = len(chunk.table)
        if offset + n > len(plain):
            raise changed
        lo, hi = np.searchsorted(chosen, [offset, offset + n])
        if hi > lo:
            encoded = [m.encode(chunk.table) for m in ensemble.members]
            swapped = ensemble.score_swapped(encoded, chosen[lo:hi] - offset)
            probs[chosen[lo:hi]] = (plain[chosen[lo:hi]] + swapped) / 2
        _write(out, chunk, probs[offset : offset + n])
        offset += n
    if offset != len(plain):
        raise changed
    return probs
