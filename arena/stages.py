"""The stages of ``python -m arena.pipeline``: each one is the command line a user would type
(``arena.train -m``, ``arena.merge``, ``arena.predict``), run as a subprocess with its output in
``<output_dir>/logs/<stage>.log``, and skipped when its outputs are already complete.

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

from arena.data.synthetic import make_synthetic
from arena.data.writers import write_pairs
from arena.io import atomic_path, finished_run

log = logging.getLogger(__name__)

SWEEP_NAME = "multirun_pipeline"


@dataclass
class Runner:
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
    run: Runner, experiment: str, n_folds: int, train_file: Path, paths: dict[str, str],
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
