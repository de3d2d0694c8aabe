"""Train a pairwise preference model.

Usage:
    python -m arena.train                                  # CPU quickstart (synthetic data)
    python -m arena.train experiment=minilm_cpu data.train_files=[a.parquet,b.parquet]
    python -m arena.train -m experiment=minilm_cpu data.fold=0,1,2,3,4   # K-fold as a sweep
    python -m arena.train experiment=distill_gemma9b plan=true           # plan only, no download
    python -m arena.train ckpt_path=last hydra.run.dir=<run dir>         # resume a run

Writes into the run dir: ``.hydra/config.yaml``, ``summary.json``, ``oof.parquet`` and
``checkpoints/`` (resumable ``last.ckpt`` and the final trained weights in ``final/``).
"""

from __future__ import annotations

import logging
import signal
import zipfile
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from arena.callbacks import OOFWriter, Throughput, TrainingInterrupted
from arena.data.correction import LabelCorrection, pin_correction
from arena.data.teachers import pin_teachers
from arena.distributed import full_trainable_state
from arena.models import BackboneSpec, CheckpointSpec, ModelOptions, load_tokenizer, save_checkpoint
from arena.models.backbone import resolve_packing
from arena.models.sizing import Setup, count_params, flops_per_sample, memory_gb
from arena.utils.config import register_resolvers, to_container
from arena.utils.console import log_run_dir, result_line
from arena.utils.io import claim_run_dir, write_json
from arena.utils.tracking import close, git_commit, log_oof, make_loggers, scrub

register_resolvers()

log = logging.getLogger(__name__)


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


