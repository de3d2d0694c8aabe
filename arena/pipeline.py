"""Run the LMSYS 1st place recipe end to end: teachers x K folds -> distilled student x K folds
-> fold merge -> quantized predict with swap TTA.

Usage:
    python -m arena.pipeline output_dir=<dir>           # tiny CPU recipe on synthetic data
    make pipeline-smoke OUT=<dir>                       # the same
    python -m arena.pipeline recipe=lmsys_1st output_dir=<dir> data.train_file=train.csv \
        data.test_file=test.csv 'recipe.train_args=["hydra/launcher=submitit_slurm"]'
    python -m arena.pipeline recipe=lmsys_1st twins=true output_dir=<dir>   # on CPU, tiny twins

Every stage is the command line a user would type (``arena.train -m``, ``arena.merge``,
``arena.predict``), run as a subprocess with its output in ``<output_dir>/logs/<stage>.log``, and
skipped when its outputs are already complete; rerunning the same command resumes.

Writes ``<output_dir>/submission.csv`` and ``<output_dir>/summary.json`` with ``teachers`` (name
-> pooled OOF acc, log_loss), ``students`` (per fold), ``merged`` (acc, log_loss, ensemble_acc,
ensemble_log_loss), ``quantized`` (the exported bitsandbytes copy of the merged model: bits, acc,
log_loss and their change from the merged model), ``predict`` (the submission's metrics: the
quantized model with swap TTA) and ``commands``.

Directory layout under ``output_dir``::

    data/{train,test}.csv                          synthetic files (when none are given)
    logs/train/<experiment>/multirun_pipeline/fold<k>/   one training run per fold
    merged/        the merged student (checkpoints/final) and its report against the fold ensemble
    predict/       the quantized predictions of the test file
    submission.csv, summary.json
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra import compose
from omegaconf import DictConfig, OmegaConf

from arena.data.synthetic import make_synthetic
from arena.data.writers import write_pairs
from arena.utils.config import cpu_overrides, register_resolvers
from arena.utils.io import atomic_path, finished_run, write_json

register_resolvers()
log = logging.getLogger(__name__)

SWEEP_NAME = "multirun_pipeline"


@dataclass
class StageCommands:
    """Runs stage commands, logging each one to ``log_dir/<stage>.log``.

    Attributes:
        log_dir: where the stage logs go.
        commands: every command run so far, as shell-quoted strings.
        seconds: wall seconds per stage.
    """

    log_dir: Path
    commands: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, stage: str, args: Sequence[str]) -> None:
        """Run ``python -m <args>`` for ``stage``.

        Raises:
            RuntimeError: the command failed; names the stage, the log file and its last lines.
        """
        cmd = [sys.executable, "-m", *args]
        self.commands.append(shlex.join(["python", "-m", *args]))
        log.info("stage %s: %s", stage, self.commands[-1])
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / f"{stage}.log"
        began = time.perf_counter()
        with log_file.open("a") as out:
            out.write(f"$ {self.commands[-1]}\n")
            out.flush()
            code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - began
        if code != 0:
            tail = "".join(log_file.read_text().splitlines(keepends=True)[-30:])
            raise RuntimeError(f"stage {stage} failed (exit {code}); log {log_file}:\n{tail}")


def synthetic_files(out: Path, n_train: int, n_test: int, seed: int, noise: float, n_classes: int):
    """Write labelled synthetic ``train.csv`` and ``test.csv`` (LMSYS layout) unless present."""
    train, test = out / "train.csv", out / "test.csv"
    for path, n, s in ((train, n_train, seed), (test, n_test, seed + 1)):
        if not path.exists():
            table = make_synthetic(n, seed=s, n_classes=n_classes, noise=noise)
            write_pairs(table.assign(id=[f"{path.stem}-{i}" for i in range(n)]), path, "lmsys")
    return train, test


def hydra_value(value: object) -> str:
    """``value`` as a Hydra override value: quoted only when it has characters Hydra would parse."""
    text = str(value)
    return text if re.fullmatch(r"[\w./-]+", text) else "'" + text.replace("'", "\\'") + "'"


def sweep_dir(log_dir: Path, experiment: str) -> Path:
    """Where the fold runs of ``experiment`` go: the teacher stores of distillation experiments
    (``runs: ${paths.log_dir}/train/<teacher>/multirun_*``) read this sweep."""
    return log_dir / "train" / experiment / SWEEP_NAME


def train_folds(
    run: StageCommands, experiment: str, n_folds: int, train_file: Path, paths: dict[str, str],
    extra: Sequence[str],
) -> list[Path]:  # fmt: skip
    """Train ``experiment`` on every fold as one Hydra multirun; folds already finished are
    skipped, unfinished ones resume from their ``last.ckpt``. Returns the fold run dirs."""
    sweep = sweep_dir(Path(paths["log_dir"]), experiment)
    runs = [sweep / f"fold{k}" for k in range(n_folds)]
    missing = [str(k) for k, r in enumerate(runs) if not finished_run(r)]
    if missing:
        run(
            f"train_{experiment}",
            [
                "arena.train", "-m", f"experiment={experiment}",
                f"data.train_files=[{hydra_value(train_file)}]", f"data.n_folds={n_folds}",
                f"data.fold={','.join(missing)}", "ckpt_path=last",
                *(f"paths.{k}={hydra_value(v)}" for k, v in paths.items()),
                f"hydra.sweep.dir={hydra_value(sweep)}", "hydra.sweep.subdir=fold${data.fold}",
                *extra,
            ],
        )  # fmt: skip
    return runs


def read_summary(path: Path) -> dict[str, Any]:
    """A stage's ``summary.json``; a missing one is an error naming the stage's dir."""
    file = path / "summary.json"
    if not file.exists():
        raise FileNotFoundError(f"{path} has no summary.json: its stage did not finish")
    result: dict[str, Any] = json.loads(file.read_text())
    return result


def pooled(runs: Sequence[Path]) -> dict[str, float]:
    """Validation metrics over every fold's held-out rows (row-weighted means of the folds'
    ``val/*`` metrics, i.e. the metrics of the pooled OOF predictions)."""
    summaries = [read_summary(r) for r in runs]
    total = sum(s["n_val"] for s in summaries)
    out: dict[str, float] = {"n_rows": float(total)}
    for key, name in (("acc", "acc"), ("log_loss", "log_loss"), ("acc_tta", "acc_tta")):
        if all(f"val/{key}" in s for s in summaries):
            out[name] = sum(s[f"val/{key}"] * s["n_val"] for s in summaries) / total
    return out


def per_fold(runs: Sequence[Path]) -> list[dict[str, Any]]:
    """Each fold's validation metrics and run dir."""
    rows = []
    for run in runs:
        s = read_summary(run)
        rows.append(
            {"fold": s["fold"], "acc": s["val/acc"], "log_loss": s["val/log_loss"],
             "collapsed": s.get("collapsed"), "run_dir": str(run)}
        )  # fmt: skip
    return rows


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` onto ``dst`` through a temporary file."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


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
    run = StageCommands(out / "logs")

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
