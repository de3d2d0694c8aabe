"""Soft-label unlabeled pairs with a checkpoint or an ensemble, for the next semi-supervised round.

Usage:
    python -m arena.pseudo_label ckpt=<round-0 run dir> data.unlabeled_file=unlabeled.parquet \
        output_file=data/pseudo_r1.parquet round=1
    python -m arena.pseudo_label ckpt=[<run0>,<run1>] weights=[2,1] tta=full min_confidence=0.6 \
        data.unlabeled_file=unlabeled.parquet output_file=data/pseudo_r2.parquet round=2
    python -m arena.train experiment=pseudo_label_tiny round=1 init_from=<round-0 run dir> \
        data.train_files=[official.parquet,data/pseudo_r1.parquet]       # the next round

Reads any supported pair file (labels ignored), predicts with the ensemble (+ swap TTA) and writes
atomically ``output_file``: ``id, prompt, response_a, response_b, model_a, model_b, language``,
the soft targets ``prob_model_a, prob_model_b[, prob_tie]`` (each row sums to 1), ``source``
(default ``pseudo_r<round>``) and ``round``; ``data.train_files`` reads it back as soft-labelled
pairs. Beside it, ``<stem>.summary.json``: rows, rows dropped by ``min_confidence``, class balance,
mean confidence, ``one_class`` (every row favours one class: a collapsed labeller), checkpoints,
weights, TTA, ``informative`` and ``reason``. Labels that say nothing (:func:`check_informative`:
near-uniform, or nearly all one class) are refused: an error with the numbers, no file written
(the summary goes to the run dir ``output_dir`` instead); ``allow_uninformative=true`` writes them
with a warning. ``binary=true`` turns a 3-class labeller's probabilities into binary soft labels
(tie mass dropped, ``p_A, p_B`` renormalised). Hydra's ``.hydra/`` and log go to ``output_dir``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from arena.data.readers import read_pairs
from arena.data.schema import LABEL_NAMES, ReadReport
from arena.distributed import resolve_device
from arena.inference.ensemble import TTA, Ensemble, Prediction
from arena.models.quant import quantization_from_bits, torch_dtype
from arena.utils.config import register_resolvers
from arena.utils.io import write_json, write_parquet

register_resolvers()
log = logging.getLogger(__name__)

PAIR_COLUMNS = ("id", "prompt", "response_a", "response_b", "model_a", "model_b", "language")


def read_unlabeled(cfg: DictConfig) -> tuple[pd.DataFrame, ReadReport]:
    """The pair table of ``cfg.data.unlabeled_file``, read as unlabeled whatever it holds."""
    data = cfg.data
    if not Path(data.unlabeled_file).is_file():
        raise FileNotFoundError(f"data.unlabeled_file={data.unlabeled_file} is not a file")
    columns = OmegaConf.to_container(data.columns) if data.columns else None
    return read_pairs(
        data.unlabeled_file,
        format=data.format,
        columns=columns,  # type: ignore[arg-type]
        surrogates=data.surrogates,
        empty=data.empty,
        labeled=False,
    )


def soft_label_table(
    table: pd.DataFrame, probs: np.ndarray, round_: int, source: str
) -> pd.DataFrame:
    """The pair columns of ``table`` with soft targets, ``source`` and ``round``.

    Args:
        table: pair table (n rows).
        probs: (n, C) probabilities, C = 2 or 3, each row summing to 1.
        round_: the round the labels are for; source: the ``source`` of every row.
    """
    out = table[list(PAIR_COLUMNS)].copy()
    for k in range(probs.shape[1]):
        out[f"prob_{LABEL_NAMES[k]}"] = probs[:, k].astype(np.float64)
    out["source"] = source
    out["round"] = np.full(len(out), round_, dtype=np.int64)
    return out.reset_index(drop=True)


def label_balance(probs: np.ndarray) -> dict[str, Any]:
    """Class balance and confidence of (n, C) soft labels: the mean probability and the share of
    rows whose top class is each class, and the mean top probability."""
    names = LABEL_NAMES[: probs.shape[1]]
    if not len(probs):
        return {"mean_prob": {}, "argmax_share": {}, "mean_confidence": None}
    top = probs.argmax(axis=1)
    return {
        "mean_prob": {n: float(probs[:, k].mean()) for k, n in enumerate(names)},
        "argmax_share": {n: float((top == k).mean()) for k, n in enumerate(names)},
        "mean_confidence": float(probs.max(axis=1).mean()),
    }


def drop_tie(probs: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, 2): ``p_A, p_B`` renormalised without the tie mass (binary rounds labelled
    by a 3-class model); (n, 2) is returned as it is."""
    if probs.shape[1] == 2:
        return probs
    pair = probs[:, :2]
    return pair / np.clip(pair.sum(axis=1, keepdims=True), 1e-12, None)


