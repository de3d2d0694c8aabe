"""What ``python -m arena.predict`` writes: submission layouts, the probability table, metrics.

Layouts of ``submission.csv``:

- ``wsdm``: ``id,winner`` with ``model_a`` / ``model_b`` (the larger of ``p_A`` and ``p_B``; a
  tie probability, if any, is ignored: that competition has no ties);
- ``lmsys``: ``id,winner_model_a,winner_model_b,winner_tie`` probabilities (``winner_tie`` is 0
  for a 2-class model).

:func:`submission_layout` follows the layout the input file was read in
(:func:`arena.data.chunks.file_layout`): ``lmsys`` for a file with ``winner_model_*`` columns or a
csv whose prompts are JSON-encoded turn lists (the LMSYS test file), ``wsdm`` for anything else.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from arena.data.labels import log_loss
from arena.data.schema import LABEL_NAMES
from arena.utils.io import atomic_path, write_json, write_parquet

Layout = Literal["wsdm", "lmsys"]
LMSYS_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")
SUBMISSION_FILE, PROBS_FILE, SUMMARY_FILE = "submission.csv", "probs.parquet", "summary.json"
OUTPUT_FILES = (SUMMARY_FILE, SUBMISSION_FILE, PROBS_FILE)  # the set, its completeness mark first


def submission_layout(layout: str) -> Layout:
    """The submission layout of an input file read in ``layout`` (see the module doc)."""
    return "lmsys" if layout == "lmsys" else "wsdm"


def prob_frame(ids: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """``id`` + ``prob_model_a, prob_model_b[, prob_tie]`` of (n,) ids and (n, C) probabilities."""
    frame = pd.DataFrame({"id": np.asarray(ids, dtype=object)})
    for c in range(probs.shape[1]):
        frame[f"prob_{LABEL_NAMES[c]}"] = probs[:, c]
    return frame


def submission_frame(ids: np.ndarray, probs: np.ndarray, layout: Layout) -> pd.DataFrame:
    """The submission table of (n,) ids and (n, C) probabilities in ``layout``."""
    frame = pd.DataFrame({"id": np.asarray(ids, dtype=object)})
    if layout == "wsdm":
        frame["winner"] = np.where(probs[:, 0] >= probs[:, 1], "model_a", "model_b")
        return frame
    if layout != "lmsys":
        raise ValueError(f"submission layout must be wsdm or lmsys, got {layout!r}")
    for c, column in enumerate(LMSYS_COLUMNS):
        frame[column] = probs[:, c] if c < probs.shape[1] else 0.0
    return frame


def _counts(values: np.ndarray, n_classes: int) -> dict[str, int]:
    counts = np.bincount(values, minlength=n_classes)
    return {LABEL_NAMES[c]: int(counts[c]) for c in range(len(counts))}


def evaluate(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Metrics of (n, C) probabilities against (n,) labels (-1 = unlabeled).

    Returns:
        ``pred_counts`` (argmax per class) always; with labelled rows also ``acc``, ``log_loss``
        (true-class probability clipped to [1e-15, 1], as Kaggle does), ``label_counts`` and
        ``n_labeled``; ``n_unscorable`` counts labels the model has no class for (a tie under a
        2-class model), left out of the metrics.
    """
    n_classes = probs.shape[1]
    labels = np.asarray(labels, dtype=np.int64)
    out: dict[str, Any] = {"pred_counts": _counts(probs.argmax(1), n_classes)}
    ok = (labels >= 0) & (labels < n_classes)
    if (labels >= n_classes).any():
        out["n_unscorable"] = int((labels >= n_classes).sum())
    if ok.any():
        truth = labels[ok]
        out.update(
            n_labeled=int(ok.sum()),
            acc=float((probs[ok].argmax(1) == truth).mean()),
            log_loss=log_loss(probs[ok], truth),
            label_counts=_counts(truth, n_classes),
        )
    return out


def compare_probs(
    probs: np.ndarray, other: np.ndarray, labels: np.ndarray, name: str
) -> dict[str, Any]:
    """Two (n, C) probability arrays of the same rows side by side.

    Returns:
        ``max_abs_prob_diff`` and, for labelled rows, ``acc`` and ``log_loss`` of ``probs`` next
        to ``<name>_acc`` and ``<name>_log_loss`` of ``other``.
    """
    ours, theirs = evaluate(probs, labels), evaluate(other, labels)
    out: dict[str, Any] = {
        "max_abs_prob_diff": float(np.abs(probs - other).max()) if len(probs) else 0.0
    }
    for key in ("acc", "log_loss"):
        if key in ours:
            out |= {key: ours[key], f"{name}_{key}": theirs[key]}
    return out


def quantized_block(
    bits: int, probs: np.ndarray, reference: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Quantized (n, C) probabilities against full-precision ones on the same (n,) labels.

    Returns:
        ``bits``, ``max_abs_prob_diff`` and, for labelled rows, ``acc``, ``log_loss``,
        ``reference_acc``, ``reference_log_loss``, ``delta_acc``, ``delta_log_loss``
        (quantized minus reference).
    """
    block = {"bits": int(bits), **compare_probs(probs, reference, labels, "reference")}
    for key in ("acc", "log_loss"):
        if key in block:
            block[f"delta_{key}"] = block[key] - block[f"reference_{key}"]
    return block


def set_aside_previous(out_dir: Path) -> None:
    """Before a predict writes into ``out_dir``: an earlier run's outputs move to
    ``out_dir/previous/`` (replacing what was there; ``summary.json``, which marks a set
    complete, first) and temporary files a killed run left are removed, so that a run that fails
    leaves no complete-looking result behind."""
    for tmp in out_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    present = [out_dir / f for f in OUTPUT_FILES if (out_dir / f).exists()]
    if not present:
        return
    previous = out_dir / "previous"
    shutil.rmtree(previous, ignore_errors=True)
    previous.mkdir()
    for path in present:
        os.replace(path, previous / path.name)


def write_outputs(
    out_dir: Path, ids: np.ndarray, probs: np.ndarray, layout: Layout, summary: dict[str, Any]
) -> None:
    """Write ``submission.csv``, ``probs.parquet`` and ``summary.json`` atomically."""
    with atomic_path(out_dir / SUBMISSION_FILE) as tmp:
        submission_frame(ids, probs, layout).to_csv(tmp, index=False)
    write_parquet(out_dir / PROBS_FILE, prob_frame(ids, probs))
    write_json(out_dir / SUMMARY_FILE, summary)
