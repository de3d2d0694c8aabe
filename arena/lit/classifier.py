"""``ClassifierModule``: the pairwise reward classifier as a LightningModule.

Batches come from :class:`arena.lit.PreferenceDataModule`. Validation batches may carry both
orders of every pair (``2B`` sequences, originals first): the module then reports plain metrics,
swap-TTA metrics (``_tta`` keys: mean of the prediction and the un-swapped prediction of the
swapped input) and ``val/swap_consistency``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, cast

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.aggregation import CatMetric

from arena.data.batching import model_inputs
from arena.data.swap import swap_probs
from arena.distributed import shard_model
from arena.lit.metrics import make_metrics
from arena.losses import PreferenceLoss
from arena.models import PreferenceModel, load_trainable_state_dict
from arena.models.checkpoint import read_trainable

Batch = dict[str, torch.Tensor]


def capture_rng() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU and CUDA) random generators, as tensors and
    plain values only, so that Lightning's ``weights_only`` checkpoint loading accepts them."""
    name, keys, pos, has_gauss, gauss = cast(tuple, np.random.get_state())
    state = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ClassifierModule(L.LightningModule):
    """Reward classifier: backbone + pooling + head, CE on hard or soft targets.

    Args:
        model_factory: builds the :class:`arena.models.PreferenceModel`; called in
            :meth:`configure_model` so that sharding strategies build it in their context.
        optimizer: partial optimizer taking parameter groups (e.g. ``torch.optim.AdamW``).
        scheduler: partial ``transformers.get_scheduler`` taking ``optimizer``,
            ``num_warmup_steps`` and ``num_training_steps``; None for a constant rate.
        n_classes: 2 or 3.
        loss: training loss; defaults to plain CE.
        head_lr: learning rate of the head; None uses the optimizer's.
        feature_lr: learning rate of the head's feature layers (a fusion head's
            ``feature_projection``): a third group beside backbone and head; None keeps them
            in the head's group.
        warmup_ratio: share of the training steps spent warming up.
        init_from: checkpoint dir (or run dir) whose trained weights start this run; its
            optimizer state is not used.
        shard_layer: decoder-layer class sharded one unit each under ``trainer=fsdp``.
    """

    def __init__(
        self,
        model_factory: Callable[[], torch.nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        n_classes: int = 2,
        loss: torch.nn.Module | None = None,
        head_lr: float | None = None,
        feature_lr: float | None = None,
        warmup_ratio: float = 0.0,
        init_from: str | None = None,
        shard_layer: str | None = None,
    ):
        super().__init__()
        self.model_factory, self.optimizer_factory = model_factory, optimizer
        self.scheduler_factory = scheduler
        self.n_classes, self.head_lr, self.warmup_ratio = n_classes, head_lr, warmup_ratio
        self.feature_lr = feature_lr
        self.init_from, self.shard_layer = init_from, shard_layer
        self.loss = loss if loss is not None else PreferenceLoss()
        self.eval_loss = PreferenceLoss()
        self.model: torch.nn.Module | None = None
        self.val_metrics = make_metrics(n_classes).clone(prefix="val/")
        self.val_metrics_tta = make_metrics(n_classes).clone(prefix="val/", postfix="_tta")
        self.swap_consistency = MeanMetric()
        # every validation row's index and probabilities, gathered over ranks (OOF files)
        self.val_index = CatMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.val_probs = CatMetric(nan_strategy="disable")
        self.val_probs_tta = CatMetric(nan_strategy="disable")
        self.val_predictions: dict[str, torch.Tensor] | None = None
        self.strict_loading = False  # checkpoints hold only the trained parameters

    def configure_model(self) -> None:
        if self.model is not None:
            return
        model = self.model_factory()
        # trained weights and so their optimizer state in fp32 over a bf16 or k-bit base: an
        # lr-sized update to a bf16 weight (8 bits of mantissa) rounds away
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
        if self.init_from is not None:
            load_trainable_state_dict(model, read_trainable(self.init_from))
        if self.device_mesh is not None:
            if self.shard_layer is None:
                raise ValueError("trainer=fsdp needs backbone.spec.decoder_layer")
            shard_model(model, self.device_mesh["data_parallel"], self.shard_layer)
        self.model = model.train()  # from_pretrained returns eval mode: dropout would stay off

    def on_fit_start(self) -> None:
        """Refuse a precision that stores the trained weights in 16 bits (``bf16-true``,
        ``16-true`` cast the whole module after :meth:`configure_model`), and packed batches for
        a model that cannot read them."""
        if getattr(self.trainer.datamodule, "packing", False):  # type: ignore[attr-defined]
            cast(PreferenceModel, self.model).check_packing()
        half = [
            n for n, p in self.named_parameters() if p.requires_grad and p.dtype != torch.float32
        ]
        if half:
            raise ValueError(
                f"trainer.precision={self.trainer.precision} stores the trained weights in 16 bits "
                f"(e.g. {half[0]}), where updates smaller than 1/256 of a weight round away: use "
                "trainer.precision=bf16-mixed (bf16 compute, fp32 trained weights)"
            )

    def forward(self, batch: Batch) -> torch.Tensor:
        """(B or 2B, C) float32 logits."""
        assert self.model is not None, "configure_model() builds the model first"
        return self.model(**model_inputs(batch))

    def _shared_step(self, batch: Batch, stage: str) -> dict[str, torch.Tensor]:
        logits = self(batch)
        n = batch["label"].shape[0]
        out = {"logits": logits[:n], "logits_swapped": logits[n:]}
        loss_fn = self.loss if stage == "train" else self.eval_loss
        parts = self.compute_loss(loss_fn, logits[:n], batch, stage)
        for name, value in parts.items():
            on_step = stage == "train"
            self.log(
                f"{stage}/{name}",
                value,
                on_step=on_step,
                on_epoch=not on_step,
                batch_size=n,
                sync_dist=not on_step,
                prog_bar=name == "total",
            )
        out["loss"] = parts["total"]
        return out

    def compute_loss(
        self, loss_fn: torch.nn.Module, logits: torch.Tensor, batch: Batch, stage: str
    ) -> dict[str, torch.Tensor]:
        """Named loss parts of one batch; ``total`` is optimised."""
        return loss_fn(logits, batch["target"]).parts

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out = self._shared_step(batch, "val")
        labels = batch["label"]
        probs = F.softmax(out["logits"], dim=-1)
        self.val_metrics.update(probs, labels)
        self.val_index.update(batch["index"])
        self.val_probs.update(probs.float())
        if out["logits_swapped"].shape[0]:
            back = swap_probs(F.softmax(out["logits_swapped"], dim=-1))
            tta = (probs + back) / 2
            self.val_metrics_tta.update(tta, labels)
            self.swap_consistency.update((probs.argmax(-1) == back.argmax(-1)).float())
            self.val_probs_tta.update(tta.float())

    def on_validation_epoch_end(self) -> None:
        # computed metrics are synced over ranks already: sync_dist averages equal values
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()
        with_tta = self.val_probs_tta.update_called
        if with_tta:
            self.log_dict(self.val_metrics_tta.compute(), sync_dist=True)
            self.log("val/swap_consistency", self.swap_consistency.compute(), sync_dist=True)
            self.val_metrics_tta.reset()
            self.swap_consistency.reset()
        if self.val_index.update_called:
            rows = {"index": self.val_index, "probs": self.val_probs}
            rows |= {"probs_tta": self.val_probs_tta} if with_tta else {}
            self.val_predictions = {k: m.compute().cpu() for k, m in rows.items()}
            self.val_predictions["index"] = self.val_predictions["index"].long()
        for metric in (self.val_index, self.val_probs, self.val_probs_tta):
            metric.reset()

    def _param_groups(self) -> list[dict[str, Any]]:
        """``backbone`` (LoRA or all weights), ``features`` (a fusion head's projection, only
        with ``feature_lr``) and ``head``: named groups, each with its learning rate.

        Raises:
            ValueError: ``feature_lr`` for a head without feature layers.
        """
        assert self.model is not None
        head_module = cast(torch.nn.Module, self.model.head)
        project = getattr(head_module, "project", None) if self.feature_lr is not None else None
        if self.feature_lr is not None and project is None:
            raise ValueError(
                "model.feature_lr needs a fusion head with feature layers: set "
                "model.model_factory.feature_projection"
            )

        def trained(module: torch.nn.Module, skip: set[int]) -> list[torch.nn.Parameter]:
            return [p for p in module.parameters() if p.requires_grad and id(p) not in skip]

        features = [] if project is None else trained(project, set())
        head = trained(head_module, {id(p) for p in features})
        rest = trained(self.model, {id(p) for p in [*features, *head]})
        groups: list[dict[str, Any]] = [
            {"params": rest, "name": "backbone"},
            {"params": features, "name": "features", "lr": self.feature_lr},
            {"params": head, "name": "head", "lr": self.head_lr},
        ]
        # a group without its own rate takes the optimizer's; empty groups are left out
        return [{k: v for k, v in g.items() if v is not None} for g in groups if g["params"]]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self._param_groups())
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(
            optimizer=optimizer,
            num_warmup_steps=int(self.warmup_ratio * total),
            num_training_steps=total,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip here when no grad scaler is in play (fp32, bf16): Lightning's mixed-precision
        plugin refuses to clip for optimizers that can unscale internally (fused AdamW) even under
        bf16-mixed, where there is nothing to unscale. Under fp16 (a scaler) Lightning decides."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if not gradient_clip_val or scaler is not None:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the saved random streams for the first batch after a resume."""
        self._rng_to_restore = checkpoint.get("rng")

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        """Restore the random streams (dropout) right before the first resumed step: setting up
        the data loaders draws from them, which the uninterrupted run did at another time."""
        state = getattr(self, "_rng_to_restore", None)
        if state is not None:
            restore_rng(state)
            self._rng_to_restore = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trained parameters (LoRA + head), not frozen or quantized base weights;
        add the random streams (dropout) for an exact resume."""
        checkpoint["rng"] = capture_rng()
        trained = {n for n, p in self.named_parameters() if p.requires_grad}
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("model.") and k not in trained]:
            del state[key]
