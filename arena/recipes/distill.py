"""The multi-teacher distillation recipes (LMSYS 1st place, WSDM 4th place): optional
post-pretraining of each model on external pairs (its LoRA merged into a 16-bit base) -> teachers x
K folds (OOF stores) -> the distilled student x K folds -> merge of the fold LoRAs -> quantized
predict with swap TTA.

Directory layout under the recipe's output dir::

    logs/train/<experiment>/post_pretrain/              post-pretraining runs
    post_pretrain/<experiment>/checkpoints/final/backbone   their merged bases
    logs/train/<experiment>/multirun_pipeline/fold<k>/   one training run per fold
    merged/        the merged student (checkpoints/final) and its report against the fold ensemble
    predict/       the quantized predictions of the test file
    logs/train/<student>/control_ce_only/fold<k>/    (recipe.control) the student on the labels
                                                     alone: what its teachers add
    submission.csv, summary.json
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from arena.recipes.stages import (
    SWEEP_NAME,
    StageCommands,
    Workspace,
    base_args,
    copy_atomic,
    hydra_value,
    per_fold,
    pooled,
    post_pretrain,
    read_summary,
    train_folds,
)

#: the sweep of the student's CE-only control (not ``multirun_pipeline``: a distinct run set)
CONTROL_SWEEP = "control_ce_only"
#: the summary keys of the merge report and of predict
MERGE_KEYS = ("acc", "log_loss", "ensemble_acc", "ensemble_log_loss", "max_abs_prob_diff", "method")
PREDICT_KEYS = ("acc", "log_loss", "tta", "n_rows")


def run_distill(
    recipe: DictConfig, space: Workspace, run: StageCommands, twin: Callable[[str], list[str]]
) -> dict[str, Any]:
    """Run (or resume) every stage of a distillation recipe; returns the summary's stage parts.

    Args:
        recipe: ``conf/recipe/<name>.yaml``: ``teachers``, ``student``, ``post_pretrain``
            (experiment -> its post-pretraining experiment), ``n_folds``, ``merge_method``,
            ``quantize_bits``, ``tta``, ``control``, ``train_args``.
        space: the data files and paths.
        run: the stage runner.
        twin: experiment -> the overrides that run it on this CPU (empty without ``twins``).
    """
    bases: dict[str, dict[str, Any]] = {}

    def folds(experiment: str, more: Sequence[str] = (), sweep: str = SWEEP_NAME) -> list[Path]:
        start = []
        if experiment in (recipe.post_pretrain or {}):
            pre = recipe.post_pretrain[experiment]
            base = post_pretrain(run, pre, space, [*twin(pre), *recipe.train_args])
            bases[experiment] = {"experiment": pre, "base": str(base)}
            start = base_args(base)
        extra = [*twin(experiment), *start, *recipe.train_args, *more]
        return train_folds(run, experiment, recipe.n_folds, space, extra, sweep)

    teachers = {name: folds(name) for name in recipe.teachers}
    students = folds(recipe.student)
    control = None
    if recipe.control:  # the same student on the labels alone: what the teachers add
        control = folds(recipe.student, ["model=classifier", "data.teachers=[]"], CONTROL_SWEEP)
    merged, quantized, predicted = merge_and_predict(recipe, space, run, students)
    summary: dict[str, Any] = {
        "post_pretrain": {k: v | _post_pretrain_metrics(v["experiment"], space)
                          for k, v in bases.items()},
        "teachers": {name: pooled(runs) for name, runs in teachers.items()},
        "student": pooled(students),
        "students": per_fold(students),
        "merged": merged,
        "quantized": quantized,
        "predict": predicted,
    }  # fmt: skip
    if control is not None:
        summary["control"] = pooled(control)
    return summary


def _post_pretrain_metrics(experiment: str, space: Workspace) -> dict[str, Any]:
    s = read_summary(space.log_dir / "train" / experiment / "post_pretrain")
    return {k.split("/")[1]: s[k] for k in ("val/acc", "val/log_loss") if k in s} | {
        "collapsed": s.get("collapsed")
    }


def merge_and_predict(
    recipe: DictConfig, space: Workspace, run: StageCommands, students: Sequence[Path]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Merge the student's folds (+ a quantized copy), predict the test file with the quantized
    model and swap TTA, copy the submission; returns the merge, quantized and predict reports."""
    common = [f"data.test_file={hydra_value(space.test_file)}",
              f"paths.cache_dir={hydra_value(space.paths['cache_dir'])}"]  # fmt: skip
    merged, predicted = space.out / "merged", space.out / "predict"
    if not (merged / "summary.json").exists():
        ckpts = ",".join(hydra_value(r) for r in students)
        run("merge", ["arena.merge", f"ckpts=[{ckpts}]", f"output_dir={hydra_value(merged)}",
                      f"method={recipe.merge_method}", f"export_bits={recipe.quantize_bits}",
                      *common])  # fmt: skip
    report = read_summary(merged)
    if not (predicted / "summary.json").exists():
        run("predict", ["arena.predict", f"ckpt={hydra_value(report['export']['checkpoint'])}",
                        f"output_dir={hydra_value(predicted)}", f"tta={recipe.tta}",
                        *common])  # fmt: skip
    copy_atomic(predicted / "submission.csv", space.out / "submission.csv")
    return (
        {k: report.get(k) for k in MERGE_KEYS},
        {k: v for k, v in report["export"].items() if k != "checkpoint"},
        {k: read_summary(predicted).get(k) for k in PREDICT_KEYS},
    )
