"""Training throughput in the logs: samples/s, tokens/s, padding efficiency and, when the FLOPs
per token and the device peak are known, model FLOPs utilisation (MFU)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import get_available_flops

from arena.data.batching import token_counts
from arena.models.sizing import count_params, matmul_flops_per_token


def training_flops_per_token(model: torch.nn.Module) -> float:
    """Matmul FLOPs of one training token over the non-embedding weights
    (:func:`arena.models.sizing.matmul_flops_per_token`)."""
    counts = count_params(model)
    return matmul_flops_per_token(counts["total"] - counts["embedding"], counts["trainable"])


class Throughput(L.Callback):
    """Args:
    log_every_n_steps: how often to log the rates of the last window.
    flops_per_token: training FLOPs per real token; None derives it from the model.
    peak_flops: the device's peak FLOP/s at the training precision; None takes Lightning's
        ``get_available_flops`` for the GPU and the precision (no MFU on CPU or an unknown GPU;
        its H200 entries are the 2:4-sparse figures, twice the dense peak).
    """

    def __init__(
        self,
        log_every_n_steps: int = 10,
        flops_per_token: float | None = None,
        peak_flops: float | None = None,
    ):
        self.every, self.flops_per_token, self.peak = log_every_n_steps, flops_per_token, peak_flops
        self.train_seconds = 0.0
        self.samples = self.tokens = self.padded = 0
        self._window = [0, 0, 0.0]  # samples, tokens, seconds
        self._t0 = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.peak is None and pl_module.device.type == "cuda":
            precision = str(trainer.precision)
            dtype = torch.bfloat16 if "bf16" in precision else torch.float32
            dtype = torch.float16 if precision.startswith("16") else dtype
            self.peak = get_available_flops(pl_module.device, dtype)
        if self.peak and self.flops_per_token is None:
            self.flops_per_token = training_flops_per_token(pl_module)

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._sync()
        dt = time.perf_counter() - self._t0
        n, (real, computed) = int(batch["label"].shape[0]), token_counts(batch)
        self.train_seconds += dt
        self.samples, self.tokens, self.padded = (
            self.samples + n,
            self.tokens + real,
            self.padded + computed,
        )
        w = self._window
        w[0], w[1], w[2] = w[0] + n, w[1] + real, w[2] + dt
        if (batch_idx + 1) % self.every == 0 and w[2] > 0:
            self._log(pl_module, w[0] / w[2], w[1] / w[2])
            self._window = [0, 0, 0.0]

    def _log(self, pl_module: L.LightningModule, samples_s: float, tokens_s: float) -> None:
        world = pl_module.trainer.world_size
        metrics = {
            "train/samples_per_sec": samples_s * world,
            "train/tokens_per_sec": tokens_s * world,
            "train/padding_efficiency": self.tokens / max(self.padded, 1),
        }
        if self.flops_per_token and self.peak:
            metrics["train/mfu"] = tokens_s * self.flops_per_token / self.peak
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    def summary(self) -> dict[str, float]:
        """Totals over the whole fit, for ``summary.json`` (this rank's view)."""
        return {
            "train_seconds": self.train_seconds,
            "train_samples_per_second": self.samples / max(self.train_seconds, 1e-9),
            "train_tokens_per_second": self.tokens / max(self.train_seconds, 1e-9),
            "padding_efficiency": self.tokens / max(self.padded, 1),
        }
