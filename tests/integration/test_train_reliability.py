"""A crash loses little and a run says what its data went through: the configured checkpoint
callback writes a resumable ``last.ckpt`` every epoch (or every N steps, mid-epoch), and the
read counts of every train and validation file reach ``summary.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.demos.boring_classes import BoringModel
from omegaconf import OmegaConf

from arena.data import Template
from arena.data.schema import READ_COUNTS
from arena.lit import PreferenceDataModule
from arena.train import check_resumable, summarize


class LastCheckpointSpy(L.Callback):
    """Records, before each training batch, the global step saved in ``last.ckpt`` (or None)."""

    def __init__(self, last: Path):
        self.last, self.seen, self.batches = last, {}, 0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        saved = None
        if self.last.exists():
            saved = torch.load(self.last, map_location="cpu", weights_only=False)["global_step"]
        self.seen[trainer.global_step] = saved
        self.batches += 1


def fit(compose_in, tmp_path: Path, overrides: list[str], ckpt_path: str | None = None, **kw):
    cfg = compose_in(overrides)
    callback = instantiate(cfg.callbacks.model_checkpoint, dirpath=str(tmp_path / "ckpt"))
    spy = LastCheckpointSpy(tmp_path / "ckpt" / "last.ckpt")
    trainer = L.Trainer(
        callbacks=[callback, spy],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **kw,
    )
    trainer.fit(BoringModel(), ckpt_path=ckpt_path)
    return trainer, spy


def test_default_checkpoint_is_written_every_epoch(compose_in, tmp_path: Path) -> None:
    _, spy = fit(compose_in, tmp_path, [], max_epochs=3, limit_train_batches=4)
    assert spy.seen[4] == 4 and spy.seen[8] == 8  # saved at the end of epochs 0 and 1
    assert (tmp_path / "ckpt" / "last.ckpt").is_symlink()  # to the newest epoch checkpoint
    assert len(list((tmp_path / "ckpt").glob("epoch*.ckpt"))) == 1


def test_step_checkpoint_is_written_mid_epoch_and_resumes(compose_in, tmp_path: Path) -> None:
    steps = [
        "callbacks.model_checkpoint.every_n_train_steps=3",
        "callbacks.model_checkpoint.every_n_epochs=null",
    ]
    _, spy = fit(compose_in, tmp_path, steps, max_steps=5, limit_train_batches=8)
    assert spy.seen[3] == 3 and spy.seen[4] == 3  # mid-epoch (8 batches per epoch)
    trainer, spy = fit(compose_in, tmp_path, steps, "last", max_steps=8, limit_train_batches=8)
    assert trainer.global_step == 8 and spy.batches == 8 - 3  # resumed from the step-3 save


def _write(path: Path, rows: list[dict[str, str]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def pair(i: int, a: str = "yes", b: str = "no") -> dict[str, str]:
    return {"id": f"{i}", "prompt": f"q{i}", "response_a": a, "response_b": b, "label": "0"}


def test_summary_reports_read_counts_per_file(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.jsonl", [pair(0), pair(1, b=" "), pair(2, a="\ud800x"), pair(3)])
    two = _write(tmp_path / "two.jsonl", [pair(10, a="no", b="yes"), pair(11), pair(12)])
    val = _write(tmp_path / "val.jsonl", [pair(20), pair(21)])
    two_rows = (tmp_path / "two.jsonl").read_text().replace('"q10"', '"q0"')
    (tmp_path / "two.jsonl").write_text(two_rows)  # row 10 is row 0 of one.jsonl, swapped
    tokenizer = SimpleNamespace(pad_token_id=0, padding_side="right")
    dm = PreferenceDataModule(
        tokenizer,
        Template(),
        train_files=[one, two],
        val_files=[val],
        fold=None,
        n_folds=2,
        empty="drop",
        cache_dir=str(tmp_path / "cache"),
    )
    train, val_df = dm.split(dm.read_table())
    assert len(train) == 5 and val_df is not None and len(val_df) == 2
    cfg = OmegaConf.create(
        {
            "experiment_name": "x",
            "seed": 0,
            "data": {"fold": None},
            "backbone": {"spec": {"name": "b"}},
        }
    )
    trainer = SimpleNamespace(callback_metrics={}, global_step=0, current_epoch=0)
    summary = json.loads(json.dumps(summarize(cfg, trainer, dm, [])))  # JSON-ready
    by_file = {Path(r["file"]).name: r for r in summary["read"]}
    assert [r["role"] for r in summary["read"]] == ["train", "train", "val"]
    counts = [
        [by_file[name][k] for k in READ_COUNTS] for name in ("one.jsonl", "two.jsonl", "val.jsonl")
    ]
    # rows_read, rows_kept, surrogates_repaired, empty_responses, rows_dropped, duplicates
    assert counts == [[4, 3, 1, 1, 1, 0], [3, 2, 0, 0, 0, 1], [2, 2, 0, 0, 0, 0]]
    assert summary["read_total"] == dict(zip(READ_COUNTS, [9, 7, 1, 1, 1, 1], strict=True))
    for r in summary["read"]:
        assert r["rows_read"] == r["rows_kept"] + r["rows_dropped"] + r["duplicates_dropped"]


def test_a_truncated_checkpoint_is_named_with_the_newest_whole_one(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 3}, folder / "epoch00-step3.ckpt")
    torch.save({"global_step": 6}, folder / "epoch00-step6.ckpt")
    os.utime(folder / "epoch00-step3.ckpt", (1, 1))  # the older of the two whole ones
    whole = (folder / "epoch00-step6.ckpt").read_bytes()
    (folder / "epoch01-step9.ckpt").write_bytes(whole[: len(whole) // 2])  # a full disk
    (folder / "last.ckpt").symlink_to("epoch01-step9.ckpt")
    with pytest.raises(ValueError, match="epoch01-step9.ckpt is truncated") as err:
        check_resumable(tmp_path, "last")
    assert f"ckpt_path={folder / 'epoch00-step6.ckpt'}" in str(err.value)
    check_resumable(tmp_path, str(folder / "epoch00-step6.ckpt"))  # a whole one passes
    check_resumable(tmp_path / "fresh", "last")  # nothing to resume yet: a fresh start


def test_a_signal_stops_training_at_an_optimizer_step(tmp_path: Path) -> None:
    """With gradients accumulated over 3 batches, a SIGTERM during the first batch stops after
    the third (the first optimizer step), with a checkpoint that last.ckpt points to."""
    import signal

    from lightning.pytorch.callbacks import ModelCheckpoint

    from arena.callbacks import GracefulStop, TrainingInterrupted

    class Signal(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 0:
                os.kill(os.getpid(), signal.SIGTERM)  # caught by GracefulStop's handler

    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last="link")
    trainer = L.Trainer(
        accelerator="cpu", max_steps=10, accumulate_grad_batches=3, logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[Signal(), GracefulStop(), checkpoints],
    )  # fmt: skip
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.fit(BoringModel())
    assert stop.value.code == 143 and trainer.global_step == 1
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.resolve() == stop.value.checkpoint == last.parent / "interrupted-step1.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 1
    handler = signal.getsignal(signal.SIGTERM)  # the handler from before training is back
    assert not isinstance(getattr(handler, "__self__", None), GracefulStop)
