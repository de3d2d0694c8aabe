"""Training throughput in the logs: samples/s, tokens/s, padding efficiency and, when the FLOPs
per token and the device peak are known, model FLOPs utilisation (MFU)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

# dense bf16/fp16 tensor-core peaks (FLOP/s) of GPUs whose name contains the key
GPU_PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
    "V100": 125e12,
    "T4": 65e12,
}


def training_flops_per_token(model: torch.nn.Module) -> float:
    """``2·N·(2 + trained share)``: forward, activation gradients and trained-weight gradients over
    the non-embedding weights (attention scores left out: a lower bound, as MFU conventions do)."""
    total = trained = 0
    for name, p in model.named_parameters():
        if "embed" not in name:
            total += p.numel()
            trained += p.numel() if p.requires_grad else 0
    return 2.0 * total * (2.0 + trained / max(total, 1))


class Throughput(L.Callback):
    """Args:
    log_every_n_steps: how often to log the rates of the last window.
    flops_per_token: training FLOPs per real token; None derives it from the model.
    peak_flops: the device's peak FLOP/s at the training precision; None looks the GPU up in
        :data:`GPU_PEAK_FLOPS` (no MFU on CPU or an unknown GPU).
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
        if self.peak is None and torch.cuda.is_available():
            name = torch.cuda.get_device_name()
            self.peak = next((v for k, v in GPU_PEAK_FLOPS.items() if k in name), None)
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
        mask = batch["attention_mask"]
        n, real = int(batch["label"].shape[0]), int(mask.sum())
        self.train_seconds += dt
        self.samples, self.tokens, self.padded = (
            self.samples + n,
            self.tokens + real,
            self.padded + mask.numel(),
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
