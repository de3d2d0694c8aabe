"""The stages recipes are made of: each one the command line a user would type (``arena.train``,
``arena.merge``, ``arena.predict``, ``arena.pseudo_label``, ``arena.generate``), run as a
subprocess with its output in ``<log_dir>/<stage>.log``, and skipped when its outputs are complete.
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

from arena.data.synthetic import make_synthetic
from arena.data.writers import write_pairs
from arena.utils.io import atomic_path, finished_run

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


@dataclass(frozen=True)
class Workspace:
    """Where a recipe's stages read and write.

    Attributes:
        out: the recipe's output dir.
        paths: ``paths.*`` overrides every training command gets (``log_dir``, ``cache_dir``).
        train_file: the official labelled training pairs (folds are cut from them).
        test_file: labelled rows held out from every fold (merge report, predict).
        external_files: external preference pairs for post-pretraining.
        extra_train_files: pairs every training run adds, never validated.
        unlabeled_file: pairs to soft-label (semi-supervised recipes).
    """

    out: Path
    paths: dict[str, str]
    train_file: Path
    test_file: Path
    external_files: tuple[Path, ...] = ()
    extra_train_files: tuple[Path, ...] = ()
    unlabeled_file: Path | None = None

    @property
    def log_dir(self) -> Path:
        return Path(self.paths["log_dir"])

    def data_args(self) -> list[str]:
        """The data and path overrides of every training command."""
        return [
            f"data.train_files=[{hydra_value(self.train_file)}]",
            f"data.extra_train_files={hydra_list(self.extra_train_files)}",
            *(f"paths.{k}={hydra_value(v)}" for k, v in self.paths.items()),
        ]


def synthetic_file(path: Path, n: int, seed: int, noise: float, n_classes: int) -> Path:
    """Write labelled synthetic pairs (LMSYS layout) to ``path`` unless it exists."""
    if not path.exists():
        table = make_synthetic(n, seed=seed, n_classes=n_classes, noise=noise)
        write_pairs(table.assign(id=[f"{path.stem}-{i}" for i in range(n)]), path, "lmsys")
    return path


def hydra_value(value: object) -> str:
    """``value`` as a Hydra override value: quoted only when it has characters Hydra would parse."""
    text = str(value)
    return text if re.fullmatch(r"[\w./-]+", text) else "'" + text.replace("'", "\\'") + "'"


def hydra_list(values: Sequence[object]) -> str:
    """``values`` as a Hydra list override value."""
    return "[" + ",".join(hydra_value(v) for v in values) + "]"


def sweep_dir(log_dir: Path, experiment: str, name: str = SWEEP_NAME) -> Path:
    """Where the fold runs of ``experiment`` go: the teacher stores of distillation experiments
    (``runs: ${paths.log_dir}/train/<teacher>/multirun_*``) read this sweep."""
    return log_dir / "train" / experiment / name


def train_folds(
    run: StageCommands,
    experiment: str,
    n_folds: int,
    space: Workspace,
    extra: Sequence[str],
    sweep_name: str = SWEEP_NAME,
) -> list[Path]:
    """Train ``experiment`` on every fold as one Hydra multirun (in ``sweep_name``); folds already
    finished are skipped, unfinished ones resume from their ``last.ckpt``. Returns the fold run
    dirs."""
    sweep = sweep_dir(space.log_dir, experiment, sweep_name)
    runs = [sweep / f"fold{k}" for k in range(n_folds)]
    missing = [str(k) for k, r in enumerate(runs) if not finished_run(r)]
    if missing:
        run(
            f"train_{experiment}" + ("" if sweep_name == SWEEP_NAME else f"_{sweep_name}"),
            [
                "arena.train", "-m", f"experiment={experiment}", *space.data_args(),
                f"data.n_folds={n_folds}", f"data.fold={','.join(missing)}", "ckpt_path=last",
                f"hydra.sweep.dir={hydra_value(sweep)}", "hydra.sweep.subdir=fold${data.fold}",
                *extra,
            ],
        )  # fmt: skip
    return runs


def train_once(
    run: StageCommands, stage: str, run_dir: Path, experiment: str, args: Sequence[str]
) -> Path:
    """One training run of ``experiment`` in ``run_dir`` (no folds), resumed from its
    ``last.ckpt`` when interrupted, skipped when finished."""
    if not finished_run(run_dir):
        run(stage, ["arena.train", f"experiment={experiment}", "ckpt_path=last",
                    f"hydra.run.dir={hydra_value(run_dir)}", *args])  # fmt: skip
    return run_dir


def post_pretrain(
    run: StageCommands, experiment: str, space: Workspace, extra: Sequence[str]
) -> Path:
    """Post-pretrain with ``experiment`` on the external pairs (validated on the official training
    file), then merge its LoRA into a 16-bit base. Returns the base dir (weights, config and
    tokenizer), which fold runs load as ``backbone.spec.path`` to train a fresh LoRA on."""
    if not space.external_files:
        raise ValueError(
            f"post-pretraining ({experiment}) needs external pairs: set data.external_files"
        )
    run_dir = space.log_dir / "train" / experiment / "post_pretrain"
    train_once(
        run, experiment, run_dir, experiment,
        [f"data.train_files={hydra_list(space.external_files)}", "data.fold=null",
         f"data.val_files=[{hydra_value(space.train_file)}]",
         *(f"paths.{k}={hydra_value(v)}" for k, v in space.paths.items()), *extra],
    )  # fmt: skip
    merged = space.out / "post_pretrain" / experiment
    if not (merged / "summary.json").exists():
        cache = hydra_value(space.paths["cache_dir"])
        run(f"merge_{experiment}", ["arena.merge", f"ckpts=[{hydra_value(run_dir)}]",
                                    f"output_dir={hydra_value(merged)}",
                                    f"paths.cache_dir={cache}"])  # fmt: skip
    return merged / "checkpoints" / "final" / "backbone"


def base_args(base: Path) -> list[str]:
    """The overrides that start a run from a post-pretrained base (a fresh LoRA and head)."""
    return [f"backbone.spec.path={hydra_value(base)}", "backbone.spec.random_init=false"]


def read_summary(path: Path) -> dict[str, Any]:
    """A stage's ``summary.json``; a missing one is an error naming the stage's dir."""
    file = path / "summary.json"
    if not file.exists():
        raise FileNotFoundError(f"{path} has no summary.json: its stage did not finish")
    result: dict[str, Any] = json.loads(file.read_text())
    return result


def run_metrics(run_dir: Path) -> dict[str, Any]:
    """One training run's validation metrics and whether it collapsed to the prior."""
    s = read_summary(run_dir)
    keys = ("acc", "log_loss", "acc_tta", "swap_consistency")
    out = {k: s[f"val/{k}"] for k in keys if f"val/{k}" in s}
    return out | {"collapsed": s.get("collapsed"), "n_val": s.get("n_val"), "run_dir": str(run_dir)}


def pooled(runs: Sequence[Path]) -> dict[str, Any]:
    """Validation metrics over every fold's held-out rows (row-weighted means of the folds'
    ``val/*`` metrics, i.e. the metrics of the pooled OOF predictions) and whether any fold
    collapsed to the prior."""
    summaries = [read_summary(r) for r in runs]
    total = sum(s["n_val"] for s in summaries)
    out: dict[str, Any] = {"n_rows": float(total)}
    for key in ("acc", "log_loss", "acc_tta"):
        if all(f"val/{key}" in s for s in summaries):
            out[key] = sum(s[f"val/{key}"] * s["n_val"] for s in summaries) / total
    out["collapsed"] = any(bool(s.get("collapsed")) for s in summaries)
    return out


def per_fold(runs: Sequence[Path]) -> list[dict[str, Any]]:
    """Each fold's validation metrics and run dir."""
    return [{"fold": read_summary(r)["fold"], **run_metrics(r)} for r in runs]


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` onto ``dst`` through a temporary file."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
