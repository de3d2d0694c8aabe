"""A signal is an interruption, not a success: SIGTERM (what SLURM and Kubernetes send before a
kill) or SIGINT stops training at the next optimizer-step boundary with a resumable checkpoint,
and the run ends with :class:`TrainingInterrupted` (exit status 128 + the signal).

Lightning's own handling would raise ``SIGTERMException`` (a ``SystemExit`` with status 0) after
any micro-batch and save nothing; this callback takes SIGTERM and SIGINT over while training runs
(SLURM's SIGUSR1 requeue stays Lightning's). The checkpoint is saved where ``ModelCheckpoint``
saves step checkpoints (``on_train_batch_end``), so ``ckpt_path=last`` resumes exactly; a second
SIGINT interrupts at once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(SystemExit):
    """Training stopped on a signal; ``code`` is 128 + the signal number (143 for SIGTERM)."""

    def __init__(self, signum: int, checkpoint: Path):
        super().__init__(128 + signum)
        self.signum, self.checkpoint = signum, checkpoint


class GracefulStop(L.Callback):
    """Stop on SIGTERM / SIGINT at an optimizer-step boundary, save, raise TrainingInterrupted."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        stepped = (idx + 1) % trainer.accumulate_grad_batches == 0
        if not (stepped or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch):
            return  # mid-accumulation: the gradients gathered so far would be lost
        # every rank decides alike, whichever of them the signal reached
        if not trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            return
        signum = self.signum or signal.SIGTERM
        checkpoint = self._save(trainer)
        pl_module.print(
            f"{signal.Signals(signum).name} received: stopped at step {trainer.global_step} with "
            f"a checkpoint in {checkpoint}; resume with ckpt_path=last"
        )
        raise TrainingInterrupted(signum, checkpoint)

    def _save(self, trainer: L.Trainer) -> Path:
        """Save beside ModelCheckpoint's files and point its ``last.ckpt`` at the new file."""
        callback = trainer.checkpoint_callback
        dirpath = Path(getattr(callback, "dirpath", None) or trainer.default_root_dir)
        path = dirpath / f"interrupted-step{trainer.global_step}.ckpt"
        trainer.save_checkpoint(path)  # every rank: a collective under FSDP
        if trainer.is_global_zero:
            last = dirpath / "last.ckpt"
            tmp = dirpath / ".last.ckpt.tmp"
            tmp.unlink(missing_ok=True)
            os.symlink(path.name, tmp)
            os.replace(tmp, last)
        trainer.strategy.barrier("interrupted checkpoint")
        return path