def _checkpoint_spec(cfg: DictConfig, backbone: BackboneSpec, datamodule: Any) -> CheckpointSpec:
    """What the final checkpoint holds: the backbone, the model options, the formatting the
    DataModule used and the resolved run config (secrets scrubbed)."""
    run = scrub(to_container(cfg))
    built_elsewhere = ("_target_", "_partial_", "spec", "cache_dir")
    factory = {k: v for k, v in run["model"]["model_factory"].items() if k not in built_elsewhere}
    norm = datamodule.normalizer
    return CheckpointSpec(
        backbone=backbone,
        model=ModelOptions(**factory),
        template=datamodule.template,
        budget=datamodule.budget,
        feature_normalizer=norm.to_dict() if norm else None,
        run=run,
    )


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
    log_run_dir(log, out)
    check_resumable(out, cfg.ckpt_path)
    L.seed_everything(cfg.seed, workers=True)
    spec = instantiate(cfg.backbone.spec)
    tokenizer = load_tokenizer(spec, Path(cfg.paths.cache_dir))
    # a resumed run reads the teacher files its start read, whatever sweeps appeared since
    teachers = [instantiate(t) for t in cfg.data.teachers]
    teachers = teachers and pin_teachers(teachers, out / "teachers.json", cfg.ckpt_path is not None)
    correction = LabelCorrection.from_value(to_container(cfg.data).get("label_correction"))
    if correction is not None:
        record = out / "label_correction.json"
        correction = pin_correction(correction, record, cfg.ckpt_path is not None)
    # objects pass through a partial: instantiate() would turn a dataclass kwarg into a config
    datamodule = instantiate(cfg.data, _partial_=True)(
        tokenizer=tokenizer,
        template=instantiate(cfg.backbone.template),
        teachers=teachers,
        label_correction=correction,
        packing=resolve_packing(cfg.data.packing, spec),
    )
    module = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = make_loggers(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    commit = git_commit(cfg.paths.root_dir)
    exit_code = 1  # an error, unless the run finishes or a signal stops it
    try:
        for lg in loggers:
            lg.log_hyperparams({**scrub(to_container(cfg)), "git_commit": commit})
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        except TrainingInterrupted as stop:
            exit_code = 128 + stop.signum
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
            ckpt = _checkpoint_spec(cfg, spec, datamodule)
            save_checkpoint(module.model, tokenizer, ckpt, out / "checkpoints" / "final", weights)
            if (out / "oof.parquet").exists():
                oof = pd.read_parquet(out / "oof.parquet")
                labels = datamodule.val_df.set_index("id").loc[oof["id"], "label"].to_numpy()
                log_oof(loggers, oof, np.asarray(labels))
            write_json(out / "summary.json", scrub(summary))
            log.info(result_line(summary, out))
            if writer is not None and (verdict := writer.verdict()) is not None:
                log.warning(verdict)
        exit_code = 0
    finally:
        close(loggers, exit_code)
    metric = summary.get(cfg.optimized_metric)
    return None if metric is None else float(metric)


def _devices(cfg: DictConfig) -> int:
    """Data-parallel ranks of the run: devices per node (the planner's when "auto") x nodes."""
    devices = cfg.trainer.get("devices", 1)
    per_node = devices if isinstance(devices, int) else int(cfg.planner.devices_per_node)
    return per_node * int(cfg.trainer.get("num_nodes", 1))


def plan_run(cfg: DictConfig) -> dict[str, Any]:
    """``plan=true``: build on meta, price memory and FLOPs against the ``planner`` target
    (``conf/planner/*.yaml``), print and write ``plan.json`` in the run dir."""
    spec = instantiate(cfg.backbone.spec)
    model = instantiate(cfg.model.model_factory)(meta=True)
    counts = count_params(model)
    quant = cfg.model.model_factory.get("quantization") or "none"
    devices, seq = _devices(cfg), int(cfg.data.budget.max_length)
    checkpointing = bool(spec.activation_checkpointing)
    setup = Setup(
        seq=seq,
        batch=int(cfg.data.batch_size),
        devices=devices,
        sharded="FSDP" in str(cfg.trainer.get("strategy", "")),
        quantization=quant,
        dtype=spec.dtype,
        optimizer_8bit="8bit" in str(cfg.optimizer._target_).lower(),
        checkpointing=checkpointing,
    )
    n_nonembed = counts["total"] - counts["embedding"]
    flops = flops_per_sample(dict(spec.arch), n_nonembed, counts["trainable"], seq, checkpointing)
    p = cfg.planner
    plan = {
        "experiment": cfg.experiment_name,
        "backbone": spec.name,
        "params_total": counts["total"],
        "params_trainable": counts["trainable"],
        "precision": str(cfg.trainer.precision),
        "quantization": quant,
        "strategy": str(cfg.trainer.get("strategy", "auto")),
        "devices": devices,
        "seq_len": seq,
        "batch_size_per_device": setup.batch,
        "memory_per_device_gb": memory_gb(dict(spec.arch), counts, setup),
        "flops_per_sample": flops["train"],
        "flops_per_sample_forward": flops["forward"],
        "device": p.device,
        "device_peak_flops": float(p.peak_flops),
        "mfu": float(p.mfu),
        "est_samples_per_second": p.mfu * p.peak_flops * devices / flops["train"],
        "est_inference_samples_per_second": p.mfu * p.peak_flops * devices / flops["forward"],
        "target": f"{devices} x {p.device}",
        "device_memory_gb": float(p.memory_gb),
    }
    plan["fits_device_memory"] = plan["memory_per_device_gb"]["total"] <= p.memory_gb
    write_json(Path(cfg.paths.output_dir) / "plan.json", plan)
    print(_plan_table(plan))  # noqa: T201 - the command's output
    return plan


def _plan_table(plan: dict[str, Any]) -> str:
    mem = plan["memory_per_device_gb"]
    return "\n".join(
        [
            f"plan for {plan['experiment']} ({plan['backbone']}, {plan['quantization']}, "
            f"{plan['strategy']} x{plan['devices']})",
            f"  params: {plan['params_total'] / 1e9:.3f} B total, "
            f"{plan['params_trainable'] / 1e6:.2f} M trainable",
            "  memory/device: " + ", ".join(f"{k} {v:.2f} GB" for k, v in mem.items()),
            f"  FLOPs/sample: {plan['flops_per_sample'] / 1e12:.2f} TFLOP train, "
            f"{plan['flops_per_sample_forward'] / 1e12:.2f} TFLOP forward (T={plan['seq_len']})",
            f"  est. {plan['est_samples_per_second']:.2f} samples/s training at MFU "
            f"{plan['mfu']} of {plan['device']} ({plan['device_peak_flops'] / 1e12:.0f} TFLOP/s)",
            f"  {'fits' if plan['fits_device_memory'] else 'DOES NOT FIT'} on {plan['target']}: "
            f"{mem['total']:.1f} of {plan['device_memory_gb']:.0f} GB per device",
        ]
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry; returns the optimized metric so that sweeps can use it."""
    if cfg.plan:
        plan_run(cfg)
        return None
    return train_run(cfg)


if __name__ == "__main__":
    main()
