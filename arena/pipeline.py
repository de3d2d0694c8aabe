"""Run the LMSYS 1st place recipe end to end: teachers x K folds -> distilled student x K folds
-> fold merge -> quantized predict with swap TTA.

Usage:
    python -m arena.pipeline output_dir=<dir>           # tiny CPU recipe on synthetic data
    make pipeline-smoke OUT=<dir>                       # the same
    python -m arena.pipeline recipe=lmsys_1st output_dir=<dir> data.train_file=train.csv \
        data.test_file=test.csv 'recipe.train_args=[hydra/launcher=submitit_slurm]'
    python -m arena.pipeline recipe=lmsys_1st twins=true output_dir=<dir>   # on CPU, tiny twins

Every stage is the command line a user would type (see :mod:`arena.stages`); rerunning the same
command resumes. Writes ``<output_dir>/submission.csv`` and ``<output_dir>/summary.json`` with
``teachers`` (name -> pooled OOF acc, log_loss), ``students`` (per fold), ``merged`` (acc,
log_loss, ensemble_acc, ensemble_log_loss), ``quantized`` (the exported bitsandbytes copy of the
merged model: bits, acc, log_loss and their change from the merged model), ``predict`` (the
submission's metrics: the quantized model with swap TTA) and ``commands``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra import compose
from omegaconf import DictConfig, OmegaConf

from arena.config import cpu_overrides, register_resolvers
from arena.io import write_json
from arena.stages import (
    Runner,
    copy_atomic,
    hydra_value,
    per_fold,
    pooled,
    read_summary,
    synthetic_files,
    train_folds,
)

register_resolvers()
log = logging.getLogger(__name__)


def _data_files(cfg: DictConfig, out: Path) -> tuple[Path, Path]:
    data = cfg.data
    if (data.train_file is None) != (data.test_file is None):
        raise ValueError("give both data.train_file and data.test_file, or neither (synthetic)")
    if data.train_file is None:
        s = data.synthetic
        n_classes = cfg.recipe.n_classes
        return synthetic_files(out / "data", s.n_train, s.n_test, s.seed, s.noise, n_classes)
    for name in ("train_file", "test_file"):
        if not Path(data[name]).is_file():
            raise FileNotFoundError(f"data.{name}={data[name]} is not a file")
    return Path(data.train_file).resolve(), Path(data.test_file).resolve()


def _twin_args(experiment: str) -> list[str]:
    """The overrides that run ``experiment`` on this CPU with its backbone's tiny twin."""
    return cpu_overrides(compose("train", overrides=[f"experiment={experiment}"]))


def run_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) every stage and write the submission and the summary."""
    out = Path(cfg.output_dir).resolve()
    recipe = cfg.recipe
    train_file, test_file = _data_files(cfg, out)
    paths = {"log_dir": str(out / "logs"), "cache_dir": str(Path(cfg.paths.cache_dir).resolve())}
    run = Runner(out / "logs")

    def folds(experiment: str) -> list[Path]:
        extra = [*(_twin_args(experiment) if cfg.twins else []), *recipe.train_args]
        return train_folds(run, experiment, recipe.n_folds, train_file, paths, extra)

    teachers = {name: folds(name) for name in recipe.teachers}
    students = folds(recipe.student)
    common = [f"data.test_file={hydra_value(test_file)}",
              f"paths.cache_dir={hydra_value(paths['cache_dir'])}"]  # fmt: skip
    merged, predicted = out / "merged", out / "predict"
    if not (merged / "summary.json").exists():
        ckpts = ",".join(hydra_value(r) for r in students)
        run("merge", ["arena.merge", f"ckpts=[{ckpts}]", f"output_dir={hydra_value(merged)}",
                      f"method={recipe.merge_method}", f"export_bits={recipe.quantize_bits}",
                      *common])  # fmt: skip
    merge_report = read_summary(merged)
    if not (predicted / "summary.json").exists():
        quantized = merge_report["export"]["checkpoint"]
        run("predict", ["arena.predict", f"ckpt={hydra_value(quantized)}",
                        f"output_dir={hydra_value(predicted)}",
                        f"tta={recipe.tta}", *common])  # fmt: skip
    predict_report = read_summary(predicted)
    summary = {
        "recipe": OmegaConf.to_container(recipe, resolve=True),
        "twins": bool(cfg.twins),
        "teachers": {name: pooled(runs) for name, runs in teachers.items()},
        "students": per_fold(students),
        "merged": {k: merge_report.get(k) for k in
                   ("acc", "log_loss", "ensemble_acc", "ensemble_log_loss", "method")},
        "quantized": {k: v for k, v in merge_report["export"].items() if k != "checkpoint"},
        "predict": {k: predict_report.get(k) for k in ("acc", "log_loss", "tta", "n_rows")},
        "train_file": str(train_file),
        "test_file": str(test_file),
        "commands": run.commands,
        "stage_seconds": run.seconds,
    }  # fmt: skip
    copy_atomic(predicted / "submission.csv", out / "submission.csv")
    write_json(out / "summary.json", summary)
    log.info("pipeline done: %s", {k: summary[k] for k in ("merged", "quantized")})
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="pipeline")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry; returns the summary."""
    return run_pipeline(cfg)


if __name__ == "__main__":
    main()
