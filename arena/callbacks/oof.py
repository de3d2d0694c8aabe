"""Writes the validation fold's out-of-fold probabilities and whole-epoch checks.

After every validation run (not the sanity check; ``on_validation_end`` comes after the module
has gathered its predictions) it computes per-language accuracy, whether the model collapsed to
the class prior and whether it beats the prior's log loss, and notes the step it scored. During
fit it warns how things stand so far ("after N steps ... still sit at the class prior"): a run that
goes on to learn starts there. The final judgement of the last validation (``verdict``, "nothing
was learned") is the entry point's to give, once, with the run's result. At the end of fit (or of
a ``trainer.validate`` after it) it writes ``oof.parquet``
(``id``, ``fold``, ``prob_model_a``, ``prob_model_b`` [, ``prob_tie``], ``label``, ``language``)
into the run dir, atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd

from arena.data.labels import log_loss
from arena.data.schema import LABEL_NAMES
from arena.lit.metrics import check_warning, collapse_check, per_group_accuracy
from arena.utils.io import write_parquet

log = logging.getLogger(__name__)


class OOFWriter(L.Callback):
    """Args:
    output_dir: the run dir.
    tta: write the swap-TTA probabilities instead of the plain ones (when validation ran both
        orders).
    """

    def __init__(self, output_dir: str, tta: bool = False):
        self.output_dir, self.tta = Path(output_dir), tta
        self.checks: dict[str, Any] = {}
        self.val_log_loss: float | None = None  # of the last validation's OOF probabilities
        self.validated_step: int | None = None  # global step of the last validation

    def _probs(self, pl_module: L.LightningModule) -> tuple[np.ndarray, np.ndarray] | None:
        pred = getattr(pl_module, "val_predictions", None)
        if pred is None:
            return None
        key = "probs_tta" if self.tta and "probs_tta" in pred else "probs"
        index = pred["index"].numpy()
        order = np.argsort(index)
        return index[order], pred[key].float().numpy()[order]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validated_step = trainer.global_step  # on every rank: all of them decide alike
        got = self._probs(pl_module)
        if got is None or not trainer.is_global_zero:
            return
        index, probs = got
        val = trainer.datamodule.val_df.iloc[index]  # type: ignore[attr-defined]
        labels = val["label"].to_numpy()
        pred = probs.argmax(1)
        self.val_log_loss = loss = log_loss(probs, labels)
        by_language = per_group_accuracy(pred, labels, val["language"].to_numpy())
        self.checks = {**collapse_check(probs, labels, loss), "acc_by_language": by_language}
        if trainer.state.fn == "fit":
            warning = check_warning(self.checks, loss, step=trainer.global_step)
            if warning is not None:
                log.warning(warning)
        if trainer.state.fn == "validate":
            self.on_fit_end(trainer, pl_module)

    def verdict(self) -> str | None:
        """The final judgement of the last validation (collapsed: "nothing was learned"), or None
        when it deserves no warning or none ran."""
        if not self.checks or self.val_log_loss is None:
            return None
        return check_warning(self.checks, self.val_log_loss)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        got = self._probs(pl_module)
        if got is None or not trainer.is_global_zero:
            return
        index, probs = got
        val = trainer.datamodule.val_df.iloc[index]  # type: ignore[attr-defined]
        oof = pd.DataFrame({"id": val["id"].to_numpy(), "fold": val["fold"].to_numpy()})
        for c in range(probs.shape[1]):
            oof[f"prob_{LABEL_NAMES[c]}"] = probs[:, c]
        # labels and languages make the file self-contained for reports (arena.report)
        oof["label"], oof["language"] = val["label"].to_numpy(), val["language"].to_numpy()
        write_parquet(self.output_dir / "oof.parquet", oof)
