"""``train_loop``: our ClassifierModule under a Lightning Trainer vs a plain PyTorch loop vs the
Hugging Face ``transformers.Trainer``, on the same model, batches and optimizer.

Every loop trains a fresh copy of the same model (dropout off) on the same fixed-shape batches
(``max_length`` tokens, padded to it) with the pinned single-tensor AdamW and a constant rate, no
gradient clipping. The first step (allocator warm-up) is not timed; the rest is, from the start
of step 2 to the end of the last step, data loading included. The loops must produce the same
loss at every step (to 1e-5) for the ratios to count.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from torch import nn
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from arena.bench.common import (
    Settings,
    equivalence,
    interleave,
    param_groups,
    pinned_adamw,
    speedup,
    stats,
)
from arena.bench.inputs import ModelKit, build_kit, encode, load_table, sample_rows
from arena.lit.classifier import ClassifierModule
from arena.losses import PreferenceLoss

Loader = torch.utils.data.DataLoader


class StepClock:
    """Wall time of steps ``2..n`` and the loss of every step."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.losses: list[float] = []

    def begin(self) -> None:
        self.starts.append(time.perf_counter())

    def end(self, loss: float) -> None:
        self.ends.append(time.perf_counter())
        self.losses.append(loss)

    def seconds(self) -> float:
        return self.ends[-1] - self.starts[1]


class _LightningClock(L.Callback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        self.clock.begin()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        self.clock.end(float(outputs["loss"]))


def run_lightning(kit: ModelKit, loader: Loader, steps: int, lr: float) -> StepClock:
    """Fit :class:`ClassifierModule` for ``steps`` steps under a CPU Lightning Trainer."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banners per fit
    clock = StepClock()
    module = ClassifierModule(kit.new_model, lambda groups: pinned_adamw(groups, lr), n_classes=2)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        callbacks=[_LightningClock(clock)],
    )
    with warnings.catch_warnings():  # "no val_dataloader" and Lightning's own deprecations
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=loader)
    return clock


def run_plain(kit: ModelKit, loader: Loader, steps: int, lr: float) -> StepClock:
    """The same training in a hand-written loop."""
    clock, loss_fn = StepClock(), PreferenceLoss()
    model = kit.new_model().train()
    optimizer = pinned_adamw(param_groups(model), lr)
    for step, batch in enumerate(loader):
        if step == steps:
            break
        clock.begin()
        logits = model(batch["input_ids"], batch["attention_mask"])
        loss = loss_fn(logits, batch["target"]).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clock.end(float(loss.detach()))
    return clock


class _LossModel(nn.Module):
    """The preference model with the loss inside, the way ``transformers.Trainer`` wants it."""

    def __init__(self, model: nn.Module, clock: StepClock) -> None:
        super().__init__()
        self.model, self.loss_fn, self.clock = model, PreferenceLoss(), clock

    def forward(self, input_ids: Any, attention_mask: Any, target: Any, **_: Any) -> Any:
        logits = self.model(input_ids, attention_mask)
        loss = self.loss_fn(logits, target).total
        self.clock.losses.append(float(loss.detach()))
        return {"loss": loss, "logits": logits}


class _HFClock(TrainerCallback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.clock.starts.append(time.perf_counter())

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.clock.ends.append(time.perf_counter())


class _FixedLoaderTrainer(Trainer):
    """``transformers.Trainer`` fed our DataLoader, so that every loop sees the same batches."""

    bench_loader: Loader

    def get_train_dataloader(self) -> Loader:
        return self.bench_loader


def run_hf(kit: ModelKit, loader: Loader, steps: int, lr: float, out: Path) -> StepClock:
    """The same training with ``transformers.Trainer`` (constant rate, no clipping, CPU)."""
    clock = StepClock()
    model = _LossModel(kit.new_model(), clock)
    optimizer = pinned_adamw(param_groups(model.model), lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=len(
            next(iter(cast(Iterable[list[int]], loader.batch_sampler)))
        ),
        max_grad_norm=0.0,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = _FixedLoaderTrainer(
        model=model,
        args=args,
        train_dataset=loader.dataset,
        optimizers=(optimizer, schedule),
        callbacks=[_HFClock(clock)],
    )
    trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict to stdout
    trainer.bench_loader = loader
    trainer.train()
    return clock


def make_loader(kit: ModelKit, settings: Settings, batch: int, steps: int) -> Loader:
    """``steps`` batches of ``batch`` rows, padded to ``max_length``."""
    table, _ = load_table(settings)
    rows = sample_rows(table, batch * steps, settings.seed)
    data = encode(rows, kit, settings.max_length)
    batches = [list(range(s, s + batch)) for s in range(0, batch * steps, batch)]
    collate = kit.collator(multiple=settings.max_length)
    return Loader(data.dataset, batch_sampler=batches, collate_fn=collate)


def run(settings: Settings, kit: ModelKit | None = None) -> dict[str, Any]:
    """Interleave the three loops and compare throughputs (steps 2..n)."""
    kit = kit or build_kit(settings)
    batch, steps = settings.pick(2, 8), settings.pick(3, 5)
    loader = make_loader(kit, settings, batch, steps)
    clocks: dict[str, list[StepClock]] = {"plain": [], "lightning": [], "hf_trainer": []}
    out = Path(settings.work_dir) / "hf_trainer"

    def timed(name: str, fn: Any) -> Any:
        def go() -> float:
            torch.manual_seed(settings.seed)
            clocks[name].append(fn())
            return clocks[name][-1].seconds()

        return go

    times = interleave(
        {
            "plain": timed("plain", lambda: run_plain(kit, loader, steps, settings.lr)),
            "lightning": timed("lightning", lambda: run_lightning(kit, loader, steps, settings.lr)),
            "hf_trainer": timed("hf_trainer", lambda: run_hf(kit, loader, steps, settings.lr, out)),
        },
        settings.repeats,
    )
    return _report(times, clocks, batch, steps, settings.max_length)


def _report(
    times: dict[str, list[float]],
    clocks: dict[str, list[StepClock]],
    batch: int,
    steps: int,
    max_length: int,
) -> dict[str, Any]:
    reference = np.asarray(clocks["plain"][0].losses)
    diff = max(
        float(np.abs(np.asarray(c.losses) - reference).max()) if len(c.losses) == steps else np.inf
        for runs in clocks.values()
        for c in runs
    )
    timed = batch * (steps - 1)
    lightning = speedup(times["plain"], times["lightning"])
    hf = speedup(times["plain"], times["hf_trainer"])
    return {
        "ratios": {
            "train_loop.lightning_vs_plain": lightning["paired"],
            "train_loop.hf_trainer_vs_plain": hf["paired"],
        },
        "equivalence": equivalence("loss at every step vs the plain loop", diff, 1e-5),
        "raw": {
            "batch_size": batch,
            "seq_len": max_length,
            "steps": steps,
            "timed_steps": steps - 1,
            "seconds": {k: stats(v) for k, v in times.items()},
            "samples_per_second": {k: timed / min(v) for k, v in times.items()},
            "lightning_vs_plain": lightning,
            "hf_trainer_vs_plain": hf,
            "losses": clocks["plain"][0].losses,
        },
    }
