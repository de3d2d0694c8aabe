"""What ``python -m arena.train`` does: instantiate, fit, write the run dir's artifacts."""

from __future__ import annotations

import logging
import signal
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from arena.callbacks import OOFWriter, Throughput, TrainingInterrupted
from arena.config import to_container
from arena.data.teachers import pin_teachers
from arena.distributed import full_trainable_state
from arena.io import claim_run_dir, write_json
from arena.models import load_tokenizer, save_checkpoint
from arena.plan import plan_run
from arena.tracking import close, git_commit, log_oof, make_loggers, scrub

log = logging.getLogger(__name__)

__all__ = ["plan_run", "train_run"]


def check_resumable(output_dir: Path, ckpt_path: str | None) -> None:
    """A checkpoint to resume from must be a whole file: a truncated one (a full disk, a copy
    cut short) is named, with the newest whole checkpoint beside it to resume from instead."""
    if ckpt_path is None:
        return
    folder = output_dir / "checkpoints"
    path = folder / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.exists() or zipfile.is_zipfile(path):  # torch saves zip archives
        return
    whole = sorted(
        (p for p in path.parent.glob("*.ckpt") if p.name != path.name and zipfile.is_zipfile(p)),
        key=lambda p: p.stat().st_mtime,
    )
    hint = f"resume from {whole[-1]} with ckpt_path={whole[-1]}" if whole else "none is whole"
    raise ValueError(f"{path.resolve()} is truncated or corrupt (not a checkpoint); {hint}")


def _find(callbacks: list[L.Callback], kind: type) -> Any:
    return next((c for c in callbacks if isinstance(c, kind)), None)


def summarize(
    cfg: DictConfig, trainer: L.Trainer, datamodule: Any, callbacks: list[L.Callback]
) -> dict[str, Any]:
    """``summary.json``: final metrics, fold, row counts, throughput, collapse check, data."""
    summary: dict[str, Any] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
    }
    summary.update(
        status="finished",
        experiment=cfg.experiment_name,
        seed=cfg.seed,
        fold=cfg.data.fold,
        round=cfg.get("round", 0),
        backbone=cfg.backbone.spec.name,
        global_step=trainer.global_step,
        epochs=trainer.current_epoch,
        **datamodule.report,
    )
    if (tp := _find(callbacks, Throughput)) is not None:
        summary.update(tp.summary())
    if (oof := _find(callbacks, OOFWriter)) is not None:
        summary.update(oof.checks)
    if datamodule.teachers:
        summary["teachers"] = {t.name: list(t.files) for t in datamodule.teachers}
    return summary


def _checkpoint_config(cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    run = scrub(to_container(cfg))
    factory = {k: v for k, v in run["model"]["model_factory"].items() if not k.startswith("_")}
    factory.pop("spec"), factory.pop("cache_dir")
    extra = {"feature_normalizer": datamodule.normalizer.to_dict()} if datamodule.normalizer else {}
    return {
        "backbone": {k: v for k, v in run["backbone"]["spec"].items() if k != "_target_"},
        "model": factory,
        "template": {k: v for k, v in run["backbone"]["template"].items() if k != "_target_"},
        "data": {"budget": run["data"]["budget"], "n_classes": run["data"]["n_classes"]},
        "run": run,
        **extra,
    }


def _interrupted(
    cfg: DictConfig, trainer: L.Trainer, stop: TrainingInterrupted, commit: str | None
) -> dict[str, Any]:
    """``summary.json`` of a run stopped by a signal: what a resume needs to know."""
    return {
        "status": "interrupted",
        "signal": signal.Signals(stop.signum).name,
        "checkpoint": str(stop.checkpoint),
        "experiment": cfg.experiment_name,
        "fold": cfg.data.fold,
        "seed": cfg.seed,
        "global_step": trainer.global_step,
        "git_commit": commit,
    }


def train_run(cfg: DictConfig) -> float | None:
    """Fit one run and write its artifacts, holding its run dir; returns
    ``cfg.optimized_metric``."""
    out = Path(cfg.paths.output_dir)
    with claim_run_dir(out, resume=cfg.ckpt_path is not None):
        return _train(cfg, out)


def _train(cfg: DictConfig, out: Path) -> float | None:
    check_resumable(out, cfg.ckpt_path)
    L.seed_everything(cfg.seed, workers=True)
    spec = instantiate(cfg.backbone.spec)
    tokenizer = load_tokenizer(spec, Path(cfg.paths.cache_dir))
    # a resumed run reads the teacher files its start read, whatever sweeps appeared since
    teachers = [instantiate(t) for t in cfg.data.teachers]
    teachers = teachers and pin_teachers(teachers, out / "teachers.json", cfg.ckpt_path is not None)
    # objects pass through a partial: instantiate() would turn a dataclass kwarg into a config
    datamodule = instantiate(cfg.data, _partial_=True)(
        tokenizer=tokenizer, template=instantiate(cfg.backbone.template), teachers=teachers
    )
    module = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = make_loggers(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    commit = git_commit(cfg.paths.root_dir)
    failed = True
    try:
        for lg in loggers:
            lg.log_hyperparams({**scrub(to_container(cfg)), "git_commit": commit})
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        except TrainingInterrupted as stop:
            if trainer.is_global_zero:
                write_json(out / "summary.json", _interrupted(cfg, trainer, stop, commit))
            raise
        writer = _find(callbacks, OOFWriter)
        if (
            datamodule.val_set is not None
            and writer
            and writer.validated_step != trainer.global_step
        ):
            # max_steps stopped fit between validations: score the weights that are saved
            trainer.validate(module, datamodule=datamodule, verbose=False)
        summary = summarize(cfg, trainer, datamodule, callbacks) | {"git_commit": commit}
        weights = full_trainable_state(module.model)  # every rank: gathers FSDP shards
        if trainer.is_global_zero:
            config = _checkpoint_config(cfg, datamodule)
            save_checkpoint(module.model, tokenizer, config, out / "checkpoints" / "final", weights)
            if (out / "oof.parquet").exists():
                oof = pd.read_parquet(out / "oof.parquet")
                labels = datamodule.val_df.set_index("id").loc[oof["id"], "label"].to_numpy()
                log_oof(loggers, oof, np.asarray(labels))
            write_json(out / "summary.json", scrub(summary))
            log.info("summary: %s", {k: v for k, v in summary.items() if k.startswith("val/")})
        failed = False
    finally:
        close(loggers, failed)
    metric = summary.get(cfg.optimized_metric)
    return None if metric is None else float(metric)