def confident_rows(probs: np.ndarray, min_confidence: float | None) -> np.ndarray:
    """(n,) bool: rows whose top probability reaches ``min_confidence`` (all when None)."""
    if min_confidence is None:
        return np.ones(len(probs), dtype=bool)
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must lie in [0, 1] or be null, got {min_confidence}")
    return probs.max(axis=1) >= min_confidence


class UninformativeLabels(ValueError):
    """Soft labels a collapsed labeller would give: refused, nothing written."""


def check_informative(
    probs: np.ndarray, uniform_margin: float, max_class_share: float
) -> tuple[bool, str | None]:
    """Whether (n, C) soft labels carry information, and if not, why (with the numbers).

    Two ways a labeller that collapsed to the prior shows: every row near ``1/C`` (the mean top
    probability within ``uniform_margin`` of ``1/C``), or one class the top class of more than
    ``max_class_share`` of the rows. ``one_class`` alone misses the first (0.50/0.50 rows still
    split their argmax by noise).

    Args:
        probs: (n, C) probabilities, C = 2 or 3.
        uniform_margin: smallest mean top probability above ``1/C`` that counts, in [0, 1).
        max_class_share: largest share of rows one class may top, in (0, 1].

    Returns:
        ``(True, None)``, or ``(False, reason)``; no rows at all is not informative.

    Raises:
        ValueError: a threshold outside its range.
    """
    if not 0.0 <= uniform_margin < 1.0 or not 0.0 < max_class_share <= 1.0:
        raise ValueError(
            f"uniform_margin={uniform_margin} must lie in [0, 1) and max_class_share="
            f"{max_class_share} in (0, 1]"
        )
    n, c = probs.shape
    if n == 0:
        return False, "no rows to label"
    reasons = []
    top = float(probs.max(axis=1).mean())
    if top < 1.0 / c + uniform_margin:
        reasons.append(
            f"near-uniform: mean top probability {top:.4f} is within uniform_margin="
            f"{uniform_margin} of 1/C = {1.0 / c:.4f}"
        )
    shares = np.bincount(probs.argmax(axis=1), minlength=c) / n  # (C,)
    k = int(shares.argmax())
    if shares[k] > max_class_share:
        reasons.append(
            f"one class: {LABEL_NAMES[k]} is the top class of {shares[k]:.1%} of rows, above "
            f"max_class_share={max_class_share:.1%}"
        )
    if not reasons:
        return True, None
    return False, f"{'; '.join(reasons)} ({n} rows, {c} classes)"


def _as_list(value: Any) -> list[Any]:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def _check(cfg: DictConfig) -> Path:
    """Refuse bad options before anything is loaded; returns the output path."""
    out = Path(cfg.output_file)
    if out.suffix != ".parquet":
        raise ValueError(f"output_file={out} must end in .parquet")
    if int(cfg.round) < 1:
        raise ValueError(f"round={cfg.round}: soft labels are for round 1 or later")
    confident_rows(np.zeros((0, 2)), cfg.min_confidence)  # raises on a value outside [0, 1]
    check_informative(np.zeros((0, 2)), cfg.uniform_margin, cfg.max_class_share)  # ranges
    return out


