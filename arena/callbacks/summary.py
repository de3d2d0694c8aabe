"""The model's parameters at the start of fit, as one log record (in the run's log file too).

In place of Lightning's model summary table, whose FLOPs column reads 0 (Lightning counts FLOPs
only through a module's ``example_input_array``, which arena's modules do not define), whose rows
list the loss and metric modules, which hold no parameters, and which warns under ``bf16-mixed``
that its size estimate is wrong::

    336 K trainable of 336 K parameters
      model           PreferenceModel  336 K
      model.backbone  Qwen2Model       336 K
      model.head      ClassifierHead     130
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from arena.models.sizing import count_params

log = logging.getLogger(__name__)


class ParameterSummary(ModelSummary):
    """Args:
    max_depth: the depth of the submodules listed (``model.backbone`` is depth 2); 0 logs
        nothing. A subclass of Lightning's ``ModelSummary``, so Lightning adds no table of its own.
    """

    def __init__(self, max_depth: int = 2) -> None:
        super().__init__(max_depth=max_depth)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._max_depth and trainer.is_global_zero:
            log.info(parameter_table(pl_module, self._max_depth))


def parameter_table(module: torch.nn.Module, max_depth: int) -> str:
    """The trainable and total parameters, then one row (name, type, parameters) per submodule
    down to ``max_depth`` that holds any."""
    counts = count_params(module)
    rows = []
    for name, sub in module.named_modules():
        if not name or name.count(".") >= max_depth:
            continue
        if n := sum(p.numel() for p in sub.parameters()):
            rows.append((name, type(sub).__name__, _count(n)))
    lines = [f"{_count(counts['trainable'])} trainable of {_count(counts['total'])} parameters"]
    if rows:
        wide = [max(len(row[i]) for row in rows) for i in range(3)]
        lines += [f"  {n:<{wide[0]}}  {t:<{wide[1]}}  {c:>{wide[2]}}" for n, t, c in rows]
    return "\n".join(lines)


def _count(n: int) -> str:
    return get_human_readable_count(n).strip()  # "130  " -> "130"