def _summary(
    cfg: DictConfig, ensemble: Ensemble, result: Prediction, probs: np.ndarray, keep: np.ndarray
) -> dict[str, Any]:
    """The sidecar summary: rows, filter, class balance, confidence, labellers, TTA."""
    tie_dropped = probs.shape[1] < ensemble.n_classes
    summary: dict[str, Any] = {
        "round": int(cfg.round),
        "source": cfg.source,
        "unlabeled_file": str(cfg.data.unlabeled_file),
        "output_file": str(cfg.output_file),
        "rows_labelled": len(probs),
        "rows_written": int(keep.sum()),
        "min_confidence": cfg.min_confidence,
        "rows_dropped_low_confidence": int((~keep).sum()),
        "n_classes": probs.shape[1],
        "model_n_classes": ensemble.n_classes,
        "mean_tie_dropped": float(result.probs[:, 2].mean()) if tie_dropped else None,
        **label_balance(probs[keep]),
        "ckpt": [str(p) for p in _as_list(cfg.ckpt)],
        "weights": ensemble.weights.tolist(),
        "combine": ensemble.how,
        "tta": asdict(TTA(cfg.tta, cfg.uncertain_fraction, cfg.time_budget_s, cfg.uncertainty)),
        "tta_rescored": int(len(result.rescored)),
        "predict_seconds": result.seconds,
        "run_dir": str(cfg.output_dir),
    }
    summary["one_class"] = bool(keep.any()) and max(summary["argmax_share"].values()) == 1.0
    # judged on every labelled row: the confidence filter would hide a collapsed labeller
    informative, reason = check_informative(probs, cfg.uniform_margin, cfg.max_class_share)
    summary.update(informative=informative, reason=reason)
    summary["allow_uninformative"] = bool(cfg.allow_uninformative)
    return summary


def _refuse_uninformative(cfg: DictConfig, summary: dict[str, Any], write: bool) -> None:
    """Raise :class:`UninformativeLabels` for labels that say nothing, after writing the summary
    to the run dir (never beside ``output_file``); with ``allow_uninformative`` only warn."""
    if summary["informative"]:
        return
    if cfg.allow_uninformative:
        log.warning("writing uninformative soft labels (allow_uninformative=true): %s",
                    summary["reason"])  # fmt: skip
        return
    if write:
        write_json(Path(cfg.output_dir) / "summary.json", summary)
    raise UninformativeLabels(
        f"refusing to write {cfg.output_file}: the soft labels are uninformative, "
        f"{summary['reason']}; the labelling model may have collapsed to the prior (see "
        "`collapsed` in its run's summary.json). allow_uninformative=true writes them anyway"
    )


def pseudo_label_run(cfg: DictConfig) -> dict[str, Any]:
    """Predict ``cfg.data.unlabeled_file``, write the soft-labelled file and its summary."""
    out = _check(cfg)
    tta = TTA(cfg.tta, cfg.uncertain_fraction, cfg.time_budget_s, cfg.uncertainty)
    table, report = read_unlabeled(cfg)
    weights = None if cfg.weights is None else [float(w) for w in _as_list(cfg.weights)]
    ensemble = Ensemble.from_checkpoints(
        _as_list(cfg.ckpt),
        weights,
        cfg.combine,
        cache_dir=Path(cfg.paths.cache_dir),
        device=resolve_device(cfg.device),
        quantization=quantization_from_bits(cfg.quantize),
        trust_remote_code=bool(cfg.trust_remote_code),
        autocast=torch_dtype(cfg.autocast) if cfg.autocast else None,
        batch_size=cfg.batch_size,
        max_tokens=cfg.max_tokens,
        max_length=cfg.max_length,
        packing=cfg.data.packing,
    )
    result = ensemble.predict(table, tta)
    probs = drop_tie(result.probs) if cfg.binary else result.probs
    keep = confident_rows(probs, cfg.min_confidence)
    labelled = soft_label_table(table.loc[keep], probs[keep], int(cfg.round), cfg.source)
    summary = _summary(cfg, ensemble, result, probs, keep) | {"read": asdict(report)}
    _refuse_uninformative(cfg, summary, ensemble.members[0].rank == 0)
    if summary["one_class"]:
        log.warning(
            "every soft label favours the same class: the labelling model may have collapsed to "
            "the prior (see `collapsed` in its run's summary.json)"
        )
    if summary["rows_dropped_low_confidence"]:
        log.warning(
            "min_confidence=%s dropped %d of %d rows",
            cfg.min_confidence,
            summary["rows_dropped_low_confidence"],
            len(table),
        )
    if ensemble.members[0].rank == 0:
        write_parquet(out, labelled)
        write_json(out.with_suffix(".summary.json"), summary)
        log.info("wrote %d soft-labelled rows (round %d) to %s", len(labelled), cfg.round, out)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="pseudo_label")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry; returns the summary."""
    return pseudo_label_run(cfg)


if __name__ == "__main__":
    main()
